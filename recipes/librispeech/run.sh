#!/usr/bin/env bash
# LibriSpeech recipe: real read speech. Train on train-clean-100 (optionally more
# LibriSpeech subsets, optionally the synthetic mini corpus combined in), test on
# every dev/test subset present, scored by cosine and by adaptive s-norm with a
# cohort of training speakers; a report with intervals and a DET plot; the same
# trials through a simulated telephone line (GSM, through ffmpeg).
#
#   ./run.sh                                   # the shared subset, CPU configuration (five trainings of 100-150 s)
#   ./run.sh --corpus /corpora/LibriSpeech --config conf/gpu.yaml --members 1 \
#            --train-sets "train-clean-100 train-clean-360 train-other-500" --train-opts "--device cuda"
#   ./run.sh --stage 2                         # from extraction on
#   ./run.sh --train-opts "--epochs 2"         # a short training (the CI test's)
#   ./run.sh --stage 6 --stop-stage 6          # the loss comparison (trains one model per loss)
#   ./run.sh --stage 7 --stop-stage 7          # calibration with and without QMF (after stages 0-3)
#   ./run.sh --stage 8 --stop-stage 8          # final models averaged over other numbers of checkpoints
#   ./run.sh --stage 9 --stop-stage 9          # the first member fine-tuned on the telephone channel (after 0-1)
#   ./run.sh --lm-config none                  # no large-margin fine-tuning in stage 1 (gpu.yaml has one)
#   ./run.sh --lm-config conf/my_lm.yaml       # fine-tune with any configuration of the same network
#
#   0. prepare: one data directory per subset (+ all-pair trials), the training set, the cohort
#   1. train $name from $config into $exp/$name; with a $lm_config (conf/gpu_lm.yaml for
#      conf/gpu.yaml; conf/cpu.yaml has none), train into $exp/${name}_pretrain, then fine-tune
#      that (large margin, longer chunks) into $exp/$name. With --members N > 1, N such
#      trainings, seeds $seed, $seed + 1000, ..., the last $channel_members of them (never the
#      first) from $channel_config (conf/cpu_channel.yaml for conf/cpu.yaml: channel
#      augmentation): the first into $exp/$name, member K into
#      $exp/${name}_memberK; stages 2, 5 and 7 run them as one ensemble (extract --model A
#      --model B: cosine scores the mean of theirs), whose embeddings and scores go to $exp/$name
#   2. extract test and cohort embeddings
#   3. score every test set by cosine and AS-norm
#   4. report: $exp/report.{json,md}, $exp/det.png
#   5. telephone channel: the test sets through GSM at 8 kHz, resampled back; extract, score, report
#   6. the loss comparison: each of $losses trained like $config, cosine scoring, one table
#   7. calibration of the cosine scores (linear, QMF, QMF with cohort means), two folds by
#      enrolment speaker, after stages 0-3: $exp/$name/calibration/SET/summary.md
#   8. the averaging sweep, after stage 1: for each K in $average_sweep, the first member's final
#      model as the mean of the last K of $exp/$name's epoch checkpoints (train --resume --average K),
#      cosine scoring of the first test set, one table: $exp/averages/report.md
#   9. fine-tuning, after stage 1: the first member's final model trained on (train --init) with
#      $finetune_config on the training set through the telephone line; the telephone copies
#      of the dev and test sets scored by cosine before and after, one table: $exp/finetune/
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=5
corpus=../../../shared/data/librispeech
data=data
exp=exp
config=conf/cpu.yaml
name=cpu
train_sets="train-clean-100"
test_sets=""          # default: every dev-*/test-* subset present
num_trials=""         # default: every pair of each test set; N: N balanced pairs
mini=""               # a `prepare mini` output dir: its training speakers are combined in
seed=0
members=5             # trainings in stage 1 (seeds $seed, $seed + 1000, ...), run as one ensemble from stage 2 on
train_budget=600      # seconds of stage-1 training conf/cpu.yaml is sized for: after member 1 (or 2), a warning
                      # where all members would take longer at its pace, after the last where they did (0: none)
train_opts=""         # options for stage 1's trainings (and stage 6's)
overwrite=false       # true: delete the experiment directories a stage trains into first (else training resumes)
lm_config=auto        # the large-margin fine-tuning: auto = ${config%.yaml}_lm.yaml where it exists; none: skip
lm_opts=""            # options for the fine-tuning only, after $train_opts
channel_config=auto   # the configuration of the last $channel_members members: auto = ${config%.yaml}_channel.yaml
                      # where it exists; none: every member from $config
