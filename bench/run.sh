#!/usr/bin/env bash
# Every side-by-side benchmark in one run (about 15 minutes on 2 cores); writes bench/results.md.
#   bench/run.sh                 # the full sizes
#   bench/run.sh --only scoring  # one figure
# The peers come from the `bench` extra: pip install -r requirements-bench.txt (or pip install .[bench]).
# WeSpeaker, 3D-Speaker and IDRnD's ReDimNet are no packages: a checkout of each goes on PYTHONPATH for this
# process only, from $WESPEAKER_ROOT / $SPEAKERLAB_ROOT / $REDIMNET_ROOT, else unpacked from a bare mirror
# ($WESPEAKER_MIRROR, $SPEAKERLAB_MIRROR, $REDIMNET_MIRROR; default /work/.mirror/<owner>+<name>/repo) into $SPKVERIF_PEERS_DIR
# (default ${XDG_CACHE_HOME:-~/.cache}/spkverif-bench-peers); a peer found nowhere has its rows left out.
# On a shared machine, take its CPU lock around this script so other jobs do not share the cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPKVERIF_BENCH_COMMAND="bench/run.sh"
peers_dir="${SPKVERIF_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spkverif-bench-peers}"
checkouts=()
peer_path=""

# place NAME ROOT_VARIABLE MIRROR: a checkout's directory on PYTHONPATH, or a printed reason.
place() {
  local name=$1 root=${!2:-} mirror=$3 commit=""
  if [ -z "$root" ] && [ -d "$mirror" ]; then
    commit=$(git --git-dir="$mirror" rev-parse HEAD)
    root="$peers_dir/$name-$commit"
    if [ ! -d "$root" ]; then
      mkdir -p "$root.partial"
      git --git-dir="$mirror" archive HEAD | tar -x -C "$root.partial"
      mv "$root.partial" "$root"
    fi
  fi
  if [ -z "$root" ] || [ ! -d "$root" ]; then
    echo "bench/run.sh: $name not found (set $2 to a checkout, or fetch its mirror to $mirror); its rows are left out" >&2
    checkouts+=("$name absent")
    return
  fi
  [ -n "$commit" ] || commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo "commit unknown")
  checkouts+=("$name ${commit:0:12} ($root)")
  peer_path="$peer_path:$root"
}

place WeSpeaker WESPEAKER_ROOT "${WESPEAKER_MIRROR:-/work/.mirror/wenet-e2e+wespeaker/repo}"
place 3D-Speaker SPEAKERLAB_ROOT "${SPEAKERLAB_MIRROR:-/work/.mirror/modelscope+3D-Speaker/repo}"
place IDRnD REDIMNET_ROOT "${REDIMNET_MIRROR:-/work/.mirror/IDRnD+redimnet/repo}"
SPKVERIF_BENCH_CHECKOUTS=$(IFS=,; echo "${checkouts[*]}" | sed 's/,/, /g')
export SPKVERIF_BENCH_CHECKOUTS
export PYTHONPATH="$PWD$peer_path${PYTHONPATH:+:$PYTHONPATH}"
exec python -m bench "$@"
