#!/usr/bin/env bash
# The GPU check: one prepared script for one GPU, within --budget seconds of it (default 460; --tiny 1800).
#
#   bash bench/gpu_check.sh [--work DIR] [OUT]      # on a GPU machine; figures to OUT (default $OUT, else gpu_check)
#   bash bench/gpu_check.sh --tiny [--compile] [OUT]  # the same steps at a tiny size on the CPU (the tests')
#   bash bench/gpu_check.sh --only throughput|voxceleb|librispeech|extract[,...] [OUT]   # some steps alone
#
# Through the device tool, with the wheels of bench/gpu_wheels.sh (made here once) carried:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site && PYTHON=python3 bash bench/gpu_check.sh
#
# By default two steps:
#   1. training throughput (bench/train_throughput.py, a process a network): ResNet34, ECAPA-TDNN
#      C=1024 and CAM++ at 128 and 512 chunks of 2 s a step, bf16 autocast, Kaldi fbank computed on
#      the GPU inside the compiled model, torch.compile mode reduce-overhead (CUDA graphs), the 2-D
#      networks (ResNet34, CAM++'s front) channels-last, 12 loader workers reading WAV; ResNet34 also
#      eager, as `spkverif train --amp bf16` trains today. OUT/throughput.md and OUT/throughput.json:
#      chunks/s, data wait, peak memory, model FLOP utilisation against the card's published dense
#      bf16 peak, and the VoxCeleb2 epoch priced at ResNet34's rate.
#   2. the VoxCeleb recipe on a fake VoxCeleb tree (tests/fake_corpora.py): stage 1 (prepare,
#      VoxCeleb2 decoded once), then stages 2-5 (train 300 steps through torchrun on the one GPU,
#      extract, score, report); it needs PyAV or ffmpeg, and says it skipped otherwise.
# Opt-in, with --only: librispeech (the LibriSpeech recipe with conf/gpu.yaml and its fine-tuning, a
# short schedule, priced by bench/gpu_estimate.py --measured; then gpu.yaml with 15 workers) and
# extract (bench/extract_rtf.py: real-time factor of every network).
#
# Each part runs under its own time limit, cut to what is left of --budget (a slow part fails
# alone; its rows measured so far stay in the table). OUT gets summary.txt (which parts passed), throughput.md,
# throughput.json and logs.tar.gz (every part's output and training log); the parts' outputs are
# also in WORK/logs/*.txt. WORK (default: a new temporary folder) holds the corpora and experiments.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tiny=false compile=false librispeech="" only="" work="" budget=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=true; shift ;;
    --compile) compile=true; shift ;;
    --librispeech) librispeech=$(cd "$2" && pwd) || exit 1; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --only)
      for part in ${2//,/ }; do
        case "$part" in librispeech|throughput|extract|voxceleb) ;;
          *) echo "$0: --only takes throughput, voxceleb, librispeech or extract (or several, with commas), not '$part'" >&2
             exit 1 ;; esac
      done
      only=$2; shift 2 ;;
    *) break ;;
  esac
done
budget=${budget:-$($tiny && echo 1800 || echo 460)}  # the CPU's tiny run is slower than the GPU's
out=${1:-${OUT:-gpu_check}}
out=$(mkdir -p "$out" && cd "$out" && pwd) || exit 1
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
elif [ -e "$work" ] && [ -n "$(ls -A "$work")" ]; then
  echo "$0: --work $work is not empty: name a new folder" >&2; exit 1
fi
mkdir -p "$work/logs" && work=$(cd "$work" && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-$(command -v python || command -v python3)}
# The recipes' commands, where spkverif is not installed or torchrun is not on PATH
mkdir -p "$work/bin" && export PATH="$PATH:$work/bin"
command -v spkverif > /dev/null ||
  printf '#!%s\nfrom spkverif.cli import main\n\nmain()\n' "$(command -v "$python")" > "$work/bin/spkverif"
command -v torchrun > /dev/null || printf '#!/bin/sh\nexec %s -m torch.distributed.run "$@"\n' "$python" > "$work/bin/torchrun"
chmod +x "$work/bin/"* 2> /dev/null

