"""The `import` stage: another toolkit's checkpoint -> an ordinary spkverif model file.

Each toolkit is one module registering a function in `IMPORTERS`; it reads the
peer's local files (nothing is downloaded), builds the same network from our
registered models with the front end it was trained with, renames and reshapes
the weights, and loads them strictly, so any key that does not fit is an error
naming it. The result is written like a trained model (`models/final.pt`), so
`extract`, `export`, `verify` and the recipes take it.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Registry

logger = logging.getLogger(__name__)

Importer = Callable[..., dict[str, Any]]
IMPORTERS: Registry[Importer] = Registry("checkpoint source")


def carries_config(importer: Importer) -> Importer:
    """Decorator: the importer's checkpoints hold their own configuration, so `config` may be None."""
    importer.carries_config = True  # type: ignore[attr-defined]
    return importer


def import_checkpoint(
    source: str, checkpoint: str | Path, config: str | Path | None, out: str | Path
) -> dict[str, Any]:
    """Run the import stage for `source` (`speechbrain`, `wespeaker`, `redimnet`, `redimnet2`, `3dspeaker`);
    returns name, options, fingerprint, path. `config` None is for sources whose checkpoints carry it
    (`carries_config`); for the others it is one line (SpkverifError)."""
    importer = IMPORTERS.get(source)
    if config is None and not getattr(importer, "carries_config", False):
        raise SpkverifError(f"a {source} checkpoint needs --config: the configuration file it was trained with")
    result = importer(Path(checkpoint), None if config is None else Path(config), Path(out))
    logger.info("imported %s as %s (fingerprint %s)", checkpoint, result["model"]["name"], result["fingerprint"])
    logger.info("next: spkverif verify --model %s ENROLL.wav TEST.wav  (docs/pretrained.md)", shlex.quote(str(out)))
    return result


from spkverif.stages.importers import redimnet, redimnet2, speechbrain, threed_speaker, wespeaker  # noqa: E402, F401  (register their importers)
