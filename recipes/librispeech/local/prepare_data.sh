#!/usr/bin/env bash
# Stage 0 of the LibriSpeech recipe: one data directory per subset (test subsets with
# trials), the training set (the training subsets and, with --mini DIR, the synthetic
# mini corpus's training speakers, ids prefixed so they cannot clash) less the
# --dev-speakers held out as the dev sets (local/make_dev.sh), and the AS-norm cohort
# (the first --cohort-utts utterances of each remaining training speaker).
#
#   local/prepare_data.sh [--num-trials N] [--seed S] [--mini DIR] [--cohort-utts K] [--dev-speakers N]
#                         [--dev-seconds "3 2 1"] CORPUS DATA "TRAIN SUBSETS" "TEST SUBSETS"
set -euo pipefail
num_trials=""
seed=0
mini=""
cohort_utts=3
dev_speakers=40
dev_seconds="3 2 1"
__recipe_options="num_trials seed mini cohort_utts dev_speakers dev_seconds"
. ../../bin/parse_options.sh
if [ $# -ne 4 ]; then echo "usage: $0 [options] CORPUS DATA TRAIN_SUBSETS TEST_SUBSETS" >&2; exit 1; fi
corpus="$1"; data="$2"; train_subsets="$3"; test_subsets="$4"

trials=(); [ -n "$num_trials" ] && trials=(--trials "$num_trials" --seed "$seed")
# shellcheck disable=SC2086  # lists of subsets
spkverif prepare librispeech "$corpus" --out "$data" --subsets "$(echo $train_subsets $test_subsets | tr ' ' ,)" "${trials[@]}"
parts=()
for subset in $train_subsets; do parts+=("$data/${subset//-/_}"); done
if [ -n "$mini" ]; then
  spkverif data copy -q "$mini/train" "$data/mini_train" --spk-prefix mini- --utt-prefix mini-
  parts+=("$data/mini_train")
fi
spkverif data combine -q "$data/train" "${parts[@]}"
# the dev speakers leave the training set (and so the cohort) before anything is trained on it
local/make_dev.sh --speakers "$dev_speakers" --seed "$seed" --seconds "$dev_seconds" "$data/train" "$data"
spkverif data subset -q "$data/train" "$data/cohort" --per-spk "$cohort_utts"
spkverif validate -q "$data/train"
