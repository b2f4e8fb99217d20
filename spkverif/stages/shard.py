"""`spkverif shard`: pack a data directory's utterances into tar shards of about
`--shard-size` bytes, for storage where a million small files are slow (network
filesystems), as WebDataset, WeSpeaker and NeMo do.

Utterances are shuffled (seeded) before packing, so each shard mixes speakers and a
streaming reader's shuffle buffer starts from mixed material. OUT is the data directory
again (wav.scp still names the original audio) with `shards.list`; `spkverif train
--data OUT` then reads the shards streaming (spkverif.training.streaming).
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import numpy as np

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import ProgressBar
from spkverif.io.atomic import atomic_write
from spkverif.io.audio import AudioReader
from spkverif.io.datadir import DataDir, load_data_dir
from spkverif.io.shards import SHARD_LIST, Shard, wav_bytes, write_member

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SHARD_SIZE = "1G"
"""About the bytes of a shard unless told (`--shard-size`), as `parse_size` reads it."""


def parse_size(text: str) -> int:
    """`1G`, `500M`, `64k` or a number of bytes -> bytes; SpkverifError otherwise."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("b")
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        size = int(float(number) * scale)
    except ValueError:
        raise SpkverifError(f"--shard-size must be bytes such as 1G or 500M, not {text!r}") from None
    if size <= 0:
        raise SpkverifError(f"--shard-size must be positive, not {text!r}")
    return size


DEFAULT_SHARD_BYTES = parse_size(SHARD_SIZE)


def shard(
    data_dir: str | Path,
    out: str | Path,
    shard_dir: str | Path,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    seed: int = 0,
    allow_resample: bool = False,
) -> list[Shard]:
    """Write DATA_DIR's utterances to SHARD_DIR/shard-NNNNNN.tar and OUT (the data directory
    with shards.list and utt2dur of the packed lengths); returns the shards.

    Raises SpkverifError for an utterance id with `.` or `/` (the WebDataset key would be
    cut there), for audio that cannot be read, and for audio not at 16 kHz unless
    `allow_resample`.
    """
    data = load_data_dir(data_dir)
    for utt in data.utterances:
        if "." in utt or "/" in utt:
            raise SpkverifError(f"utterance id {utt!r} holds '.' or '/', which a shard's member names cannot", data_dir)
    reader = AudioReader.from_data_dir(data, SAMPLE_RATE, allow_resample)
    order = [data.utterances[i] for i in np.random.default_rng(seed).permutation(len(data.utterances))]
    shard_dir = Path(shard_dir).resolve()
    shard_dir.mkdir(parents=True, exist_ok=True)
    shards: list[Shard] = []
    lengths: dict[str, int] = {}
    with ProgressBar(len(order), "shard", unit="utt") as bar:
        position = 0
        while position < len(order):
            path = shard_dir / f"shard-{len(shards):06d}.tar"
            with atomic_write(path, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as archive:
                written, first = 0, position
                while position < len(order) and (position == first or written < shard_bytes):
                    utt = order[position]
                    samples = np.clip(np.rint(reader.read(utt) * 32768.0), -32768, 32767).astype(np.int16)
                    lengths[utt] = len(samples)
                    audio = wav_bytes(samples, SAMPLE_RATE)
                    write_member(archive, f"{utt}.wav", audio)
                    write_member(archive, f"{utt}.spk", data.utt2spk[utt].encode())
                    written += len(audio) + 1536
                    position += 1
                    bar.advance(1)
            shards.append(Shard(str(path), position - first, path.stat().st_size))
    out = Path(out)
    DataDir(
        data.wav_scp,
        data.utt2spk,
        data.segments,
        {utt: lengths[utt] / SAMPLE_RATE for utt in data.utterances},
    ).save(out)
    with atomic_write(out / SHARD_LIST) as handle:
        handle.writelines(f"{s.path} {s.utterances} {s.size}\n" for s in shards)
    logger.info("%d utterances in %d shards under %s; list in %s", len(order), len(shards), shard_dir, out / SHARD_LIST)
    return shards
