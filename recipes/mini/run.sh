#!/usr/bin/env bash
# The mini recipe: synthesise speakers with eSpeak NG, train an x-vector with
# AAM, extract embeddings, score the test trials by cosine and by adaptive
# s-norm (a cohort of training speakers), report EER/minDCF and a DET plot.
# Runs anywhere in about five minutes on two CPU cores; nothing is downloaded.
# Stages 5 (the loss comparison) and 6 (fbank vs SincNet networks) are left out
# unless asked for; each trains several models.
#
#   ./run.sh                                # stages 0-4
#   ./run.sh --stage 2                      # from extraction on
#   ./run.sh --stop-stage 0                 # only the corpus
#   ./run.sh --stage 5 --stop-stage 5       # the loss comparison, after stages 0-4
#   ./run.sh --stage 6 --stop-stage 6       # compare embedding networks (fbank vs SincNet)
#   ./run.sh --stage 7 --stop-stage 7       # calibration with and without QMF, after stages 0-3
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=4
data=data
exp=exp
config=conf/xvector_aam.yaml
name=xvector_aam
num_speakers=160
num_test_speakers=40
utts_per_speaker=12
num_trials=3000
seed=0
overwrite=false   # true: delete the experiment directories a stage trains into first (else training resumes)
train_opts=""
cohort_utts=3     # training utterances per speaker extracted for the AS-norm cohort
top_n=50          # AS-norm: closest cohort speakers per side (at most the training speakers)
losses="softmax center coco aam aam_modern am subcenter_aam contrastive triplet"  # stage 5: conf/losses/NAME.yaml
models="xvector sinc_tdnn sinc_xvector"   # stage 6: networks compared, each conf/models/NAME.yaml
__recipe_options="stage stop_stage data exp config name num_speakers num_test_speakers utts_per_speaker num_trials seed overwrite train_opts cohort_utts top_n losses models"

. ./path.sh
. ../../bin/parse_options.sh
. ../../bin/stage_times.sh   # stage_done NAME: each stage's wall time in $exp/stage_times.txt
require_dir_name "$name" --name
for each in $losses $models; do require_dir_name "$each" "--losses/--models entry"; done

