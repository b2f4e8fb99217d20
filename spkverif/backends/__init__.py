"""Scoring back ends, registered by name (`score --method NAME`)."""

from spkverif.backends import cosine  # noqa: F401  (registers its back ends)
from spkverif.backends.registry import BACKENDS

__all__ = ["BACKENDS"]
