"""The scoring back-end registry; kept apart so back-end modules can import it."""

from spkverif.registry import Registry

BACKENDS: Registry = Registry("scoring method")
