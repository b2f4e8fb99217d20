#!/usr/bin/env bash
# Launch `spkverif train ...` on the GPUs and nodes asked for, through torchrun:
#
#   launch_distributed.sh [--backend local|slurm|sge] [--gpus G] [--nodes N] [--node-rank R]
#                         [--master-addr HOST] [--port P] [--opts "..."] LOG spkverif train ...
#
# local: torchrun on this machine (with --nodes > 1, run it on every node with its
#   --node-rank and the same --master-addr); no GPUs means one process on the CPU.
# slurm: srun starts one torchrun per node, which meet at the first node (c10d rendezvous).
# sge:   qsub runs torchrun on one node with G GPUs (multi-node SGE is site-specific).
#
# Every word of the command is quoted (printf %q), as launch.sh quotes its words: a word
# holding spaces, quotes or `$` reaches `spkverif train` as that one word. --opts is the
# scheduler's options, split into words.
set -euo pipefail

backend=${LAUNCH_BACKEND:-local}
gpus=0; nodes=1; node_rank=0; master_addr=127.0.0.1; port=29500; opts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --node-rank) node_rank="$2"; shift 2 ;;
    --master-addr) master_addr="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --opts) opts="$2"; shift 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 3 ] || [ "$2" != spkverif ]; then
  echo "usage: $0 [options] LOG spkverif train ..." >&2
  exit 1
fi
log="$1"; shift 2
program=$(printf %q "$(command -v spkverif)")
args=$(printf '%q ' "$@")
mkdir -p "$(dirname "$log")"

if [ "$gpus" -eq 0 ]; then
  torchrun_cmd="$program $args"
elif [ "$nodes" -eq 1 ]; then
  torchrun_cmd="torchrun --standalone --nproc_per_node $gpus $program $args"
else
  torchrun_cmd="torchrun --nnodes $nodes --node_rank $node_rank --master_addr $master_addr --master_port $port --nproc_per_node $gpus $program $args"
fi

case "$backend" in
  local)
    echo "# $torchrun_cmd" > "$log"
    bash -c "$torchrun_cmd" 2>&1 | tee -a "$log"
    ;;
  slurm)
    if [ "$gpus" -eq 0 ]; then
      node_cmd="$program $args"
    else
      node_cmd="torchrun --nnodes $nodes --nproc_per_node $gpus --rdzv_id \$SLURM_JOB_ID --rdzv_backend c10d"
      node_cmd+=" --rdzv_endpoint \$(scontrol show hostnames \$SLURM_JOB_NODELIST | head -n 1):$port $program $args"
    fi
    # shellcheck disable=SC2086  # opts holds several options
    srun --nodes "$nodes" --ntasks-per-node 1 --gpus-per-node "$gpus" --output "$log" $opts bash -c "$node_cmd"
    ;;
  sge)
    # shellcheck disable=SC2086
    qsub -sync y -cwd -V -j y -b y -o "$log" $opts bash -c "$torchrun_cmd" >/dev/null
    ;;
  *)
    echo "$0: unknown backend '$backend' (local, slurm or sge)" >&2
    exit 1 ;;
esac
