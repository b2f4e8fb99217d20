#!/usr/bin/env bash
# Stage 1 of the recipe: VoxCeleb1 (with its O/E/H trial lists), VoxCeleb2, MUSAN and
# RIRS_NOISES as Kaldi data directories under DATA, the adaptive s-norm cohort (the
# first --cohort-utts utterances of every training speaker), and a check of each.
#
#   local/prepare_data.sh [--nj 8] [--trials-dir DIR] [--audio-ext m4a] [--decode-to DIR] \
#       [--decode-format wav] [--train-set vox2_dev] [--cohort-utts 5] VOXCELEB1 VOXCELEB2 MUSAN RIRS DATA
#
# With --decode-to DIR (the recipe's default), VoxCeleb2 is decoded once into DIR as
# 16 kHz mono files by --nj jobs through cmd.sh's launcher (each decodes every nj-th
# file; a killed run resumes), and data/vox2_dev names the decoded files. With
# --decode-to "" its wav.scp decodes the m4a files through ffmpeg pipes instead.
set -euo pipefail
nj=8
trials_dir=""
audio_ext=m4a
decode_to=""
decode_format=wav
train_set=vox2_dev
cohort_utts=5
__recipe_options="nj trials_dir audio_ext decode_to decode_format train_set cohort_utts"
. "$(dirname "$0")/../../../bin/parse_options.sh"
. "$(dirname "$0")/../cmd.sh"
if [ $# -ne 5 ]; then
  echo "usage: $0 [options] VOXCELEB1 VOXCELEB2 MUSAN RIRS DATA (--help lists the options)" >&2
  exit 1
fi
voxceleb1="$1"; voxceleb2="$2"; musan="$3"; rirs="$4"; data="$5"

spkverif prepare voxceleb1 "$voxceleb1" --out "$data" --jobs "$nj" ${trials_dir:+--trials-dir "$trials_dir"}
if [ -n "$decode_to" ]; then
  decode=(spkverif prepare voxceleb2 -q "$voxceleb2" --out "$data" --audio-ext "$audio_ext"
          --decode-to "$decode_to" --format "$decode_format")
  echo "decoding VoxCeleb2 into $decode_to, $nj jobs; logs in $data/log/decode_vox2.*.log"
  cpu_cmd "JOB=1:$nj" "$data/log/decode_vox2.JOB.log" "${decode[@]}" --part "JOB/$nj" --jobs 1
  "${decode[@]}" --jobs "$nj"  # every file is done by now: this checks them and writes the data directory
else
  spkverif prepare voxceleb2 "$voxceleb2" --out "$data" --jobs "$nj" --audio-ext "$audio_ext"
fi
spkverif prepare musan "$musan" --out "$data" --jobs "$nj"
spkverif prepare rirs "$rirs" --out "$data" --jobs "$nj"
subset_per_speaker.sh "$data/$train_set" "$cohort_utts" "$data/cohort"
for set in "$train_set" vox1 cohort; do
  spkverif validate -q --no-audio-check "$data/$set"
done
