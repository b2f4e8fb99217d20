#!/usr/bin/env bash
# The GPU check: one prepared script for one GPU. On an H200 with 16 cores steps 0-2 took 174 s,
# step 1 stopped at its fourth row by a bug since fixed (the rest of it took 43 s alone), and the
# VoxCeleb steps were skipped (docs/feeding.md, "The GPU check").
#
#   bench/gpu_check.sh [--librispeech ROOT] [OUT]           # on a GPU machine; figures go to OUT (default gpu_check)
#   bench/gpu_check.sh --tiny [--librispeech ROOT] [OUT]    # the same steps at a tiny size on the CPU (the tests')
#   bench/gpu_check.sh --only librispeech|throughput|extract|voxceleb [OUT]   # one of the steps below again
#
#   0. recipes/librispeech with conf/gpu.yaml and its fine-tuning (conf/gpu_lm.yaml) on ROOT (a
#      fake tree of the corpus's layout when none is given), a short schedule (4 epochs of 100
#      batches, then 1 of 50), stages 0-4; bench/gpu_estimate.py --measured prices both
#      configurations' full schedules at the rates the two training logs measured; and gpu.yaml
#      once more with 15 loader workers instead of 8 (2 epochs of 60 batches)
#   1. bench/train_throughput.py: xvector, sinc_tdnn, ecapa_tdnn C=512 and C=1024, resnet34
#      at 128 chunks x 2 s, --amp none, bf16 and fp16: samples/s, data wait, peak GPU memory
#   2. bench/extract_rtf.py on the GPU: real-time factor of every network
#   3. the VoxCeleb recipe on a fake VoxCeleb tree (tests/fake_corpora.py): stage 1 (prepare,
#      VoxCeleb2 decoded once), then stages 2-5 (train a few hundred steps through torchrun on
#      the one GPU, extract, score, report)
#
# Each step's output is in OUT/*.txt, and OUT/summary.txt says which steps passed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tiny=false librispeech="" only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=true; shift ;;
    --librispeech) librispeech=$(cd "$2" && pwd) || exit 1; shift 2 ;;
    --only)
      case "$2" in librispeech|throughput|extract|voxceleb) only=$2 ;;
        *) echo "$0: --only takes librispeech, throughput, extract or voxceleb, not '$2'" >&2; exit 1 ;; esac
      shift 2 ;;
    *) break ;;
  esac
done
out=$(mkdir -p "${1:-gpu_check}" && cd "${1:-gpu_check}" && pwd)
work="$out/work"
rm -rf "$work" && mkdir -p "$work"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python}

if $tiny; then
  models="xvector:channels=32 xvector:channels=48"; amps="none"; batch=8; chunk=0.5; steps=2; workers=0; device=cpu; gpus=0
  rtf_args=(--device cpu --seconds 2 --repeats 1 --models xvector)
  speakers=6; train_steps=3; recipe_conf="model: {name: xvector, channels: 32, stats_channels: 64, embedding_dim: 16}"
  ls_train="--device cpu --num-workers 0 --epochs 4 --batches-per-epoch 1 --speakers-per-batch 4 --chunk-seconds 0.5
            --set model.channels=16 --set model.embedding_dim=8"
  ls_lm="--epochs 1 --batches-per-epoch 1 --chunk-seconds 0.6"; ls_workers="--num-workers 1 --epochs 2 --batches-per-epoch 1"
  ls_fake_speakers=7 ls_dev="--dev-speakers 2" limit=600
else
  models="xvector sinc_tdnn ecapa_tdnn:channels=512 ecapa_tdnn:channels=1024 resnet34"; amps="none bf16 fp16"
  batch=128; chunk=2.0; steps=10; workers=8; device=cuda; gpus=1
  rtf_args=(--device cuda --seconds 60 --repeats 3)
  speakers=40; train_steps=300; recipe_conf="model: {name: ecapa_tdnn, channels: 512}"
  ls_train="--device cuda --epochs 4 --batches-per-epoch 100"; ls_lm="--epochs 1 --batches-per-epoch 50"
  ls_workers="--num-workers 15 --epochs 2 --batches-per-epoch 60"; ls_fake_speakers=130 ls_dev="" limit=240
fi

status=0
selected() {  # selected STEP-NAME: whether --only (none: every step) takes this step
  case "$1" in
    *librispeech*) [ -z "$only" ] || [ "$only" = librispeech ] ;;
    train_throughput) [ -z "$only" ] || [ "$only" = throughput ] ;;
    extract_rtf) [ -z "$only" ] || [ "$only" = extract ] ;;
    *) [ -z "$only" ] || [ "$only" = voxceleb ] ;;
  esac
}