channel_members=2     # members trained from $channel_config (at most --members - 1: the first is always $config's)
dev_speakers=40       # training speakers held out as the dev sets (seeded by --seed), on which choices are made
dev_seconds="3 2 1"   # segment lengths of the dev sets: data/dev (the first), data/dev_2s, data/dev_1s
cohort_utts=3         # training utterances per speaker for the AS-norm cohort
top_n=100             # AS-norm: closest cohort speakers per side (at most the cohort's)
losses="softmax center coco aam am subcenter_aam contrastive triplet"   # stage 6
loss_seeds=""         # stage 6: the seeds each loss trains with (default: --seed); rows of one loss are summarised
average_sweep="1 4 8 12 14 16 20"  # stage 8: numbers of last epoch checkpoints to average
finetune_config=conf/cpu_finetune.yaml  # stage 9
__recipe_options="stage stop_stage corpus data exp config name train_sets test_sets num_trials mini seed members train_budget train_opts overwrite
  lm_config lm_opts channel_config channel_members dev_speakers dev_seconds cohort_utts top_n losses loss_seeds average_sweep
  finetune_config"

. ./path.sh
. ../../bin/parse_options.sh
. ../../bin/stage_times.sh   # timed NAME COMMAND...: $exp/stage_times.txt

if [ -z "$test_sets" ]; then
  root="$corpus"; [ -d "$root/LibriSpeech" ] && root="$root/LibriSpeech"
  for subset in dev-clean dev-other test-clean test-other; do
    [ -d "$root/$subset" ] && test_sets="$test_sets $subset"
  done
fi
if [ "$lm_config" = auto ]; then
  lm_config=none; [ -f "${config%.yaml}_lm.yaml" ] && lm_config="${config%.yaml}_lm.yaml"
fi
if [ "$channel_config" = auto ]; then
  channel_config=none; [ -f "${config%.yaml}_channel.yaml" ] && channel_config="${config%.yaml}_channel.yaml"
fi
tests=$(for subset in $test_sets; do echo "${subset//-/_}"; done)
[ -n "$tests" ] || { echo "$0: no dev-*/test-* subset in $corpus" >&2; exit 1; }
# The dev sets (local/make_dev.sh: $dev_speakers training speakers held out, cut into segments of
# each length in $dev_seconds) are scored beside the test sets; choices (stages 6 and 8) are made on dev.
devs=$(first=1; for length in $dev_seconds; do if (( first )); then echo dev; first=0; else echo "dev_${length}s"; fi; done)
tests="$devs $tests"
first_test=dev  # stages 6 and 8 compare models on it

# score_set NAME SET: embeddings of $data/SET into $exp/NAME, cosine and AS-norm scores.
score_set() {
  local dir="$exp/$1" set="$2" cohort_speakers
  spkverif score -q --method cosine --trials "$data/$set/trials" \
    "scp:$dir/embeddings/$set.scp" "$dir/scores/$set.cosine"
  cohort_speakers=$(cut -d' ' -f2 "$data/cohort/utt2spk" | sort -u | wc -l)
  spkverif score -q --method asnorm --cohort "scp:$dir/embeddings/cohort.scp" \
    --cohort-utt2spk "$data/cohort/utt2spk" --top-n $(( top_n < cohort_speakers ? top_n : cohort_speakers )) \
    --trials "$data/$set/trials" "scp:$dir/embeddings/$set.scp" "$dir/scores/$set.asnorm"
}

# Stages 6 and 8 compare models by cosine scoring. compare_model DIR NAME [SETS...]: embeddings
# of each set (default: the first test set, dev) by DIR/models/final.pt, scores in DIR/scores/;
# compare_report OUT_DIR [SETS...]: one table (and DET plot) of every model compared since the
# last report, into OUT_DIR (one set) or OUT_DIR/SET (several); rows sharing a name (seeds) are
# also summarised as mean and spread.
compared_names=() compared_dirs=()
compare_model() {
  local dir="$1" name="$2" set
  shift 2
  for set in "${@:-$first_test}"; do
    spkverif extract -q --model "$dir/models/final.pt" "$data/$set" \
      "ark,scp:$dir/embeddings/$set.ark,$dir/embeddings/$set.scp"
    spkverif score -q --method cosine --trials "$data/$set/trials" \
      "scp:$dir/embeddings/$set.scp" "$dir/scores/$set.cosine"
  done
  compared_names+=(--name "$name"); compared_dirs+=("$dir")
}
compare_report() {
  local out="$1" set dir files
  shift
  for set in "${@:-$first_test}"; do
    files=(); for dir in "${compared_dirs[@]}"; do files+=("$dir/scores/$set.cosine"); done
    spkverif report --trials "$data/$set/trials" --utt2spk "$data/$set/utt2spk" \
      --out-dir "$out$( (( $# > 1 )) && echo "/$set")" "${compared_names[@]}" "${files[@]}"
  done
  compared_names=() compared_dirs=()
}

