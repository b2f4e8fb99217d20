#!/usr/bin/env bash
# Split a data directory into N parts by utterance, like Kaldi's utils/split_data.sh
# --per-utt: DATA/splitN/1 .. DATA/splitN/N, contiguous runs of the sorted utterances,
# each a complete data directory (wav.scp, utt2spk, spk2utt, and segments/utt2dur if present).
#
#   split_data.sh DATA N
set -euo pipefail
if [ $# -ne 2 ]; then echo "usage: $0 DATA N" >&2; exit 1; fi
data="$1"; parts="$2"
[ -f "$data/utt2spk" ] || { echo "$0: $data/utt2spk not found" >&2; exit 1; }
total=$(wc -l < "$data/utt2spk")
[ "$parts" -ge 1 ] && [ "$parts" -le "$total" ] || { echo "$0: cannot split $total utterances into $parts" >&2; exit 1; }
out="$data/split$parts"
if [ -f "$out/.done" ] && [ "$out/.done" -nt "$data/utt2spk" ]; then exit 0; fi
rm -rf "$out"
for ((part = 1; part <= parts; part++)); do
  dir="$out/$part"
  mkdir -p "$dir"
  awk -v part="$part" -v parts="$parts" -v total="$total" \
    'NR > int((part - 1) * total / parts) && NR <= int(part * total / parts)' "$data/utt2spk" > "$dir/utt2spk"
  awk 'NR == FNR { keep[$1] = 1; next } $1 in keep' "$dir/utt2spk" "$data/utt2dur" > "$dir/utt2dur" 2>/dev/null || rm -f "$dir/utt2dur"
  if [ -f "$data/segments" ]; then
    awk 'NR == FNR { keep[$1] = 1; next } $1 in keep' "$dir/utt2spk" "$data/segments" > "$dir/segments"
    awk 'NR == FNR { keep[$2] = 1; next } $1 in keep' "$dir/segments" "$data/wav.scp" > "$dir/wav.scp"
  else
    awk 'NR == FNR { keep[$1] = 1; next } $1 in keep' "$dir/utt2spk" "$data/wav.scp" > "$dir/wav.scp"
  fi
  awk '{ if ($2 != last) { if (NR > 1) print line; line = $2; last = $2 } line = line " " $1 } END { if (NR) print line }' \
    "$dir/utt2spk" | LC_ALL=C sort > "$dir/spk2utt"
done
touch "$out/.done"
