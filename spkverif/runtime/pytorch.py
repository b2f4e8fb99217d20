"""PyTorch model files and TorchScript exports as `Embedder`s.

A model file opened for inference has its BatchNorms folded into the convolutions
before them (`spkverif.runtime.folding`). On the CPU its 2-d weights are made
channels-last (oneDNN then runs each 2-d convolution without reordering its input and
output) and it starts eager, its 1-d convolutions on length buckets
(`spkverif.runtime.buckets`). Once its forward passes have taken
`FREEZE_AFTER_SECONDS` of wall time, the network is traced once (`torch.jit.trace`)
and frozen (`torch.jit.freeze`: weights become constants, what is left to fold is
folded), checked against the eager network on a batch of a new size and length
(within `TRACE_TOLERANCE`), and run from then on; a network that cannot be traced, or
whose frozen graph deviates, stays eager. Short jobs (`verify`, a few utterances) never
pay the tracing (0.3-2 s); a long extraction pays it once. `torch.jit.optimize_for_inference`
(oneDNN's blocked layout between convolutions) is not applied: in a one-off comparison
on the channels-last networks (not kept in the repository) it ran ERes2NetV2 and ReDimNet
10-25% slower than freezing alone, and the others within the noise. Figures:
`python bench/profile_extract.py --freeze NETWORKS`, docs/benchmarks.md.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkverif.base.errors import SpkverifError
from spkverif.models import SpeakerEmbeddingModel
from spkverif.models.files import load_model, model_fingerprint, resolve_device
from spkverif.runtime.base import (
    DEVICE,
    METADATA_NAME,
    SEAL_NAME,
    Embedder,
    check_embedding_dim,
    check_seal,
    parse_metadata,
    probe_samples,
)
from spkverif.runtime.buckets import bucket_convolutions, unbucket_convolutions
from spkverif.runtime.folding import prepare_for_inference

logger = logging.getLogger(__name__)

FREEZE_AFTER_SECONDS = 20.0
"""Wall time (s) a model file's network runs eagerly on the CPU before it is traced and frozen (module doc):
at most about a tenth of the job is spent tracing when the job ends right after."""
FREEZE_CHECK_SECONDS = 1.1
"""Length (s) of the batch of 3 a frozen graph is checked on against the eager network."""
CHECK_SECONDS = 3.3
"""Length (s) of the batch of 3 a traced or exported network is checked on against the model."""
TRACE_TOLERANCE = 1e-4
"""Largest deviation, relative to the largest value, of a traced or exported network from the model."""

# Members of a TorchScript archive (below its top folder) that say what the network computes.
_COMPUTED = ("code/", "constants/", "data/", "constants.pkl", "data.pkl")


def torchscript_digest(data: bytes | str | Path) -> str:
    """sha256 (hex) of what a TorchScript archive (`torch.jit.save`'s zip; its bytes or its path)
    computes: its code, constants and tensors, member by member in name order. Left out: the
    extra files (`spkverif.json`, `spkverif.seal`), the debug tables (source positions), the traced
    inputs and the archive's random serialisation id. Raises `zipfile.BadZipFile` for another file."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    digest = hashlib.sha256()
    with zipfile.ZipFile(source) as archive:
        for name in sorted(archive.namelist()):
            inner = name.partition("/")[2]
            if inner.startswith(_COMPUTED) and not inner.endswith(".debug_pkl"):
                digest.update(f"{inner}\n{archive.getinfo(name).file_size}\n".encode())
                digest.update(archive.read(name))
    return digest.hexdigest()


def model_metadata(model: SpeakerEmbeddingModel) -> dict[str, Any]:
    """What an exported file carries about `model` (see `Embedder`)."""
    return {
        "model": model.spec,
        "sample_rate": model.sample_rate,
        "embedding_dim": model.embedding_dim,
        "min_samples": model.min_samples,
        "fingerprint": model_fingerprint(model),
    }


def probe_batch(model: SpeakerEmbeddingModel, batch: int, seconds: float, seed: int) -> torch.Tensor:
    """Seeded noise (batch, samples) of `seconds` at the model's rate (at least its `min_samples`), amplitude 0.1."""
    generator = torch.Generator().manual_seed(seed)
    samples = max(model.min_samples, round(seconds * model.sample_rate))
    return 0.1 * torch.randn(batch, samples, generator=generator)


def check_batch(model: SpeakerEmbeddingModel, seconds: float = CHECK_SECONDS) -> torch.Tensor:
    """The batch (3, samples) of `seconds` a traced, frozen or exported network is checked on: another
    size, length and seed than `trace`'s."""
    return probe_batch(model, 3, seconds, 1)


def relative_deviation(
    model: SpeakerEmbeddingModel,
    run: Callable[[torch.Tensor], np.ndarray],
    seconds: float = CHECK_SECONDS,
    expected: np.ndarray | None = None,
) -> float:
    """Largest difference between `run` and the model on `check_batch(model, seconds)`, relative to
    the largest value; `expected`: the model's output on that batch, if already computed."""
    check = check_batch(model, seconds)
    if expected is None:
        with torch.no_grad():
            expected = model(check).numpy()
    return float(np.abs(run(check) - expected).max() / max(np.abs(expected).max(), 1e-12))


def trace(model: SpeakerEmbeddingModel) -> torch.jit.ScriptModule:
    """`model` traced (`torch.jit.trace`, eval mode) on a batch of 2 x 2 s. The model must not
    carry length buckets (`unbucket_convolutions`)."""
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings(), torch.jit.optimized_execution(False):
        # The tracer warns about shape checks inside BatchNorm and InstanceNorm that hold for every input.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(model, probe_batch(model, 2, 2.0, 0), check_trace=False)


def trace_model(model: SpeakerEmbeddingModel) -> tuple[torch.jit.ScriptModule, float]:
    """`model` prepared for inference in place (eval mode, BatchNorms folded, 2-d weights
    channels-last: `prepare_for_inference`) and traced (`trace`), and the traced network's largest
    relative deviation from `model` as it was, on a batch of another size and length
    (`relative_deviation`). For `export`, which loads its own copy of the model."""
    model.eval()
    with torch.no_grad():
        expected = model(check_batch(model)).numpy()
    traced = trace(prepare_for_inference(model, channels_last=True))
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return traced, relative_deviation(model, lambda batch: traced(batch).numpy(), expected=expected)


def run_frozen(frozen: torch.jit.ScriptModule, batch: torch.Tensor) -> torch.Tensor:
    """A frozen graph's embeddings (B, D) of waveforms `batch` (B, T), as extract runs it: without
    TorchScript's profiling executor, which would re-optimise the graph for every new length."""
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        return frozen(batch)


def freeze_for_cpu(model: SpeakerEmbeddingModel) -> torch.jit.ScriptModule | None:
    """`model` traced and frozen for the CPU (module doc), or None where
    tracing fails or the frozen graph deviates from the model by more than `TRACE_TOLERANCE`.
    Length buckets are taken off `model` for the tracing and put back when it stays eager."""
    unbucket_convolutions(model)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frozen = torch.jit.freeze(trace(model).eval())
            deviation = relative_deviation(model, lambda batch: run_frozen(frozen, batch).numpy(), FREEZE_CHECK_SECONDS)
    except Exception as error:  # whatever the tracer cannot follow: the eager network is as good
        logger.debug("the network stays eager: tracing it failed (%s)", str(error).strip().splitlines()[:1])
        bucket_convolutions(model)
        return None
    if not deviation <= TRACE_TOLERANCE:
        logger.debug("the network stays eager: its frozen graph deviates by %.3g (relative)", deviation)
        bucket_convolutions(model)
        return None
    return frozen


class PytorchEmbedder(Embedder):
    """A `SpeakerEmbeddingModel` in eval mode on `device`; on the CPU, frozen once it has run
    `FREEZE_AFTER_SECONDS` (module doc). Built on a model directly (a training's held-out
    evaluation), the model is left as it is; `from_file` prepares a model file's (module doc)."""

    def __init__(self, model: SpeakerEmbeddingModel, device: torch.device, metadata: dict[str, Any] | None = None):
        super().__init__(metadata or model_metadata(model), "pytorch")
        self.model = model.eval().to(device)
        self.device = device
        self.frozen: torch.jit.ScriptModule | None = None
        # Seconds of eager forward so far; None once freezing was tried, and off the CPU.
        self.eager_seconds: float | None = 0.0 if device.type == "cpu" else None

    @classmethod
    def from_file(cls, path: str | Path, device: str = DEVICE) -> PytorchEmbedder:
        """Load a model file or training checkpoint (`SpkverifError` if it is neither), its
        BatchNorms folded (`spkverif.runtime.folding`). On the CPU its 2-d weights are made
        channels-last and its 1-d convolutions run on length buckets (`spkverif.runtime.buckets`:
        the same embeddings, without building oneDNN kernels for every utterance's length). Its
        fingerprint is the file's (taken before folding changes the weights' bits), the one an export
        and a calibration of it carry."""
        target = resolve_device(device)
        model = load_model(path).eval()
        metadata = model_metadata(model)
        model = prepare_for_inference(model, channels_last=target.type == "cpu")
        if target.type == "cpu":
            bucket_convolutions(model)
        return cls(model, target, metadata)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32)).to(self.device)
        if self.frozen is not None:
            return run_frozen(self.frozen, batch).numpy()
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model(batch).float().cpu().numpy()
        if self.eager_seconds is not None:
            self.eager_seconds += time.perf_counter() - started
            if self.eager_seconds >= FREEZE_AFTER_SECONDS:
                self.eager_seconds = None
                started = time.perf_counter()
                self.frozen = freeze_for_cpu(self.model)
                took = time.perf_counter() - started
                if self.frozen is not None:
                    logger.debug("the network runs frozen from here on (tracing and checking took %.1f s)", took)
        return output