# Stages 5 and 6: for each NAME after $1, train a model from conf/$1/NAME.yaml into
# $exp/$1/NAME, embed the test set and score its trials by cosine; then one table
# and one DET plot of them all in $exp/$1.
compare_configs() {
  local group="$1" name dir scores=() names=()
  shift
  for name in "$@"; do
    echo "  $group: $name"
    dir="$exp/$group/$name"
    keep_or_clear "$dir"
    # shellcheck disable=SC2086  # train_opts holds several options
    spkverif train --config "conf/$group/$name.yaml" --data "$data/train" --exp "$dir" --seed "$seed" --resume \
      $train_opts
    spkverif extract -q --model "$dir/models/final.pt" "scp:$data/test/wav.scp" \
      "ark,scp:$dir/embeddings/test.ark,$dir/embeddings/test.scp"
    spkverif score -q --method cosine --trials "$data/test/trials" \
      "scp:$dir/embeddings/test.scp" "$dir/scores/test.cosine"
    scores+=("$dir/scores/test.cosine")
    names+=(--name "$name")
  done
  spkverif report --trials "$data/test/trials" --utt2spk "$data/test/utt2spk" --out-dir "$exp/$group" \
    "${names[@]}" "${scores[@]}"
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "stage 0: synthesise the mini corpus into $data"
  spkverif prepare mini --out "$data" --num-speakers "$num_speakers" \
    --num-test-speakers "$num_test_speakers" --utts-per-speaker "$utts_per_speaker" \
    --num-trials "$num_trials" --seed "$seed"
  spkverif validate -q "$data/train"
  spkverif validate -q "$data/test" --trials "$data/test/trials"
  stage_done "stage 0"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: train $name ($config)"
  keep_or_clear "${exp:?}/$name"
  # shellcheck disable=SC2086  # train_opts holds several options
  spkverif train --config "$config" --data "$data/train" --exp "$exp/$name" --seed "$seed" --resume $train_opts
  stage_done "stage 1"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: extract test embeddings, and $cohort_utts per training speaker for the cohort"
  spkverif extract --model "$exp/$name/models/final.pt" "scp:$data/test/wav.scp" \
    "ark,scp:$exp/$name/embeddings/test.ark,$exp/$name/embeddings/test.scp"
  subset_per_speaker.sh "$data/train" "$cohort_utts" "$data/cohort"
  spkverif extract --model "$exp/$name/models/final.pt" "scp:$data/cohort/wav.scp" \
    "ark,scp:$exp/$name/embeddings/cohort.ark,$exp/$name/embeddings/cohort.scp"
  stage_done "stage 2"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "stage 3: cosine and adaptive s-norm scoring"
  spkverif score --method cosine --trials "$data/test/trials" \
    "scp:$exp/$name/embeddings/test.scp" "$exp/$name/scores/test.cosine"
  cohort_speakers=$(cut -d' ' -f2 "$data/cohort/utt2spk" | sort -u | wc -l)
  spkverif score --method asnorm --cohort "scp:$exp/$name/embeddings/cohort.scp" \
    --cohort-utt2spk "$data/cohort/utt2spk" --top-n $(( top_n < cohort_speakers ? top_n : cohort_speakers )) \
    --trials "$data/test/trials" "scp:$exp/$name/embeddings/test.scp" "$exp/$name/scores/test.asnorm"
  stage_done "stage 3"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  echo "stage 4: report (table, $exp/report.{json,md}, DET plot $exp/det.png)"
  spkverif report --trials "$data/test/trials" --utt2spk "$data/test/utt2spk" --out-dir "$exp" \
    "$exp/$name/scores/test.cosine" "$exp/$name/scores/test.asnorm"
  stage_done "stage 4"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  echo "stage 5: the loss comparison: $losses"
  # One model per conf/losses/LOSS.yaml: the same network, the same 400 batches of
  # 64 chunks (P x K = 64 x 1 for the classification losses, 16 x 4 for the pair
  # losses), the same optimiser; then cosine scoring and one report.
  # shellcheck disable=SC2086  # one word a loss
  compare_configs losses $losses
  stage_done "stage 5"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  # The paper's question: does a front end that learns its filters (SincNet) beat
  # handcrafted fbank? Each network trains with AAM on the same budget
  # (conf/models/NAME.yaml), then extract, cosine scoring, one table, and a
  # picture of the filters each SincNet (sinc_*) learned.
  echo "stage 6: compare embedding networks with AAM: $models"
  # shellcheck disable=SC2086  # one word a model
  compare_configs models $models
  for model in $models; do
    case "$model" in
      sinc_*) spkverif report -q --filters "$exp/models/$model/models/final.pt" ;;
    esac
  done
  stage_done "stage 6"
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  # Calibration with and without quality measures (QMF; and QMF with the cohort's mean
  # scores), by two-fold cross-validation split by enrolment speaker: bin/calibrate_folds.sh.
  echo "stage 7: cosine scores calibrated with and without QMF, two folds by enrolment speaker"
  cohort_speakers=$(cut -d' ' -f2 "$data/cohort/utt2spk" | sort -u | wc -l)
  calibrate_folds.sh --cohort "scp:$exp/$name/embeddings/cohort.scp" --cohort-utt2spk "$data/cohort/utt2spk" \
    --top-n $(( top_n < cohort_speakers ? top_n : cohort_speakers )) "$data/test" "$exp/$name/scores/test.cosine" \
    "scp:$exp/$name/embeddings/test.scp" "$exp/$name/models/final.pt" "$exp/$name/calibration"
  stage_done "stage 7"
fi
