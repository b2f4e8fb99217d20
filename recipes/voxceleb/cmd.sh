# How the recipe's stages run their jobs. The default runs everything on this
# machine; on a cluster, pick the scheduler and give its options: jobs then go
# through the scheduler's own launcher (sbatch/srun for Slurm, qsub for Grid Engine).
#
#   backend     local | slurm | sge
#   cpu_opts    options for CPU jobs (data preparation, scoring)
#   gpu_opts    options for GPU jobs (extraction, one GPU each)
#   train_opts  options for the training job (all its GPUs and nodes)

export LAUNCH_BACKEND=${LAUNCH_BACKEND:-local}

case "$LAUNCH_BACKEND" in
  slurm)
    cpu_opts="--partition=cpu --cpus-per-task=4 --mem=16G --time=12:00:00"
    gpu_opts="--partition=gpu --gres=gpu:1 --cpus-per-task=8 --mem=32G --time=12:00:00"
    train_opts="--partition=gpu --cpus-per-task=32 --mem=200G --time=7-00:00:00" ;;
  sge)
    cpu_opts="-l mem_free=16G"
    gpu_opts="-l gpu=1 -q gpu.q"
    train_opts="-l gpu=8 -q gpu.q" ;;
  *)
    cpu_opts=""; gpu_opts=""; train_opts="" ;;
esac

cpu_cmd() { launch.sh --opts "$cpu_opts" "$@"; }
gpu_cmd() { launch.sh --opts "$gpu_opts" "$@"; }
train_cmd() { launch_distributed.sh --opts "$train_opts" "$@"; }