if $tiny; then
  # CPU sizes. Channels-last ResNet34 at base_channels 8 (and CAM++ at fcm_channels 8) aborts in
  # PyTorch 2.9.1's CPU backward (a double free); 16 runs. The compiled rows use the eager backend
  # (dynamo's tracing, no code generation) unless --compile: inductor's C++ takes minutes here.
  # One torch thread: a tiny operation's arithmetic is shorter than two threads' meeting at its end,
  # which on a busy machine waits for the scheduler (CAM++'s step: 8 s on 2 threads, 0.2 s on 1).
  export OMP_NUM_THREADS=1
  resnet=resnet34:base_channels=16 ecapa=ecapa_tdnn:channels=32,scale=2,aggregate_channels=64
  campplus=campplus:fcm_channels=16,tdnn_channels=32,growth_rate=8,block_layers=[1,1,1]
  throughput=(--device cpu --amp none --workers 0 --batch 2 4 --seconds 0.5 --steps 1 --warmup 1
              --compile-backend "$($compile && echo inductor || echo eager)")
  rtf_args=(--device cpu --seconds 2 --repeats 1 --models xvector)
  speakers=6; train_steps=3; workers=0; gpus=0
  recipe_conf="model: {name: xvector, channels: 32, stats_channels: 64, embedding_dim: 16}"
  ls_train="--device cpu --num-workers 0 --epochs 4 --batches-per-epoch 1 --speakers-per-batch 4 --chunk-seconds 0.5
            --set model.channels=16 --set model.embedding_dim=8"
  ls_lm="--epochs 1 --batches-per-epoch 1 --chunk-seconds 0.6"; ls_workers="--num-workers 1 --epochs 2 --batches-per-epoch 1"
  ls_fake_speakers=7 ls_dev="--dev-speakers 2"
  limit_network=$($compile && echo 900 || echo 400) limit_prepare=600 limit_recipe=600
else
  resnet=resnet34 ecapa=ecapa_tdnn:channels=1024 campplus=campplus
  throughput=(--device cuda --amp bf16 --workers 12 --batch 128 512 --seconds 2.0 --steps 10 --warmup 10)
  rtf_args=(--device cuda --seconds 60 --repeats 3)
  speakers=40; train_steps=300; workers=8; gpus=1; recipe_conf="model: {name: ecapa_tdnn, channels: 512}"
  ls_train="--device cuda --epochs 4 --batches-per-epoch 100"; ls_lm="--epochs 1 --batches-per-epoch 50"
  ls_workers="--num-workers 15 --epochs 2 --batches-per-epoch 60"; ls_fake_speakers=130 ls_dev=""
  limit_network=170 limit_prepare=60 limit_recipe=150
fi
# Compiled rows: the whole model in mode reduce-overhead, i.e. inductor's default kernels replayed
# as CUDA graphs. A step of these networks is some hundreds of small kernels (BatchNorm, activations,
# CAM++'s masks) around cuDNN's convolutions, so launching them one by one is what a graph saves;
# max-autotune(-no-cudagraphs) would time many GEMM and convolution candidates per shape, minutes per
# network, which this budget cannot hold, for convolutions that stay on cuDNN by default.
throughput+=(--compile-mode reduce-overhead --channels-last --data "$work/throughput_corpus"
             --rows "$work/throughput_rows.jsonl" --markdown "$out/throughput.md" --json "$out/throughput.json")

status=0
deadline=$((SECONDS + budget))
wanted() { [[ ",$only," == *",$1,"* ]]; }
selected() {  # selected STEP-NAME: whether --only (none: throughput and voxceleb) takes this step
  case "$1" in
    *librispeech*) wanted librispeech ;;
    extract_rtf) wanted extract ;;
    throughput*) [ -z "$only" ] || wanted throughput ;;
    *) [ -z "$only" ] || wanted voxceleb ;;
  esac
}

step() {  # step LIMIT NAME COMMAND...: run under LIMIT seconds (cut to the budget left), keep its output
  local limit=$1 name=$2; shift 2
  selected "$name" || return 0
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 10 ]; then
    echo "== $name: NOT RUN: the budget of $budget s is spent" | tee -a "$out/summary.txt"
    status=1
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit $limit s): $*" | tee -a "$out/summary.txt"
  local started=$SECONDS code=0
  timeout -k 10 "$limit" "$@" > "$work/logs/$name.txt" 2>&1 || code=$?
  if [ $code -eq 0 ]; then
    echo "   passed in $((SECONDS - started)) s" | tee -a "$out/summary.txt"
  else
    echo "   FAILED in $((SECONDS - started)) s$([ $code -eq 124 ] && echo ", at its time limit") (see logs/$name.txt)" \
      | tee -a "$out/summary.txt"
    tail -5 "$work/logs/$name.txt"
    status=1
  fi
}

