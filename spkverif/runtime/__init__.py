"""Running an embedding network on audio, whichever file holds it.

Three kinds of model file run here, told apart by their content, not their name:

- `pytorch`: a spkverif model file or training checkpoint (`models/final.pt`);
- `torchscript`: what `spkverif export --format torchscript` writes;
- `onnx`: what `spkverif export --format onnx` writes, run by onnxruntime with
  numpy alone: this path imports neither torch nor `spkverif.training`.

Each opens as an `Embedder`: waveforms (B, T) float32 at its sample rate in,
embeddings (B, D) float32 out, with the metadata the export stored.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Registry
from spkverif.runtime.base import DEVICE, METADATA_NAME, Embedder, check_finite_embedding, embed_block, fit_length

RUNTIMES: Registry = Registry("model file kind")


@RUNTIMES.register("pytorch")
def open_pytorch(path: Path, device: str) -> Embedder:
    """A spkverif model file or training checkpoint, run by PyTorch on --device."""
    from spkverif.runtime.pytorch import PytorchEmbedder  # torch: imported for this kind alone

    return PytorchEmbedder.from_file(path, device)


@RUNTIMES.register("torchscript")
def open_torchscript(path: Path, device: str) -> Embedder:
    """A TorchScript file from `spkverif export --format torchscript`, run by libtorch on --device."""
    from spkverif.runtime.pytorch import TorchScriptEmbedder

    return TorchScriptEmbedder.from_file(path, device)


@RUNTIMES.register("onnx")
def open_onnx(path: Path, device: str) -> Embedder:
    """An ONNX file from `spkverif export --format onnx`, run by onnxruntime (CUDA if asked and available)."""
    from spkverif.runtime.onnx import OnnxEmbedder  # onnxruntime and numpy, without torch

    return OnnxEmbedder.from_file(path, device)


def file_kind(path: str | Path) -> str:
    """`pytorch`, `torchscript` or `onnx`, from the first bytes and, for a zip, its member names.

    `torch.save` and `torch.jit.save` both write zip archives; only the latter
    holds `code/` and our metadata under `extra/`. An ONNX file is a protobuf
    whose first field (ir_version, field 1, varint) starts with byte 0x08.
    Raises `SpkverifError` when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise SpkverifError("no such model file", path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK"):
        try:
            names = zipfile.ZipFile(path).namelist()
        except zipfile.BadZipFile:
            return "pytorch"
        if any(name.endswith(f"/extra/{METADATA_NAME}") or "/code/" in name for name in names):
            return "torchscript"
        return "pytorch"
    if head[:1] == b"\x08":
        return "onnx"
    return "pytorch"


def open_model(path: str | Path, device: str = DEVICE) -> Embedder:
    """The embedder for a model file of any kind (see `file_kind`).

    Raises `SpkverifError` for a missing file, a file of none of the kinds, or an
    exported file without spkverif's metadata.
    """
    return RUNTIMES.get(file_kind(path))(Path(path), device)


def open_models(paths: str | Path | Sequence[str | Path], device: str = DEVICE) -> Embedder:
    """One model file's embedder, or for several an `EnsembleEmbedder` of them, in order.

    Several files (of any kinds, mixed) run as one network whose cosine scores are the
    mean of theirs (`spkverif.runtime.ensemble`). Raises `SpkverifError` as `open_model`
    does, for no file at all, and for files at different sample rates.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise SpkverifError("no model file given")
    if len(paths) == 1:
        return open_model(paths[0], device)
    from spkverif.runtime.ensemble import EnsembleEmbedder  # only here: it loads the back ends

    return EnsembleEmbedder([open_model(path, device) for path in paths], [str(path) for path in paths])


__all__ = [
    "DEVICE",
    "METADATA_NAME",
    "RUNTIMES",
    "Embedder",
    "check_finite_embedding",
    "embed_block",
    "file_kind",
    "fit_length",
    "open_model",
    "open_models",
]
