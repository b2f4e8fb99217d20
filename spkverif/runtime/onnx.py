"""ONNX models through onnxruntime, with numpy alone: no torch, no spkverif training code.

The file is what `spkverif export --format onnx` writes: one input `waveforms`
(B, T) float32, one output `embeddings` (B, D) float32, both axes dynamic, and
`spkverif.json` in the model's metadata properties (and `spkverif.seal`, see
`spkverif.runtime.base`). The seal's network digest (`graph_digest`) is read from the
file's bytes, not from a parsed model: the ONNX model is a protobuf message, whose
top-level fields are walked here without the `onnx` package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spkverif.base.errors import SpkverifError
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

INPUT_NAME = "waveforms"
OUTPUT_NAME = "embeddings"
# ModelProto's field numbers (onnx.proto): metadata_props is left out of the network's digest.
_METADATA_PROPS = 14


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("a truncated varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if byte < 0x80:
            return value, position


def top_level_fields(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, the field's bytes as stored, key included) of a serialised protobuf message, in order.

    Raises ValueError for bytes that are not a protobuf message.
    """
    position = 0
    while position < len(data):
        start = position
        key, position = _varint(data, position)
        wire = key & 7
        if wire == 0:
            _, position = _varint(data, position)
        elif wire == 1:
            position += 8
        elif wire == 2:
            length, position = _varint(data, position)
            position += length
        elif wire == 5:
            position += 4
        else:
            raise ValueError(f"wire type {wire}")
        if position > len(data):
            raise ValueError("a field runs past the end")
        yield key >> 3, data[start:position]


def graph_digest(data: bytes) -> str:
    """sha256 (hex) of a serialised ONNX model's fields other than its metadata properties: the
    graph (nodes, weights), opsets, functions and versions, i.e. everything that is computed."""
    digest = hashlib.sha256()
    for number, field in top_level_fields(data):
        if number != _METADATA_PROPS:
            digest.update(field)
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    try:
        return graph_digest(path.read_bytes())
    except ValueError as error:  # onnxruntime read it, so this is a bug rather than a user's file
        raise RuntimeError(f"{path}: cannot walk the ONNX protobuf: {error}") from error


def _reason(error: Exception) -> str:
    """onnxruntime's message without its C++ source location and signature (they follow the last ') ')."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text.rsplit(") ", 1)[-1] if ") " in text else text


class OnnxEmbedder(Embedder):
    """An onnxruntime session over an exported model; see `Embedder` for shapes and metadata."""

    def __init__(self, session: Any, metadata: dict[str, Any]):
        super().__init__(metadata, "onnx")
        self.session = session

    @classmethod
    def from_file(cls, path: str | Path, device: str = DEVICE) -> OnnxEmbedder:
        """Open `path`; `device` cuda/auto uses onnxruntime's CUDA provider when it is installed.

        Raises `SpkverifError` for a file onnxruntime cannot read, one without our
        metadata, one whose input or output is not ours, and one whose metadata
        contradicts its network: another embedding size than its output's (declared in
        the graph, or else seen on `PROBE_SECONDS` of silence), or a seal that does not
        match (`spkverif.runtime.base`).
        """
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for a bad file
            raise SpkverifError(f"not an ONNX model onnxruntime can run: {_reason(error)}", path) from None
        properties = session.get_modelmeta().custom_metadata_map
        text = properties.get(METADATA_NAME)
        metadata = parse_metadata(text, path)
        inputs = [node.name for node in session.get_inputs()]
        outputs = {node.name: node for node in session.get_outputs()}
        if inputs != [INPUT_NAME] or OUTPUT_NAME not in outputs:
            raise SpkverifError(
                f"expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found {inputs} and {list(outputs)}",
                path,
            )
        embedder = cls(session, metadata)
        shape = outputs[OUTPUT_NAME].shape
        if len(shape) == 2 and isinstance(shape[-1], int):
            check_embedding_dim(path, metadata, shape[-1], f"its declared output shape {shape}")
        else:
            embedder._check_probe(Path(path))
        check_seal(path, text, properties.get(SEAL_NAME, ""), lambda: _file_digest(Path(path)))
        return embedder

    def _check_probe(self, path: Path) -> None:
        """The output size on silence against the metadata's, for a graph that does not declare it."""
        samples = probe_samples(self.metadata)
        try:
            output = self(np.zeros((1, samples), dtype=np.float32))
        except Exception as error:  # onnxruntime raises its own exception types
            reason = _reason(error)
            raise SpkverifError(f"the network does not run on {samples} samples of silence: {reason}", path) from None
        if output.ndim != 2 or output.shape[0] != 1:
            raise SpkverifError(f"the network outputs shape {list(output.shape)}, not (batch, embedding)", path)
        seconds = samples / self.sample_rate
        check_embedding_dim(path, self.metadata, int(output.shape[1]), f"on {seconds:g} s of silence")

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(waveforms, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
