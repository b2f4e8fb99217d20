"""eSpeak NG driven in-process through ctypes (the library comes from `espeakng-loader`).

The library holds global state, so each process owns one synthesiser; it renders
a few seconds of speech in milliseconds, which is what makes the mini corpus cheap.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from spkverif.base.errors import SpkverifError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_PARAMETER_RATE = 1
_PARAMETER_PITCH = 3
_PARAMETER_RANGE = 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _loader():
    try:
        import espeakng_loader
    except ImportError:
        raise SpkverifError("the mini corpus needs eSpeak NG: pip install espeakng-loader") from None
    return espeakng_loader


def espeak_variants() -> list[str]:
    """Reproducible voice variants shipped with the data (m1, klatt, croak, ...), sorted.

    Read from the data directory, so listing them does not start the synthesiser.
    """
    variants = Path(_loader().get_data_path()) / "voices" / "!v"
    return sorted(path.name for path in variants.iterdir() if path.is_file() and _is_reproducible(path))


def _is_reproducible(variant: Path) -> bool:
    """Variants with `breath` add noise that differs from run to run (seen in
    eSpeak NG 1.52 from espeakng-loader 0.2.4), which would break same-seed,
    same-bytes; they are left out."""
    lines = variant.read_text(encoding="utf-8", errors="replace").splitlines()
    return not any(line.split()[:1] == ["breath"] for line in lines)


class EspeakSynthesizer:
    """Text to 16-bit samples at the library's native rate (22,050 Hz)."""

    _instance: EspeakSynthesizer | None = None

    def __init__(self) -> None:
        espeakng_loader = _loader()
        self.data_path = Path(espeakng_loader.get_data_path())
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), 0)
        if self.sample_rate <= 0:
            raise SpkverifError("eSpeak NG failed to initialise", self.data_path)
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def shared(cls) -> EspeakSynthesizer:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, samples: ctypes.POINTER(ctypes.c_short), count: int, events: ctypes.c_void_p) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
        """Speak `text` with `voice` (e.g. "de+m3"): rate in words/min, pitch and range 0-100."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise SpkverifError(f"eSpeak NG has no voice {voice!r}")
        for parameter, value in ((_PARAMETER_RATE, rate), (_PARAMETER_PITCH, pitch), (_PARAMETER_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(parameter, int(value), 0)
        encoded = text.encode("utf-8")
        self._chunks = []
        self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)