# report OUT_DIR SUFFIX SETS...: one table of the cosine and AS-norm scores of each set,
# intervals by resampling enrolment speakers.
report() {
  local out="$1" suffix="$2" set trials=() files=()
  shift 2
  mkdir -p "$out"
  for set in "$@"; do
    cat "$data/$set$suffix/utt2spk"
  done | LC_ALL=C sort -u > "$out/utt2spk"
  for set in "$@"; do
    trials+=(--trials "$data/$set$suffix/trials" --trials "$data/$set$suffix/trials")
    files+=("$exp/$name/scores/$set$suffix.cosine" "$exp/$name/scores/$set$suffix.asnorm")
  done
  spkverif report "${trials[@]}" --utt2spk "$out/utt2spk" --out-dir "$out" "${files[@]}"
}

# The members' directories and final models: extract and verify take them as one ensemble.
[[ "$members" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --members must be 1 or more, not '$members'" >&2; exit 1; }
[[ "$train_budget" =~ ^[0-9]+$ ]] || { echo "$0: --train-budget must be seconds (0 or more), not '$train_budget'" >&2; exit 1; }
# member K's configuration: $config, or $channel_config for the last $channel_members (never member 1)
member_configs=()
for (( k = 1; k <= members; k++ )); do
  if [ "$channel_config" != none ] && (( k > 1 && k > members - channel_members )); then
    member_configs+=("$channel_config")
  else
    member_configs+=("$config")
  fi
done
member_dirs=("$exp/$name")
for (( k = 2; k <= members; k++ )); do member_dirs+=("$exp/${name}_member$k"); done
model_opts=() model_list=""
for dir in "${member_dirs[@]}"; do
  model_opts+=(--model "$dir/models/final.pt"); model_list="$model_list${model_list:+,}$dir/models/final.pt"
done

mkdir -p "$exp"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "stage 0: prepare $train_sets $test_sets from $corpus into $data"
  # shellcheck disable=SC2086  # lists of subsets
  timed "stage 0" local/prepare_data.sh --num-trials "$num_trials" --seed "$seed" --mini "$mini" \
    --dev-speakers "$dev_speakers" --dev-seconds "$dev_seconds" \
    --cohort-utts "$cohort_utts" "$corpus" "$data" "$train_sets" "$test_sets"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  keep_or_clear "${exp:?}/$name" "${exp:?}/${name}_pretrain" "${exp:?}/${name}"_member*
  # train_member DIR SEED CONFIG: one training into DIR, or with $lm_config a pretraining into
  # DIR_pretrain fine-tuned into DIR
  train_member() {
    local dir="$1" member_seed="$2" member_config="$3" last
    if [ "$lm_config" = none ]; then
      # shellcheck disable=SC2086  # train_opts holds several options
      spkverif train --config "$member_config" --data "$data/train" --exp "$dir" --seed "$member_seed" --resume $train_opts
    else
      # shellcheck disable=SC2086  # options
      timed "stage 1: train" spkverif train --config "$member_config" --data "$data/train" --exp "${dir}_pretrain" \
        --seed "$member_seed" --resume $train_opts
      last=$(ls "${dir}_pretrain"/models/epoch_*.pt | tail -n 1)
      # shellcheck disable=SC2086  # options
      timed "stage 1: fine-tune" spkverif train --config "$lm_config" --init "$last" --data "$data/train" \
        --exp "$dir" --seed "$member_seed" --resume $train_opts $lm_opts
    fi
  }
  # compiling DIR: the seconds member DIR's trainings spent compiling (train --compile logs them), rounded
  compiling() {
    local total=0 log seconds
    for log in "$1_pretrain/train_log.jsonl" "$1/train_log.jsonl"; do
      [ -f "$log" ] || continue
      seconds=$(sed -n 's/.*"event": "compiled".*"seconds": \([0-9.]*\).*/\1/p' "$log" | head -n 1)
      [ -z "$seconds" ] || total=$(( total + $(printf '%.0f' "$seconds") ))
    done
    echo "$total"
  }
  train_members() {
    local k member_seed how first=0 compiled pace projected fits note warned=""
    for (( k = 1; k <= members; k++ )); do
      member_seed=$(( seed + 1000 * (k - 1) )) how="${member_configs[k-1]}"
      [ "$lm_config" = none ] || how="$how, then fine-tuned with $lm_config"
      echo "stage 1: train ${member_dirs[k-1]##*/} (member $k of $members: $how, seed $member_seed)"
      timed "stage 1: ${member_dirs[k-1]##*/}" train_member "${member_dirs[k-1]}" "$member_seed" "${member_configs[k-1]}"
      (( k == 1 )) && first=$stage_seconds
      (( k <= 2 && k < members && train_budget > 0 )) && [ -z "$warned" ] || continue
      # A CPU whose bf16 or compiled code is slow trains a member in more than a fifth of the budget.
      # After member 1, the others' pace leaves out its compiling (inductor's cache, cold for member 1
      # on a fresh machine, is warm for them, though they compile too): an overrun it projects is sure.
      # After member 2, its own pace, compiling and all.
      if (( k == 1 )); then
        compiled=$(compiling "${member_dirs[0]}") note=""
        (( compiled == 0 )) || note=" ($compiled s of it compiling)"
        pace=$(( stage_seconds - compiled > 0 ? stage_seconds - compiled : 1 ))
        projected=$(( compiled + members * pace )) fits=$(( (train_budget - compiled) / pace ))
      else
        note=" after member 1's $first s" pace=$stage_seconds
        projected=$(( first + (members - 1) * pace ))
        fits=$(( train_budget < first ? 0 : 1 + (train_budget - first) / pace ))
      fi
      (( projected > train_budget )) || continue
      warned=yes
      echo "$0: warning: member $k took $stage_seconds s$note, so $members members will take about" \
        "$projected s, over --train-budget $train_budget s;" \
        "$( (( fits >= 1 )) && echo "./run.sh --members $fits keeps to it" \
          || echo "not even one member keeps to it: --train-opts \"--epochs N\" shortens each")" \
        "(recipes/librispeech/RESULTS.md)" >&2
    done
  }
  timed "stage 1" train_members
  # ... and where the members together ran over it all the same (a machine that slowed down later)
  if (( members > 1 && train_budget > 0 && stage_seconds > train_budget )); then
    echo "$0: warning: the $members members took $stage_seconds s, over --train-budget $train_budget s" >&2
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  echo "stage 2: extract $(echo $tests) and cohort embeddings"
  extract_all() {
    local set
    for set in $tests cohort; do
      spkverif extract -q "${model_opts[@]}" "$data/$set" \
        "ark,scp:$exp/$name/embeddings/$set.ark,$exp/$name/embeddings/$set.scp"
    done
  }
  timed "stage 2" extract_all
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  echo "stage 3: cosine and adaptive s-norm scoring"
  score_all() { local set; for set in $tests; do score_set "$name" "$set"; done; }
  timed "stage 3" score_all
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  echo "stage 4: report ($exp/report.{json,md}, DET plot $exp/det.png)"
  # shellcheck disable=SC2086  # one word a set
  timed "stage 4" report "$exp" "" $tests
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  if ! command -v ffmpeg >/dev/null; then
    echo "stage 5: skipped: the telephone channel needs ffmpeg (with libgsm) on PATH"
  else
    echo "stage 5: the test sets through a telephone line (8 kHz, GSM 06.10, back to 16 kHz)"
    telephone_all() {
      local set
      for set in $tests; do
        local/telephone.sh "$data/$set" "$data/${set}_telephone"
        spkverif extract -q "${model_opts[@]}" "$data/${set}_telephone" \
          "ark,scp:$exp/$name/embeddings/${set}_telephone.ark,$exp/$name/embeddings/${set}_telephone.scp"
        score_set "$name" "${set}_telephone"
      done
      # shellcheck disable=SC2086  # one word a set
      report "$exp/telephone" "_telephone" $tests
    }
    timed "stage 5" telephone_all
  fi
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  echo "stage 6: the loss comparison on real speech: $losses"
  # Each loss with its own default options (but $config's own loss keeps $config's options),
  # on $config's network, budget and optimiser; the pair losses see 4 chunks of each of a
  # quarter as many speakers.
  # Each seed of $loss_seeds a loss: $exp/losses/LOSS (the first seed), LOSS_seedS (the others);
  # cosine scores of dev and of the test sets, one table per set in $exp/losses/SET/.
  compare_losses() {
    local loss dir pairs s first_seed sets
    first_seed=$(set -- ${loss_seeds:-$seed}; echo "$1")
    sets="$first_test $(for set in $tests; do case "$set" in dev|dev_*) ;; *) echo "$set" ;; esac; done)"
    for loss in $losses; do
      for s in ${loss_seeds:-$seed}; do
        dir="$exp/losses/$loss"
        [ "$s" = "$first_seed" ] || dir="${dir}_seed$s"
        keep_or_clear "$dir"
        pairs=""
        case "$loss" in contrastive|triplet) pairs="--utts-per-speaker 4 --speakers-per-batch 16" ;; esac
        # shellcheck disable=SC2086  # options
        timed "stage 6: train $loss (seed $s)" spkverif train -q --config "$config" --loss "$loss" $pairs \
          --data "$data/train" --exp "$dir" --seed "$s" --resume $train_opts
        compare_model "$dir" "$loss" $sets
      done
    done
    compare_report "$exp/losses" $sets
  }
  timed "stage 6" compare_losses
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  echo "stage 7: cosine scores calibrated with and without QMF, two folds by enrolment speaker"
  calibrate_all() {
    local set cohort_speakers
    cohort_speakers=$(cut -d' ' -f2 "$data/cohort/utt2spk" | sort -u | wc -l)
    for set in $tests; do
      calibrate_folds.sh --cohort "scp:$exp/$name/embeddings/cohort.scp" --cohort-utt2spk "$data/cohort/utt2spk" \
        --top-n $(( top_n < cohort_speakers ? top_n : cohort_speakers )) "$data/$set" "$exp/$name/scores/$set.cosine" \
        "scp:$exp/$name/embeddings/$set.scp" "$model_list" "$exp/$name/calibration/$set"
    done
  }
  timed "stage 7" calibrate_all
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  echo "stage 8: $name's final model averaged over the last K epoch checkpoints, K in $average_sweep"
  # Each K gets its own experiment directory whose models/ links to stage 1's checkpoints, so
  # `train --resume` finds the run finished and only writes that directory's final.pt.
  sweep_averages() {
    local k dir models
    ls "$exp/$name/models"/epoch_*.pt >/dev/null 2>&1 \
      || { echo "$0: stage 8: no epoch checkpoints in $exp/$name/models; run stage 1 first" >&2; exit 1; }
    models=$(cd "$exp/$name/models" && pwd)
    for k in $average_sweep; do
      dir="$exp/averages/k$k"
      keep_or_clear "$dir"
      mkdir -p "$dir/models"
      ln -sf "$models"/epoch_*.pt "$dir/models/"
      spkverif train -q --config "$exp/$name/config.yaml" --data "$data/train" --exp "$dir" --resume --average "$k"
      compare_model "$dir" "last $k"
    done
    compare_report "$exp/averages"
  }
  timed "stage 8" sweep_averages
