"""The model registry; kept apart from the package init so model modules can import it."""

from spkverif.registry import Registry

MODELS: Registry = Registry("model")
