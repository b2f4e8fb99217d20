"""Scoring back ends, registered by name (`score --method NAME`)."""

from spkverif.backends import cosine, plda, snorm  # noqa: F401  (registers their back ends)
from spkverif.backends.base import BACKENDS

__all__ = ["BACKENDS"]
