#!/usr/bin/env bash
# The dev set nobody trains on, carved from the training speakers: --speakers of them,
# chosen with --seed, leave TRAIN (it is rewritten without them, through `data subset`),
# and their utterances are cut into segments of each length in --seconds (DATA/dev for
# the first, DATA/dev_<L>s for the others), each with every pair of its segments as
# trials (target: the same speaker). Configurations are chosen on these; the test sets
# are scored once a configuration is frozen.
#
#   local/make_dev.sh [--speakers 40] [--seed 0] [--seconds "3 2 1"] TRAIN DATA
set -euo pipefail
speakers=40
seed=0
seconds="3 2 1"
__recipe_options="speakers seed seconds"
. ../../bin/parse_options.sh
if [ $# -ne 2 ]; then echo "usage: $0 [options] TRAIN DATA" >&2; exit 1; fi
train="$1"; data="$2"
export LC_ALL=C

total=$(wc -l < "$train/spk2utt")
if (( speakers < 1 || speakers >= total )); then
  echo "$0: --speakers $speakers: the training set $train has $total speakers, and at least one must stay" \
    "to train on (give 1 to $(( total - 1 )))" >&2
  exit 1
fi
[ -f "$train/utt2dur" ] || { echo "$0: $train/utt2dur not found (spkverif data durations $train)" >&2; exit 1; }

tmp=$(mktemp -d "$data/.make_dev.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# the speakers with audio for 2 segments of the longest length (a target trial needs 2)
longest=$(for length in $seconds; do echo "$length"; done | sort -g | tail -n 1)
awk -v longest="$longest" 'NR == FNR { spk[$1] = $2; next } { n[spk[$1]] += int($2 / longest + 1e-6) }
  END { for (s in n) if (n[s] >= 2) print s }' "$train/utt2spk" "$train/utt2dur" | sort > "$tmp/eligible"
eligible=$(wc -l < "$tmp/eligible")
if (( eligible < speakers )); then
  echo "$0: --speakers $speakers: only $eligible of the $total training speakers have audio for 2 segments" \
    "of $longest s (a target trial needs 2); give --speakers $eligible or less, or shorter --seconds" >&2
  exit 1
fi
# a seeded draw among them: each speaker's key is a hash of the seed and the speaker, so the
# same corpus and seed hold out the same speakers on any machine
awk -v seed="$seed" '{
  key = seed ":" $1; h = 5381
  for (i = 1; i <= length(key); i++) h = (h * 33 + index("0123456789abcdefghijklmnopqrstuvwxyz-_:ABCDEFGHIJKLMNOPQRSTUVWXYZ", substr(key, i, 1))) % 2147483647
  print h, $1
}' "$tmp/eligible" | sort -n -k1,1 -k2,2 | head -n "$speakers" | cut -d' ' -f2 | sort > "$tmp/dev_speakers"
cut -d' ' -f1 "$train/spk2utt" | sort | comm -23 - "$tmp/dev_speakers" > "$tmp/train_speakers"

spkverif data subset -q "$train" "$tmp/whole" --spk-list "$tmp/dev_speakers"

first=""
for length in $seconds; do
  name="dev_${length}s"; [ -n "$first" ] || { name=dev; first=$length; }
  out="$tmp/$name"
  mkdir -p "$out"
  # segments of $length s, as many as fit in each utterance (none from a shorter one)
  awk -v length_s="$length" 'NR == FNR { spk[$1] = $2; next }
    { n = int($2 / length_s + 1e-6)
      for (k = 1; k <= n; k++) {
        seg = sprintf("%s-%ss%02d", $1, length_s, k)
        printf "%s %s %.2f %.2f\n", seg, $1, (k - 1) * length_s, k * length_s > segments
        print seg, spk[$1] > utt2spk
      } }' segments="$out/segments" utt2spk="$out/utt2spk.unsorted" "$tmp/whole/utt2spk" "$tmp/whole/utt2dur"
  if [ ! -s "$out/segments" ]; then
    echo "$0: no utterance of the $speakers dev speakers is $length s long: nothing to cut" >&2; exit 1
  fi
  too_few=$(cut -d' ' -f2 "$out/utt2spk.unsorted" | sort | uniq -c | awk '$1 < 2' | wc -l)
  if (( too_few > 0 )); then
    echo "$0: $too_few of the $speakers dev speakers have audio for fewer than 2 segments of $length s" \
      "(a target trial needs 2): give longer utterances or shorter --seconds" >&2
    exit 1
  fi
  sort -k1,1 "$out/segments" -o "$out/segments"
  awk '{ printf "%s %.2f\n", $1, $4 - $3 }' "$out/segments" > "$out/utt2dur"   # for QMF calibration (stage 7)
  sort -k1,1 "$out/utt2spk.unsorted" > "$out/utt2spk"; rm "$out/utt2spk.unsorted"
  cp "$tmp/whole/wav.scp" "$out/wav.scp"
  awk '{ utts[$2] = utts[$2] " " $1 } END { for (s in utts) print s utts[s] }' "$out/utt2spk" | sort -k1,1 > "$out/spk2utt"
  # every pair of segments, once, in the sorted order of the segments
  awk '{ id[NR] = $1; spk[NR] = $2 } END {
    for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++)
      print id[i], id[j], (spk[i] == spk[j] ? "target" : "nontarget") }' "$out/utt2spk" > "$out/trials"
  spkverif validate -q "$out" --trials "$out/trials"
done

spkverif data subset -q "$train" "$tmp/train" --spk-list "$tmp/train_speakers"
[ -f "$train/utt2dur" ] && [ ! -f "$tmp/train/utt2dur" ] && awk 'NR == FNR { keep[$1]; next } $1 in keep' \
  "$tmp/train/utt2spk" "$train/utt2dur" > "$tmp/train/utt2dur"
for name in dev $(for length in $seconds; do [ "$length" = "$first" ] || echo "dev_${length}s"; done); do
  rm -rf "${data:?}/$name"
  mv "$tmp/$name" "$data/$name"
done
spkverif data copy -q "$tmp/train" "$train"   # the training set without the dev speakers, replaced whole
cp "$tmp/dev_speakers" "$data/dev_speakers"
echo "$0: $speakers of $total training speakers held out as dev ($(wc -l < "$data/dev/trials") trials of $first s segments)"
