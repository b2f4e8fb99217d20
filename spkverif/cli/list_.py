"""`spkverif list`: the registered choices with their options (`spkverif.stages.catalogue`).
(The module is `list_`, so that it does not hide Python's `list`.)"""

from __future__ import annotations

import shutil

import click

from spkverif.cli.options import common_options
from spkverif.stages.catalogue import CATALOGUE, render_listing


@click.command(
    "list",
    help=f"Print the registered choices with their options, defaults and valid values. "
    f"KIND: {', '.join(CATALOGUE)} [default: all].\n\n\b\nExample:\n  spkverif list losses backends",
)
@click.argument("kinds", nargs=-1, metavar="[KIND]...")
@common_options
def command(kinds: tuple[str, ...]) -> None:
    click.echo(render_listing(kinds, width=shutil.get_terminal_size((100, 24)).columns), nl=False)
