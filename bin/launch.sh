#!/usr/bin/env bash
# Run a command as one job or as an array of jobs, Kaldi-style:
#
#   launch.sh [--backend local|slurm|sge] [--opts "..."] [JOB=1:N] LOG COMMAND...
#
# JOB in LOG and in every word of COMMAND is replaced by each job's number. The local
# backend runs the jobs in parallel on this machine; slurm and sge hand them to the
# cluster's own launcher (sbatch --wait --array, qsub -sync y -t) with --opts passed
# through (split into words), and wait for them. Exits non-zero if any job failed,
# naming its log.
#
# Every word of COMMAND is quoted (printf %q), as launch_distributed.sh quotes its words
# and as Kaldi's run.pl passes each argument on: a word holding spaces, quotes or `$`
# reaches the job as that one word, never split or expanded again. A pipe, an `&&` chain
# or a shell expansion in the job is therefore written explicitly, as a small script
# whose arguments are words like any other (JOB is replaced in them too):
#
#   launch.sh JOB=1:4 log/x.JOB.log bash -c 'a --part "$1/4" && b "$1"' x JOB
#
# or as separate launches. (Words holding control characters such as a newline are
# quoted as $'...', which the slurm backend's `sbatch --wrap` shell, sh, does not read.)
set -euo pipefail

backend=${LAUNCH_BACKEND:-local}
opts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend="$2"; shift 2 ;;
    --opts) opts="$2"; shift 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "usage: $0 [--backend local|slurm|sge] [--opts \"...\"] [JOB=1:N] LOG COMMAND..." >&2
  exit 1
fi

first=1; last=1; array=false
if [[ "$1" =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
  first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}; array=true
  shift
fi
log="$1"; shift
command=$(printf '%q ' "$@")
mkdir -p "$(dirname "$log")"

case "$backend" in
  local)
    pids=()
    for ((job = first; job <= last; job++)); do
      job_log="${log//JOB/$job}"
      job_command="${command//JOB/$job}"
      ( echo "# $job_command"; echo "# started $(date)"; bash -c "$job_command"; status=$?;
        echo "# ended $(date), status $status"; exit $status ) > "$job_log" 2>&1 &
      pids+=($!)
    done
    failed=0
    for index in "${!pids[@]}"; do
      if ! wait "${pids[$index]}"; then
        job=$((first + index))
        echo "$0: job $job failed; see ${log//JOB/$job}" >&2
        failed=$((failed + 1))
      fi
    done
    [ "$failed" -eq 0 ] || { echo "$0: $failed of $((last - first + 1)) jobs failed" >&2; exit 1; }
    ;;
  slurm)
    if $array; then
      # shellcheck disable=SC2086  # opts holds several options
      sbatch --wait --parsable --array="$first-$last" --output="${log//JOB/%a}" $opts \
        --wrap "${command//JOB/\$SLURM_ARRAY_TASK_ID}" >/dev/null
    else
      # shellcheck disable=SC2086
      sbatch --wait --parsable --output="$log" $opts --wrap "$command" >/dev/null
    fi
    ;;
  sge)
    if $array; then
      # shellcheck disable=SC2086
      qsub -sync y -cwd -V -j y -b y -t "$first-$last" -o "${log//JOB/\$TASK_ID}" $opts \
        bash -c "${command//JOB/\$SGE_TASK_ID}" >/dev/null
    else
      # shellcheck disable=SC2086
      qsub -sync y -cwd -V -j y -b y -o "$log" $opts bash -c "$command" >/dev/null
    fi
    ;;
  *)
    echo "$0: unknown backend '$backend' (local, slurm or sge)" >&2
    exit 1 ;;
esac