class TorchScriptEmbedder(Embedder):
    """A file from `spkverif export --format torchscript`."""

    def __init__(self, module: torch.jit.ScriptModule, metadata: dict[str, Any], device: torch.device):
        super().__init__(metadata, "torchscript")
        self.module = module
        self.device = device

    @classmethod
    def from_file(cls, path: str | Path, device: str = DEVICE) -> TorchScriptEmbedder:
        """Load `path`, run it once on `PROBE_SECONDS` of silence (`spkverif.runtime.base`).

        Raises `SpkverifError` for a file torch.jit cannot read, one without our metadata,
        and one whose metadata contradicts its network: another embedding size than the
        network outputs, or a seal that does not match.
        """
        target = resolve_device(device)
        extra: dict[str, Any] = {METADATA_NAME: "", SEAL_NAME: ""}
        try:
            module = torch.jit.load(str(path), map_location=target, _extra_files=extra)
        except RuntimeError as error:
            raise SpkverifError(f"not a TorchScript file: {str(error).strip().splitlines()[0]}", path) from None
        text, stored = (extra[name].decode() if isinstance(extra[name], bytes) else extra[name] for name in extra)
        embedder = cls(module, parse_metadata(text, path), target)
        embedder._check_probe(Path(path))
        check_seal(path, text, stored, lambda: torchscript_digest(Path(path)))
        return embedder

    def _check_probe(self, path: Path) -> None:
        """The network's output size on silence against the metadata's."""
        samples = probe_samples(self.metadata)
        try:
            output = self(np.zeros((1, samples), dtype=np.float32))
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SpkverifError(f"the network does not run on {samples} samples of silence: {first}", path) from None
        if output.ndim != 2 or output.shape[0] != 1:
            raise SpkverifError(f"the network outputs shape {list(output.shape)}, not (batch, embedding)", path)
        seconds = samples / self.sample_rate
        check_embedding_dim(path, self.metadata, int(output.shape[1]), f"on {seconds:g} s of silence")

    @torch.inference_mode()
    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32)).to(self.device)
        with torch.jit.optimized_execution(False):
            return self.module(batch).float().cpu().numpy()