fi

if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ]; then
  if ! command -v ffmpeg >/dev/null; then
    echo "stage 9: skipped: the telephone copy of the training set needs ffmpeg (with libgsm) on PATH"
  else
    echo "stage 9: $name's first member fine-tuned ($finetune_config) on the training set through the telephone line"
    # The first member's final model (train --init: the same speakers, so its loss head goes on too),
    # trained on $data/train_telephone into $exp/${name}_telephone; the telephone copies of the dev
    # and test sets scored by cosine with the model before and after: one table, $exp/finetune/
    finetune_telephone() {
      local dir="$exp/${name}_telephone" set which model out names=() trials=() files=()
      [ -f "$exp/$name/models/final.pt" ] || { echo "$0: stage 9: no $exp/$name/models/final.pt; run stage 1 first" >&2; exit 1; }
      [ -d "$data/train_telephone" ] || local/telephone.sh "$data/train" "$data/train_telephone"
      keep_or_clear "$dir"
      # shellcheck disable=SC2086  # options
      spkverif train -q --config "$finetune_config" --init "$exp/$name/models/final.pt" --data "$data/train_telephone" \
        --exp "$dir" --seed "$seed" --resume $train_opts
      for set in $tests; do
        [ -d "$data/${set}_telephone" ] || local/telephone.sh "$data/$set" "$data/${set}_telephone"
        for which in before after; do
          model="$exp/$name/models/final.pt" out="$exp/finetune/$which"
          [ "$which" = before ] || model="$dir/models/final.pt"
          spkverif extract -q --model "$model" "$data/${set}_telephone" \
            "ark,scp:$out/embeddings/${set}_telephone.ark,$out/embeddings/${set}_telephone.scp"
          spkverif score -q --method cosine --trials "$data/${set}_telephone/trials" \
            "scp:$out/embeddings/${set}_telephone.scp" "$out/scores/${set}_telephone.cosine"
          names+=(--name "${set}_telephone $which") trials+=(--trials "$data/${set}_telephone/trials")
          files+=("$out/scores/${set}_telephone.cosine")
        done
      done
      spkverif report "${trials[@]}" --out-dir "$exp/finetune" "${names[@]}" "${files[@]}"
    }
    timed "stage 9" finetune_telephone
  fi
fi
