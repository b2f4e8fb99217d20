"""Where the shared real-speech data is: `../shared/data/librispeech` beside the repository,
or $SPKVERIF_LIBRISPEECH. Tests that need it skip, saying where they looked, when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

LIBRISPEECH = Path(
    os.environ.get("SPKVERIF_LIBRISPEECH", Path(__file__).resolve().parents[1].parent / "shared/data/librispeech")
)
needs_librispeech = pytest.mark.skipif(
    not (LIBRISPEECH / "LibriSpeech").is_dir(), reason=f"the shared LibriSpeech subset is not at {LIBRISPEECH}"
)
