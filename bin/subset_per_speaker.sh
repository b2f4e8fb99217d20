#!/usr/bin/env bash
# A data directory holding the first K utterances of every speaker of another (in
# Kaldi's C order), the recordings and `segments` lines they use, and every other table
# cut to match: the adaptive s-norm cohort covers every training speaker without
# extracting every training utterance. The Kaldi-style spelling of
# `spkverif data subset DATA OUT --per-spk K`, which does the work (and checks it).
#
#   subset_per_speaker.sh DATA K OUT
set -euo pipefail
if [ $# -ne 3 ]; then echo "usage: $0 DATA K OUT" >&2; exit 1; fi
exec spkverif data subset -q "$1" "$3" --per-spk "$2"
