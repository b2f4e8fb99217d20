"""ONNX models through onnxruntime, with numpy alone: no torch, no spkverif training code.

The file is what `spkverif export --format onnx` writes: one input `waveforms`
(B, T) float32, one output `embeddings` (B, D) float32, both axes dynamic, and
`spkverif.json` in the model's metadata properties.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spkverif.errors import SpkverifError
from spkverif.runtime.base import METADATA_NAME, Embedder, parse_metadata

INPUT_NAME = "waveforms"
OUTPUT_NAME = "embeddings"


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
    def from_file(cls, path: str | Path, device: str = "auto") -> OnnxEmbedder:
        """Open `path`; `device` cuda/auto uses onnxruntime's CUDA provider when it is installed.

        Raises `SpkverifError` for a file onnxruntime cannot read, one without our
        metadata, or one whose input or output is not ours.
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
        metadata = parse_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_NAME), path)
        inputs = [node.name for node in session.get_inputs()]
        outputs = [node.name for node in session.get_outputs()]
        if inputs != [INPUT_NAME] or OUTPUT_NAME not in outputs:
            raise SpkverifError(
                f"expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found {inputs} and {outputs}",
                path,
            )
        return cls(session, metadata)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(waveforms, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
