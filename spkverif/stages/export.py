"""The `export` stage: a trained model -> a file that runs without spkverif's training code.

The file holds the whole network, front end included: waveforms (B, T) at the
model's sample rate, float32 in [-1, 1], in; embeddings (B, D) out; both the
batch and the length axes are free (any length from `min_samples` up). Each
format is one exporter in `EXPORTERS`:

- `torchscript` (`torch.jit.trace` in eval mode, the BatchNorms folded and 2-d
  weights channels-last first: `spkverif.runtime.folding`): loads with
  `torch.jit.load` in Python or `torch::jit::load` in C++ (libtorch); the metadata is
  the archive's extra file `spkverif.json`.
- `onnx` (`torch.onnx.export` with the torch.export-based exporter, opset 18,
  so the filterbank's FFT becomes ONNX's `DFT`): runs in onnxruntime or any ONNX
  runtime; the metadata is the model's metadata property `spkverif.json`.

The metadata is the same for both: model name and options, sample rate,
embedding size, shortest input, and the model's fingerprint
(`spkverif.models.files.model_fingerprint`). Beside it each file carries
`spkverif.seal` (an extra file, a metadata property): the hash of the metadata's
text and of the exported network as written (`spkverif.runtime.base.seal`), so
metadata that is edited or copied onto another network is refused when the file is
opened. Before writing, the exported network is run on a batch of another size and
length and must give the model's embeddings within 1e-4 (relative to their largest
magnitude).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Registry
from spkverif.io.atomic import atomic_write
from spkverif.models import SpeakerEmbeddingModel
from spkverif.models.files import load_model
from spkverif.runtime.base import METADATA_NAME, SEAL_NAME, seal
from spkverif.runtime.pytorch import (
    TRACE_TOLERANCE,
    model_metadata,
    probe_batch,
    relative_deviation,
    torchscript_digest,
    trace_model,
)

ONNX_OPSET = 18

logger = logging.getLogger(__name__)

Exporter = Callable[[SpeakerEmbeddingModel, dict[str, Any], Path], float]
EXPORTERS: Registry[Exporter] = Registry("export format")


@EXPORTERS.register("torchscript")
def export_torchscript(model: SpeakerEmbeddingModel, info: dict[str, Any], path: Path) -> float:
    """TorchScript (torch.jit.trace): torch.jit.load in Python, torch::jit::load in C++."""
    traced, deviation = trace_model(model)
    _check(deviation, "torchscript")
    with atomic_write(path, "wb") as handle:
        handle.write(torchscript_bytes(traced, json.dumps(info)))
    return deviation


def torchscript_bytes(module: torch.jit.ScriptModule, text: str) -> bytes:
    """`module` saved by `torch.jit.save` with extra files `spkverif.json` (`text`) and its seal.

    The seal hashes what the archive computes (`torchscript_digest`), so the module is
    saved twice: once to compute it, once with it (the computed members must not change).
    """
    unsealed = io.BytesIO()
    torch.jit.save(module, unsealed, _extra_files={METADATA_NAME: text})
    digest = torchscript_digest(unsealed.getvalue())
    sealed = io.BytesIO()
    torch.jit.save(module, sealed, _extra_files={METADATA_NAME: text, SEAL_NAME: seal(text, digest)})
    if torchscript_digest(sealed.getvalue()) != digest:
        raise RuntimeError("torch.jit.save wrote another network the second time: the seal would not match")
    return sealed.getvalue()


THIRD_PARTY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")
"""The exporter's loggers: its optional-package notes and its passes' steps (`Removed 80 unused nodes`,
`Replaced initializer ...`, dozens a model), silenced unless debug logging (`-v`) asks for them."""


@contextlib.contextmanager
def _quiet_onnx_export() -> Iterator[None]:
    """The exporter logs and prints its steps; a stage keeps stdout clean, and its log to spkverif's own
    lines unless `-v` (debug logging) asks for the exporter's too."""
    quiet = not logging.getLogger("spkverif").isEnabledFor(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS] if quiet else []
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)


def onnx_bytes(model: SpeakerEmbeddingModel, info: dict[str, Any]) -> bytes:
    """The serialised ONNX model (opset `ONNX_OPSET`) with `info` as metadata property `spkverif.json`
    and its seal as `spkverif.seal` (over the model's other fields, `spkverif.runtime.onnx.graph_digest`)."""
    import onnx

    from spkverif.runtime.onnx import INPUT_NAME, OUTPUT_NAME, graph_digest

    model = model.eval()
    dynamic = {INPUT_NAME: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}}
    with _quiet_onnx_export(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (probe_batch(model, 2, 2.0, 0),),
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            optimize=True,
            verbose=False,
        )
    proto = program.model_proto
    text = json.dumps(info)
    proto.metadata_props.add(key=METADATA_NAME, value=text)
    digest = graph_digest(proto.SerializeToString())
    proto.metadata_props.add(key=SEAL_NAME, value=seal(text, digest))
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if graph_digest(data) != digest:
        raise RuntimeError("the ONNX model serialised differently the second time: the seal would not match")
    return data


@EXPORTERS.register("onnx")
def export_onnx(model: SpeakerEmbeddingModel, info: dict[str, Any], path: Path) -> float:
    """ONNX (opset 18, dynamic batch and length): onnxruntime, or `spkverif extract --model model.onnx`."""
    import onnxruntime

    from spkverif.runtime.onnx import INPUT_NAME

    data = onnx_bytes(model, info)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    deviation = relative_deviation(model, lambda batch: session.run(None, {INPUT_NAME: batch.numpy()})[0])
    _check(deviation, "onnx")
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return deviation


def _check(deviation: float, fmt: str) -> None:
    if not deviation <= TRACE_TOLERANCE:
        raise RuntimeError(f"the {fmt} export differs from the model by {deviation:g} (relative) on a new shape")


def format_for(path: str | Path, fmt: str | None) -> str:
    """The chosen format, or from the output's suffix: `.onnx` is ONNX, anything else TorchScript."""
    if fmt is not None:
        EXPORTERS.get(fmt)
        return fmt
    return "onnx" if Path(path).suffix.lower() == ".onnx" else "torchscript"


def export_model(model_path: str | Path, out_path: str | Path, fmt: str | None = None) -> dict[str, Any]:
    """Run the export stage: load the model file, export it in `fmt`, check it, write it atomically.

    Returns the metadata, the format, the largest relative deviation and the path.
    Raises `SpkverifError` for an unreadable model file or an unknown format.
    """
    fmt = format_for(out_path, fmt)
    model = load_model(model_path)
    info = model_metadata(model)
    if Path(out_path).is_dir():
        raise SpkverifError("is a directory; give the exported file's path", out_path)
    deviation = EXPORTERS.get(fmt)(model, info, Path(out_path))
    logger.info("exported %s to %s as %s (max deviation %.2g)", info["model"]["name"], out_path, fmt, deviation)
    return {**info, "format": fmt, "max_deviation": deviation, "path": str(out_path)}


def load_exported(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript export and its metadata (what a deployment would do, here for tests and checks)."""
    from spkverif.runtime.pytorch import TorchScriptEmbedder

    if not Path(path).is_file():
        raise SpkverifError("no such exported model", path)
    embedder = TorchScriptEmbedder.from_file(path, "cpu")
    return embedder.module, embedder.metadata
