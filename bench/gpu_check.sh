#!/usr/bin/env bash
# The GPU check: one prepared script sized to fit in 8 minutes on one GPU (not yet timed on one).
#
#   bench/gpu_check.sh [OUT]           # on a GPU machine; figures go to OUT (default gpu_check)
#   bench/gpu_check.sh --tiny [OUT]    # the same steps at a tiny size on the CPU (what the tests run)
#
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

tiny=false
if [ "${1:-}" = "--tiny" ]; then tiny=true; shift; fi
out=$(mkdir -p "${1:-gpu_check}" && cd "${1:-gpu_check}" && pwd)
work="$out/work"
rm -rf "$work" && mkdir -p "$work"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python}

if $tiny; then
  models="xvector"; amps="none"; batch=8; chunk=0.5; steps=2; workers=0; device=cpu; gpus=0
  rtf_args=(--device cpu --seconds 2 --repeats 1 --models xvector)
  speakers=6; train_steps=3; recipe_conf="model: {name: xvector, channels: 32, stats_channels: 64, embedding_dim: 16}"
else
  models="xvector sinc_tdnn ecapa_tdnn:channels=512 ecapa_tdnn:channels=1024 resnet34"; amps="none bf16 fp16"
  batch=128; chunk=2.0; steps=10; workers=8; device=cuda; gpus=1
  rtf_args=(--device cuda --seconds 60 --repeats 3)
  speakers=40; train_steps=300; recipe_conf="model: {name: ecapa_tdnn, channels: 512}"
fi

status=0
step() {  # step NAME COMMAND...: run, keep its output, note pass/fail
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/summary.txt"
  local started=$SECONDS
  if "$@" > "$out/$name.txt" 2>&1; then
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

# shellcheck disable=SC2086  # models and amps are lists
step train_throughput $python bench/train_throughput.py --models $models --amp $amps --workers $workers \
  --batch "$batch" --seconds "$chunk" --steps "$steps" --warmup "$steps" --device "$device"
step extract_rtf $python bench/extract_rtf.py "${rtf_args[@]}"

make_corpora() {
  $python - "$work/corpora" "$speakers" <<'EOF'
import sys
from pathlib import Path

from tests.fake_corpora import make_fake_musan, make_fake_rirs, make_fake_voxceleb1, make_fake_voxceleb2

root, speakers = Path(sys.argv[1]), int(sys.argv[2])
make_fake_voxceleb1(root / "VoxCeleb1", dev_speakers=2, test_speakers=4, videos=2, utts=2, seconds=2.0, trials=24)
make_fake_voxceleb2(root / "VoxCeleb2", speakers=speakers, videos=2, utts=2, seconds=3.0)
make_fake_musan(root / "musan")
make_fake_rirs(root / "rirs")
EOF
}
step fake_voxceleb make_corpora

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

echo "GPU check finished: $([ $status -eq 0 ] && echo "every step passed" || echo "some steps FAILED"); see $out" \
  | tee -a "$out/summary.txt"
exit $status