: > "$out/summary.txt"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/summary.txt"
fi
$python -c "import torch, os; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available(), os.cpu_count(), 'CPUs')" \
  | tee -a "$out/summary.txt"

# 1. Training throughput (the first network's process makes the corpus); the VoxCeleb recipe runs
# after ResNet34, before the other two networks. Each process remakes the table after each row.
step "$limit_network" throughput_resnet34 $python bench/train_throughput.py --models "$resnet" --compile off on \
  "${throughput[@]}"

# 2. The VoxCeleb recipe. Its corpora are m4a (AAC): making and decoding them needs PyAV or ffmpeg.
if ! selected recipe_stage1; then
  :
elif ! $python -c "import av" 2> /dev/null && ! command -v ffmpeg > /dev/null; then
  echo "== the VoxCeleb recipe: skipped: neither PyAV nor ffmpeg is here to write and decode m4a" \
    | tee -a "$out/summary.txt"
else
  step "$limit_prepare" fake_voxceleb $python - "$work/corpora" "$speakers" <<'EOF'
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
  step "$limit_prepare" recipe_stage1 "${recipe[@]}" --stage 1 --stop-stage 1
  step "$limit_recipe" recipe_stages2-5 "${recipe[@]}" --stage 2 --stop-stage 5
fi

step "$limit_network" throughput_ecapa_tdnn $python bench/train_throughput.py --models "$ecapa" --compile on \
  "${throughput[@]}"
step "$limit_network" throughput_campplus $python bench/train_throughput.py --models "$campplus" --compile on \
  "${throughput[@]}"

# Opt-in: the LibriSpeech recipe's GPU configurations, priced; extraction real-time factors.
if selected librispeech; then
  if [ -z "$librispeech" ]; then
    librispeech="$work/librispeech"
    step "$limit_prepare" fake_librispeech $python -c "import sys; from pathlib import Path; from tests.fake_corpora import \
make_fake_librispeech as m; m(Path(sys.argv[1]), {'train-clean-100': int(sys.argv[2]), 'test-other': 3}, chapters=1, \
utts=2, seconds=7.0)" "$librispeech" "$ls_fake_speakers"
  fi
  ls_exp="$work/ls_exp"
  # shellcheck disable=SC2086  # option lists
  step $((limit_recipe * 2)) librispeech bash recipes/librispeech/run.sh --corpus "$librispeech" --data "$work/ls_data" \
    --exp "$ls_exp" --config conf/gpu.yaml --name gpu --members 1 --stop-stage 4 --train-opts "$ls_train" \
    --lm-opts "$ls_lm" $ls_dev
  step "$limit_prepare" librispeech_gpu_time $python bench/gpu_estimate.py \
    --measured "recipes/librispeech/conf/gpu.yaml=$ls_exp/gpu_pretrain/train_log.jsonl" \
    --measured "recipes/librispeech/conf/gpu_lm.yaml=$ls_exp/gpu/train_log.jsonl"
  # shellcheck disable=SC2086  # option lists
  step "$limit_recipe" librispeech_workers spkverif train --config recipes/librispeech/conf/gpu.yaml --data "$work/ls_data/train" \
    --exp "$ls_exp/gpu_workers" $ls_train $ls_workers
  step "$limit_prepare" librispeech_workers_time $python bench/gpu_estimate.py \
    --measured "recipes/librispeech/conf/gpu.yaml=$ls_exp/gpu_workers/train_log.jsonl"
fi
step "$limit_recipe" extract_rtf $python bench/extract_rtf.py "${rtf_args[@]}"

echo "GPU check finished in $SECONDS s: $([ $status -eq 0 ] && echo "every step passed" || echo "some steps FAILED"); \
see $out" | tee -a "$out/summary.txt"
cp "$out/summary.txt" "$work/logs/"
(cd "$work" && find logs exp ls_exp -name '*.txt' -o -name train_log.jsonl -o -name '*.log' 2> /dev/null \
  | tar czf "$out/logs.tar.gz" -T -)
exit $status
