"""Decoding VoxCeleb2 once: files/s of each decoder, and the whole `prepare voxceleb2
--decode-to` stage, extrapolated to VoxCeleb2 dev (1,092,009 files, 2,360 h).

    python bench/decode_rate.py                      # 120 files, decoders pyav and ffmpeg, jobs 1 and 2
    python bench/decode_rate.py --files 400 --jobs 1 2 4

The sample is a fake VoxCeleb2 tree of AAC `.m4a` files (16 kHz mono, ~64 kb/s, as
VoxCeleb2 is) cut from real speech (../shared/data/librispeech) to VoxCeleb2's mean
length of 7.78 s (2,360.2 h / 1,092,009 files), or from synthetic noise where that corpus
is absent. The extrapolation assumes the rate stays the same over a million files (the
files are independent; the disk's speed for a million files is not measured here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.samples import MEAN_SECONDS, VOX2_FILES, make_m4a_tree
from spkverif.base.progress import set_quiet
from spkverif.io.decoders import DECODERS
from spkverif.stages.decode import DecodeOptions
from spkverif.stages.prepare.voxceleb import prepare_voxceleb2


def time_decoder(name: str, paths: list[Path]) -> float:
    decoder = DECODERS.get(name)
    started = time.perf_counter()
    for path in paths:
        decoder(str(path), 16000)
    return len(paths) / (time.perf_counter() - started)


def time_stage(root: Path, work: Path, audio_format: str, jobs: int) -> float:
    audio = work / f"audio-{audio_format}-{jobs}"
    started = time.perf_counter()
    prepare_voxceleb2(root, work / "data", decode_to=audio, decode=DecodeOptions(audio_format, jobs=jobs))
    rate = len(list(audio.rglob(f"*.{audio_format}"))) / (time.perf_counter() - started)
    shutil.rmtree(audio)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=120, help="Files in the sample.")
    parser.add_argument("--decoders", nargs="+", default=["pyav", "ffmpeg"], help="Decoders to time alone.")
    parser.add_argument("--formats", nargs="+", default=["wav", "flac"], help="Output formats of the stage.")
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2], help="Decoding processes of the stage.")
    args = parser.parse_args()
    set_quiet(True)
    print(f"CPU cores: {os.cpu_count()}; sample: {args.files} AAC files of {MEAN_SECONDS:.2f} s")
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        paths = make_m4a_tree(work / "vox2", args.files)
        rows = []
        for name in args.decoders:
            if name == "ffmpeg" and shutil.which("ffmpeg") is None:
                print("ffmpeg is not on PATH: its decoder is not timed")
                continue
            rows.append((f"decoder {name} alone", 1, time_decoder(name, paths)))
        for audio_format in args.formats:
            for jobs in args.jobs:
                rows.append(
                    (f"prepare --decode-to, {audio_format}", jobs, time_stage(work / "vox2", work, audio_format, jobs))
                )
    print(f"\n{'what':<32} {'procs':>5} {'files/s':>8} {'x real time':>12} {'VoxCeleb2 dev (extrapolated)':>30}")
    for what, jobs, rate in rows:
        hours = VOX2_FILES / rate / 3600
        print(f"{what:<32} {jobs:>5} {rate:>8.1f} {rate * MEAN_SECONDS:>12.0f} {hours:>27.1f} h")


if __name__ == "__main__":
    main()
