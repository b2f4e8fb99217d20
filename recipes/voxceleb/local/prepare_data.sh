#!/usr/bin/env bash
# Stage 1 of the recipe: VoxCeleb1 (with its O/E/H trial lists), VoxCeleb2, MUSAN and
# RIRS_NOISES as Kaldi data directories under DATA, the adaptive s-norm cohort (the
# first --cohort-utts utterances of every training speaker), and a check of each.
#
#   local/prepare_data.sh [--nj 8] [--trials-dir DIR] [--audio-ext m4a] \
#       [--train-set vox2_dev] [--cohort-utts 5] VOXCELEB1 VOXCELEB2 MUSAN RIRS DATA
set -euo pipefail
nj=8
trials_dir=""
audio_ext=m4a
train_set=vox2_dev
cohort_utts=5
__recipe_options="nj trials_dir audio_ext train_set cohort_utts"
. "$(dirname "$0")/../../../bin/parse_options.sh"
if [ $# -ne 5 ]; then
  echo "usage: $0 [options] VOXCELEB1 VOXCELEB2 MUSAN RIRS DATA (--help lists the options)" >&2
  exit 1
fi
voxceleb1="$1"; voxceleb2="$2"; musan="$3"; rirs="$4"; data="$5"

spkverif prepare voxceleb1 "$voxceleb1" --out "$data" --jobs "$nj" ${trials_dir:+--trials-dir "$trials_dir"}
spkverif prepare voxceleb2 "$voxceleb2" --out "$data" --jobs "$nj" --audio-ext "$audio_ext"
spkverif prepare musan "$musan" --out "$data" --jobs "$nj"
spkverif prepare rirs "$rirs" --out "$data" --jobs "$nj"
subset_per_speaker.sh "$data/$train_set" "$cohort_utts" "$data/cohort"
for set in "$train_set" vox1 cohort; do
  spkverif validate -q --no-audio-check "$data/$set"
done
