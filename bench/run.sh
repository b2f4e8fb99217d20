#!/usr/bin/env bash
# Every side-by-side benchmark in one run (about 15 minutes on 2 cores); writes bench/results.md.
#   bench/run.sh                 # the full sizes
#   bench/run.sh --only scoring  # one figure
# The peers come from the `bench` extra: pip install -r requirements-bench.txt (or pip install .[bench]).
# On a shared machine, take its CPU lock around this script so other jobs do not share the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPKVERIF_BENCH_COMMAND="bench/run.sh"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python -m bench "$@"
