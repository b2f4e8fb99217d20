#!/usr/bin/env bash
# A copy of data directory SRC whose audio goes through a telephone line: each
# wav.scp entry becomes an ffmpeg pipe that band-limits to 300-3400 Hz, encodes
# with the GSM 06.10 full-rate codec at 8 kHz (libgsm), decodes, and resamples
# back to 16 kHz. Trials (where SRC has them), utt2spk and the rest are copied as they are.
#
#   local/telephone.sh SRC DST
set -euo pipefail
if [ $# -ne 2 ]; then echo "usage: $0 SRC DST" >&2; exit 1; fi
src="$1"; dst="$2"
spkverif data copy -q "$src" "$dst"
[ ! -f "$src/trials" ] || cp "$src/trials" "$dst/trials"
awk '{
  path = $2; for (i = 3; i <= NF; i++) path = path " " $i
  if (path ~ /\|[[:space:]]*$/) { print "telephone.sh: pipes in wav.scp are not supported: " $1 > "/dev/stderr"; exit 1 }
  printf "%s ffmpeg -nostdin -loglevel error -i \047%s\047 -af highpass=f=300,lowpass=f=3400 -ar 8000 -ac 1 -c:a libgsm -f gsm - | ffmpeg -nostdin -loglevel error -f gsm -ar 8000 -i - -ar 16000 -c:a pcm_s16le -f wav - |\n", $1, path
}' "$src/wav.scp" > "$dst/wav.scp.tmp"
mv "$dst/wav.scp.tmp" "$dst/wav.scp"
