#!/usr/bin/env bash
# VoxCeleb recipe: train on VoxCeleb2 dev, test on VoxCeleb1-O/E/H (cleaned lists).
#
#   1. prepare VoxCeleb1 (+ trial lists), VoxCeleb2 (decoded once to 16 kHz WAV by $nj jobs,
#      or ffmpeg pipes with --pipes true), MUSAN, RIRs; the AS-norm cohort
#   2. train every experiment in $experiments ($conf/NAME.yaml) with torchrun on the GPUs given
#   3. extract VoxCeleb1 and cohort embeddings, $nj jobs over the data and the GPUs
#   4. score VoxCeleb1-O/E/H with cosine and adaptive s-norm
#   5. report one table across every experiment, trial list and scoring method
#
#   ./run.sh --voxceleb1 /corpora/VoxCeleb1 --voxceleb2 /corpora/VoxCeleb2 \
#            --musan /corpora/musan --rirs /corpora/RIRS_NOISES --gpus 8
#   ./run.sh --stage 3 --experiments "sinc_tdnn_aam ecapa_tdnn_aam"
#
# How jobs run (this machine, Slurm or Grid Engine) is set in cmd.sh.
set -euo pipefail
cd "$(dirname "$0")"

stage=1
stop_stage=5
voxceleb1=/corpora/VoxCeleb1
voxceleb2=/corpora/VoxCeleb2
musan=/corpora/musan
rirs=/corpora/RIRS_NOISES
trials_dir=""
audio_ext=m4a
pipes=false
decode_to=""
decode_format=wav
data=data
exp=exp
experiments="sinc_tdnn_aam"
conf=conf
train_set=vox2_dev
gpus=8
num_nodes=1
node_rank=0
master_addr=127.0.0.1
nj=8
cohort_utts=5
top_n=300
lists="O E H"
train_extra=""
extract_extra=""
overwrite=false   # true: delete each experiment directory before training it (else training resumes)
__recipe_options="stage stop_stage voxceleb1 voxceleb2 musan rirs trials_dir audio_ext pipes decode_to decode_format data exp experiments conf
  train_set gpus num_nodes node_rank master_addr nj cohort_utts top_n lists train_extra extract_extra overwrite"

. ./path.sh
. ./cmd.sh
. ../../bin/parse_options.sh

for name in $experiments; do
  require_dir_name "$name" "--experiments entry"
  [ -f "$conf/$name.yaml" ] || { echo "$0: no $conf/$name.yaml (see $conf/ for the experiments)" >&2; exit 1; }
done

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  echo "stage 1: prepare VoxCeleb1, VoxCeleb2, MUSAN and RIRs into $data"
  # VoxCeleb2 decoded once into $decode_to (default $data/vox2_audio), or read through ffmpeg pipes (--pipes true)
  if $pipes; then decode_to=""; else decode_to="${decode_to:-$data/vox2_audio}"; fi
  local/prepare_data.sh --nj "$nj" --trials-dir "$trials_dir" --audio-ext "$audio_ext" \
    --decode-to "$decode_to" --decode-format "$decode_format" \
    --train-set "$train_set" --cohort-utts "$cohort_utts" "$voxceleb1" "$voxceleb2" "$musan" "$rirs" "$data"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for name in $experiments; do
    echo "stage 2: train $name on $train_set ($gpus GPU(s) x $num_nodes node(s)); log in $exp/$name/log/train.log"
    keep_or_clear "${exp:?}/$name"
    # shellcheck disable=SC2086  # train_extra holds several options
    train_cmd --gpus "$gpus" --nodes "$num_nodes" --node-rank "$node_rank" --master-addr "$master_addr" \
      "$exp/$name/log/train.log" spkverif train -q --config "$conf/$name.yaml" --data "$data/$train_set" \
      --exp "$exp/$name" --resume $train_extra
    spkverif report -q --training "$exp/$name"
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  # on_gpu: locally with GPUs, job J sees only GPU (J - 1) mod $gpus (an explicit small
  # script: the launcher passes every word on quoted, evaluating nothing)
  on_gpu=()
  if [ "$LAUNCH_BACKEND" != local ]; then
    device=auto
  elif [ "$gpus" -gt 0 ]; then
    device=cuda
    on_gpu=(bash -c 'CUDA_VISIBLE_DEVICES=$(( ($1 - 1) % $2 )) exec "${@:3}"' on_gpu JOB "$gpus")
  else
    device=cpu
  fi
  for set in vox1 cohort; do
    split_data.sh "$data/$set" "$nj"
  done
  for name in $experiments; do
    embeddings="$exp/$name/embeddings"
    for set in vox1 cohort; do
      echo "stage 3: extract $set embeddings with $name, $nj jobs"
      # shellcheck disable=SC2086  # extract_extra holds several options
      gpu_cmd "JOB=1:$nj" "$exp/$name/log/extract_$set.JOB.log" "${on_gpu[@]}" \
        spkverif extract -q --model "$exp/$name/models/final.pt" --device "$device" $extract_extra \
        "$data/$set/split$nj/JOB" "ark,scp:$embeddings/$set.JOB.ark,$embeddings/$set.JOB.scp"
      for ((job = 1; job <= nj; job++)); do cat "$embeddings/$set.$job.scp"; done > "$embeddings/$set.scp"
    done
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  # One job a list, two commands: the chain is a small script (the launcher passes every
  # word on quoted, running no `&&` of its own); its inputs are the words after it.
  # shellcheck disable=SC2016  # $1..$6 are expanded in the job
  score_job='spkverif score -q --method cosine --trials "$1" "scp:$2" "$3.cosine"'\
' && spkverif score -q --method asnorm --cohort "scp:$4" --cohort-utt2spk "$5" --top-n "$6"'\
' --trials "$1" "scp:$2" "$3.asnorm"'
  for name in $experiments; do
    embeddings="$exp/$name/embeddings"
    for list in $lists; do
      echo "stage 4: score VoxCeleb1-$list with $name: cosine and adaptive s-norm (top $top_n)"
      cpu_cmd "$exp/$name/log/score_$list.log" bash -c "$score_job" \
        score "$data/vox1/trials_$list" "$embeddings/vox1.scp" "$exp/$name/scores/vox1_$list" \
        "$embeddings/cohort.scp" "$data/cohort/utt2spk" "$top_n"
    done
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  echo "stage 5: report"
  arguments=()
  for name in $experiments; do
    for list in $lists; do
      for method in cosine asnorm; do
        arguments+=(--trials "$data/vox1/trials_$list" --name "$name vox1-$list $method"
                    "$exp/$name/scores/vox1_$list.$method")
      done
    done
  done
  spkverif report --out-dir "$exp/report" "${arguments[@]}"
fi
