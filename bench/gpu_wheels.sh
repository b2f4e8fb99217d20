#!/usr/bin/env bash
# Wheels of what spkverif needs and the lent GPU machines' image lacks (soundfile with cffi and
# pycparser, kaldiio, PyAV), for that image's Python 3.12 on x86-64, into .whl/ (git-ignored), for
# the device tool to carry to bench/gpu_check.sh (see its header). About 38 MB, from PyPI:
#
#   bash bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
pinned() { grep "^$1==" requirements.txt; }
$python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "$(pinned soundfile)" "$(pinned kaldiio)" "$(pinned av)" cffi==2.1.1 pycparser==3.12
ls -l .whl
