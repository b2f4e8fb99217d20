"""The loss registry; kept apart from the package init so loss modules can import it."""

from spkverif.registry import Registry

LOSSES: Registry = Registry("loss")
