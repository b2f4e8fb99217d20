#!/usr/bin/env bash
# Calibration with and without quality measures (QMF), by two-fold cross-validation, shared
# by the recipes: the trials split by the enrolment utterance's speaker (alternate speakers
# in C-sorted order, so no speaker is in both halves); calibrate on one half, evaluate
# actDCF and Cllr on the other, and the other way round. Each fold also writes the
# calibration file `spkverif verify --calibration` reads.
#
#   calibrate_folds.sh [--cohort RSPEC] [--cohort-utt2spk FILE] [--top-n N] DATA SCORES EMBEDDINGS MODEL OUT
#
# DATA is the test data directory (utt2spk, utt2dur, trials), SCORES its score file,
# EMBEDDINGS the rspecifier of its embeddings (their norms are QMF terms), MODEL the
# model that made them (its fingerprint goes into each calibration file; an ensemble's
# files joined by commas, in extract's order: A.pt,B.pt). With --cohort,
# a third calibration, qmf_cohort, adds each side's mean of its top N cohort scores.
# Writes OUT/{spk2fold,trials.F,scores.F}, OUT/METHOD.F/{report.json,calibration.json}
# for METHOD in none (the raw scores), linear, qmf [, qmf_cohort] and fold F in 0 1, and
# OUT/summary.md: the means over the two folds of actDCF(0.01), actDCF(0.05) and Cllr.
set -euo pipefail
cohort=""
cohort_utt2spk=""
top_n=300
__recipe_options="cohort cohort_utt2spk top_n"
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"
if [ $# -ne 5 ]; then
  echo "usage: $0 [--cohort RSPEC] [--cohort-utt2spk FILE] [--top-n N] DATA SCORES EMBEDDINGS MODEL OUT" >&2
  exit 1
fi
data="$1"; scores="$2"; embeddings="$3"; dir="$5"
IFS=, read -ra model_files <<< "$4"
model_opts=()
for model in "${model_files[@]}"; do model_opts+=(--model "$model"); done
mkdir -p "$dir"

cut -d' ' -f2 "$data/utt2spk" | LC_ALL=C sort -u | awk '{print $1, NR % 2}' > "$dir/spk2fold"
for file in trials scores; do
  source_file="$data/trials"
  [ "$file" = scores ] && source_file="$scores"
  awk -v out="$dir/$file" 'FILENAME == ARGV[1] {fold[$1] = $2; next}
    FILENAME == ARGV[2] {utt_fold[$1] = fold[$2]; next}
    {print > (out "." utt_fold[$1])}' "$dir/spk2fold" "$data/utt2spk" "$source_file"
done

methods="linear qmf"
[ -n "$cohort" ] && methods="$methods qmf_cohort"
for fold in 0 1; do
  other=$(( 1 - fold ))
  common=(--trials "$dir/trials.$fold" --bootstrap 0 --no-det)
  spkverif report -q "${common[@]}" --out-dir "$dir/none.$fold" --name "fold $fold uncalibrated" "$dir/scores.$fold"
  for method in $methods; do
    extra=()
    if [ "$method" = qmf_cohort ]; then
      extra=(--cohort "$cohort" --top-n "$top_n")
      [ -n "$cohort_utt2spk" ] && extra+=(--cohort-utt2spk "$cohort_utt2spk")
    fi
    spkverif report "${common[@]}" --out-dir "$dir/$method.$fold" --name "fold $fold $method" \
      --calibrate "$dir/scores.$other" --calibrate-trials "$dir/trials.$other" --calibration-method "${method%_cohort}" \
      --durations "$data/utt2dur" --embeddings "$embeddings" "${extra[@]}" \
      "${model_opts[@]}" --save-calibration "$dir/$method.$fold/calibration.json" "$dir/scores.$fold"
  done
done

# The means over the folds (each fold's report.json holds the figures of its half).
python3 - "$dir" none $methods > "$dir/summary.md" <<'PY'
import json, sys
directory, methods = sys.argv[1], sys.argv[2:]
keys = (("act_dcf_0.01", "actDCF(0.01)"), ("act_dcf_0.05", "actDCF(0.05)"), ("cllr", "Cllr"))
print("| calibration | " + " | ".join(label for _, label in keys) + " |")
print("|---|" + "---:|" * len(keys))
for method in methods:
    rows = [json.load(open(f"{directory}/{method}.{fold}/report.json"))[0] for fold in (0, 1)]
    cells = [f"{sum(row[key] for row in rows) / 2:.3f}" for key, _ in keys]
    print(f"| {'raw scores' if method == 'none' else method} | " + " | ".join(cells) + " |")
PY
echo "means over the two folds, $dir/summary.md:"
cat "$dir/summary.md"