step() {  # step NAME COMMAND...: run (at most $limit seconds), keep its output, note pass/fail
  local name=$1; shift
  selected "$name" || return 0
  echo "== $name: $*" | tee -a "$out/summary.txt"
  local started=$SECONDS
  if timeout "$limit" "$@" > "$out/$name.txt" 2>&1; then
    echo "   passed in $((SECONDS - started)) s" | tee -a "$out/summary.txt"
  else
    echo "   FAILED in $((SECONDS - started)) s (see $out/$name.txt)" | tee -a "$out/summary.txt"
    tail -5 "$out/$name.txt"
    status=1
  fi
}

: > "$out/summary.txt"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/summary.txt"
fi
$python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available())" | tee -a "$out/summary.txt"

if [ -z "$librispeech" ]; then
  librispeech="$work/librispeech"
  step fake_librispeech $python -c "import sys; from pathlib import Path; from tests.fake_corpora import \
make_fake_librispeech as m; m(Path(sys.argv[1]), {'train-clean-100': int(sys.argv[2]), 'test-other': 3}, chapters=1, \
utts=2, seconds=7.0)" "$librispeech" "$ls_fake_speakers"
fi
ls_exp="$work/ls_exp"
# shellcheck disable=SC2086  # option lists
step librispeech bash recipes/librispeech/run.sh --corpus "$librispeech" --data "$work/ls_data" --exp "$ls_exp" \
  --config conf/gpu.yaml --name gpu --members 1 --stop-stage 4 --train-opts "$ls_train" --lm-opts "$ls_lm" $ls_dev
step librispeech_gpu_time $python bench/gpu_estimate.py \
  --measured "recipes/librispeech/conf/gpu.yaml=$ls_exp/gpu_pretrain/train_log.jsonl" \
  --measured "recipes/librispeech/conf/gpu_lm.yaml=$ls_exp/gpu/train_log.jsonl"
# shellcheck disable=SC2086  # option lists
step librispeech_workers spkverif train --config recipes/librispeech/conf/gpu.yaml --data "$work/ls_data/train" \
  --exp "$ls_exp/gpu_workers" $ls_train $ls_workers
step librispeech_workers_time $python bench/gpu_estimate.py \
  --measured "recipes/librispeech/conf/gpu.yaml=$ls_exp/gpu_workers/train_log.jsonl"

# shellcheck disable=SC2086  # models and amps are lists
step train_throughput $python bench/train_throughput.py --models $models --amp $amps --workers $workers \
  --batch "$batch" --seconds "$chunk" --steps "$steps" --warmup "$steps" --device "$device"
step extract_rtf $python bench/extract_rtf.py "${rtf_args[@]}"

# The VoxCeleb recipe's corpora are m4a (AAC): making and decoding them needs PyAV or ffmpeg.
if ! selected recipe_stage1; then
  :
elif ! $python -c "import av" 2> /dev/null && ! command -v ffmpeg > /dev/null; then
  echo "== the VoxCeleb recipe: skipped: neither PyAV nor ffmpeg is here to write and decode m4a" \
    | tee -a "$out/summary.txt"
else
  step fake_voxceleb $python - "$work/corpora" "$speakers" <<'EOF'
import sys
from pathlib import Path

from tests.fake_corpora import make_fake_musan, make_fake_rirs, make_fake_voxceleb1, make_fake_voxceleb2

root, speakers = Path(sys.argv[1]), int(sys.argv[2])
make_fake_voxceleb1(root / "VoxCeleb1", dev_speakers=2, test_speakers=4, videos=2, utts=2, seconds=2.0, trials=24)
make_fake_voxceleb2(root / "VoxCeleb2", speakers=speakers, videos=2, utts=2, seconds=3.0)
make_fake_musan(root / "musan")
make_fake_rirs(root / "rirs")
EOF

  mkdir -p "$work/conf"
  cat > "$work/conf/check.yaml" <<EOF
seed: 0
data: {chunk_seconds: 2.0, num_workers: $workers}
training: {epochs: 1, batches_per_epoch: $train_steps, speakers_per_batch: $speakers, log_every: 50,
           checkpoint_every: 100}
augment: {noise: $work/data, noise_prob: 0.6, rir: $work/data/rirs, rir_prob: 0.6, speed_perturb: true}
$recipe_conf
loss: {name: aam}
optimizer: {name: sgd, lr: 0.01}
EOF
  recipe=(bash recipes/voxceleb/run.sh --data "$work/data" --exp "$work/exp" --conf "$work/conf" --experiments check
          --gpus "$gpus" --nj 2 --cohort-utts 2 --top-n 3 --voxceleb1 "$work/corpora/VoxCeleb1"
          --voxceleb2 "$work/corpora/VoxCeleb2" --musan "$work/corpora/musan" --rirs "$work/corpora/rirs")
  step recipe_stage1 "${recipe[@]}" --stage 1 --stop-stage 1
  step recipe_stages2-5 "${recipe[@]}" --stage 2 --stop-stage 5
fi

echo "GPU check finished: $([ $status -eq 0 ] && echo "every step passed" || echo "some steps FAILED"); see $out" \
  | tee -a "$out/summary.txt"
exit $status
