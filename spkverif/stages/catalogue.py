"""The catalogue of registries (`spkverif list`): every registry, and the option that chooses from it.

`--help` of an option that takes a registry's names lists them (`choices_help`, or
`choices_line` where a command has many such options), and `spkverif list KIND` prints
each name with its options, types, defaults and valid values (`render_listing`). A new
registry goes into `CATALOGUE`; the test suite fails for one left out.

Each registry is imported only when it is asked for (its help shown, `spkverif list` run),
never when `spkverif` starts: most pull in torch (models, losses, front ends, the training
schedules, exporters, importers), the others numpy or scipy, and a light command such as
`spkverif validate` needs none of them. So each entry names a function that imports it.
Nothing here imports Click: help texts are plain strings.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import BuilderOption, Registry, builder_options


@dataclass(frozen=True)
class Entry:
    """A registry, imported by `load` when asked for, and what chooses from it: `option` is
    "COMMAND --OPTION", or "COMMAND --set KEY" for a name reached through `--set`. `columns`
    loads the extra columns `spkverif list` shows for it: (heading, name -> text) pairs."""

    load: Callable[[], Registry]
    option: str
    columns: Callable[[], tuple[tuple[str, Callable[[str], str]], ...]] | None = None

    def registry(self) -> Registry:
        return self.load()


def _models() -> Registry:
    from spkverif.models import MODELS
    return MODELS


def _model_columns() -> tuple[tuple[str, Callable[[str], str]], ...]:
    """Parameters and multiply-adds for 2 s of audio of each network at its default options."""
    from spkverif.models.cost import SECONDS, model_cost, si

    def cost(name: str, field: str) -> str:
        try:
            return si(getattr(model_cost(name), field))
        except Exception:  # a builder that cannot build at its defaults shows no figure, not a traceback
            return "-"

    return (
        ("parameters", lambda name: cost(name, "parameters")),
        (f"mult-adds / {SECONDS:g} s", lambda name: cost(name, "multiply_adds")),
    )


def _losses() -> Registry:
    from spkverif.losses import LOSSES
    return LOSSES


def _minings() -> Registry:
    from spkverif.losses.triplet import MINERS
    return MINERS


def _distances() -> Registry:
    from spkverif.losses.pairs import DISTANCES
    return DISTANCES


def _optimizers() -> Registry:
    from spkverif.training.optim import OPTIMIZERS
    return OPTIMIZERS


def _schedulers() -> Registry:
    from spkverif.training.optim import SCHEDULERS
    return SCHEDULERS


def _margin_schedulers() -> Registry:
    from spkverif.training.margin_schedules import MARGIN_SCHEDULERS
    return MARGIN_SCHEDULERS


def _backends() -> Registry:
    from spkverif.backends import BACKENDS
    return BACKENDS


def _channels() -> Registry:
    from spkverif.training.channel import CHANNELS
    return CHANNELS


def _frontends() -> Registry:
    from spkverif.frontends import FRONTENDS
    return FRONTENDS


def _formats() -> Registry:
    from spkverif.stages.export import EXPORTERS
    return EXPORTERS


def _model_files() -> Registry:
    from spkverif.runtime import RUNTIMES
    return RUNTIMES


def _importers() -> Registry:
    from spkverif.stages.importers import IMPORTERS
    return IMPORTERS


def _calibrations() -> Registry:
    from spkverif.backends.calibration import CALIBRATIONS
    return CALIBRATIONS


def _decoders() -> Registry:
    from spkverif.io.decoders import DECODERS
    return DECODERS


CATALOGUE: dict[str, Entry] = {
    "models": Entry(_models, "train --model", _model_columns),
    "losses": Entry(_losses, "train --loss"),
    "minings": Entry(_minings, "train --mining"),
    "distances": Entry(_distances, "train --set loss.distance"),
    "optimizers": Entry(_optimizers, "train --set optimizer.name"),
    "schedulers": Entry(_schedulers, "train --set scheduler.name"),
    "margin-schedulers": Entry(_margin_schedulers, "train --margin-scheduler"),
    "backends": Entry(_backends, "score --method"),
    "channels": Entry(_channels, "train --set augment.channels"),
    "frontends": Entry(_frontends, "train --set frontend.name"),
    "formats": Entry(_formats, "export --format"),
    "model-files": Entry(_model_files, "extract --model"),
    "importers": Entry(_importers, "import SOURCE"),
    "calibrations": Entry(_calibrations, "report --calibration-method"),
    "decoders": Entry(_decoders, "data decode --decoder"),
}


def catalogue_entry(key: str) -> Entry:
    """The catalogue's entry for `key`; SpkverifError listing the keys if there is none."""
    try:
        return CATALOGUE[key]
    except KeyError:
        raise SpkverifError(f"unknown registry {key!r}; choose one of: {', '.join(CATALOGUE)}") from None


def choices_help(*keys: str, width: int = 66) -> str:
    """Plain text for an option's help: each registered name with its one-line description.

    One key gives "name  description" lines, wrapped to `width` columns under the
    description; several (the `--set` option) give each registry's lines under a
    heading naming the key they set. Each block starts with Click's no-rewrap marker
    (a line holding only "\\b") so the CLI keeps the lines as they are.
    """
    blocks = []
    for key in keys:
        entry = catalogue_entry(key)
        registry = entry.registry()
        column = 4 + max(map(len, registry.names()), default=0)
        lines = [
            textwrap.fill(
                registry.describe(name) or "-",
                width,
                initial_indent=f"  {name}".ljust(column),
                subsequent_indent=" " * column,
            )
            for name in registry.names()
        ]
        heading = f"{set_key(key)} (spkverif list {key}):" if set_key(key) else ""
        blocks.append("\b\n" + "\n".join(([heading] if heading else []) + lines))
    return "\n\n".join(blocks)


def choices_line(key: str) -> str:
    """The names a registry holds, on one line (their descriptions are `spkverif list`'s)."""
    return ", ".join(catalogue_entry(key).registry().names())


def set_key(key: str) -> str:
    """The configuration key a registry's names are given to by `--set` ("optimizer.name"), or ''."""
    option = catalogue_entry(key).option
    return option.split(" --set ")[-1] if " --set " in option else ""


def render_listing(keys: Iterable[str] = (), width: int = 100) -> str:
    """`spkverif list`: a table per registry (all if `keys` is empty) of each name, its
    description and its options with type, default and valid values, as plain text."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    chosen = list(keys) or list(CATALOGUE)
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, highlight=False, soft_wrap=False)
    for key in chosen:
        entry = catalogue_entry(key)
        registry = entry.registry()
        table = Table(title=f"{key} ({entry.option})", title_justify="left", show_lines=True, expand=False)
        columns = entry.columns() if entry.columns is not None else ()
        table.add_column("name", no_wrap=True)
        for heading, _ in columns:
            table.add_column(heading, justify="right")
        table.add_column("description", ratio=1)
        table.add_column("options: type = default  [valid values]", ratio=1)
        for name in registry.names():
            options = builder_options(registry.get(name))
            described = "\n".join(map(_option_text, options)) or "(none)"
            extra = [Text(column(name)) for _, column in columns]
            table.add_row(Text(name), *extra, Text(registry.describe(name)), Text(described))
        console.print(table)
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())


def _option_text(option: BuilderOption) -> str:
    typed = f": {option.type}" if option.type else ""
    valid = f"  [{option.valid}]" if option.valid is not None else ""
    return f"{option.name}{typed} = {option.default!r}{valid}"
