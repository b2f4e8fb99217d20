#!/usr/bin/env bash
# A data directory holding the first K utterances of every speaker of another
# (utt2spk in Kaldi order, grouped by speaker): the adaptive s-norm cohort covers
# every training speaker without extracting every training utterance.
#
#   subset_per_speaker.sh DATA K OUT
set -euo pipefail
if [ $# -ne 3 ]; then echo "usage: $0 DATA K OUT" >&2; exit 1; fi
data="$1"; per_speaker="$2"; out="$3"
mkdir -p "$out"
awk -v k="$per_speaker" '{ if (++seen[$2] <= k) print }' "$data/utt2spk" > "$out/utt2spk"
for file in wav.scp utt2dur; do
  if [ -f "$data/$file" ]; then
    awk 'NR == FNR { keep[$1] = 1; next } $1 in keep' "$out/utt2spk" "$data/$file" > "$out/$file"
  fi
done
awk '{ if ($2 != last) { if (NR > 1) print line; line = $2; last = $2 } line = line " " $1 } END { if (NR) print line }' \
  "$out/utt2spk" | LC_ALL=C sort > "$out/spk2utt"
