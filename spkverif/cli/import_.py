"""`spkverif import`: another toolkit's checkpoint as a spkverif model file (`spkverif.stages.importers`).
(The module is `import_`: `import` is Python's keyword.)"""

from __future__ import annotations

from typing import Any

import click

from spkverif.cli.options import common_options


class RegistryArgumentCommand(click.Command):
    """A command whose help lists, under "Arguments", the names a positional argument takes from a registry."""

    def __init__(self, *args: Any, argument_registries: dict[str, tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.argument_registries = argument_registries

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from spkverif.stages.catalogue import choices_help

        super().format_help_text(ctx, formatter)
        with formatter.section("Arguments"):
            rows = [(name, f"{lead}\n\n{choices_help(key)}") for name, (lead, key) in self.argument_registries.items()]
            formatter.write_dl(rows)


@click.command(
    "import",
    cls=RegistryArgumentCommand,
    argument_registries={"SOURCE": ("The toolkit that wrote CHECKPOINT:", "importers")},
)
@click.argument("source", metavar="SOURCE")
@click.argument("checkpoint", type=click.Path())
@click.option(
    "--config",
    "--hparams",
    "config",
    default=None,
    type=click.Path(),
    help="The checkpoint's configuration: WeSpeaker's config.yaml, SpeechBrain's hyperparams.yaml, "
    "3D-Speaker's recipe YAML (conf/*.yaml, or just its embedding_model section); a ReDimNet checkpoint "
    "carries its own.",
)
@click.argument("output", type=click.Path(dir_okay=False))
@common_options
def command(source: str, checkpoint: str, config: str | None, output: str) -> None:
    """Turn another toolkit's checkpoint into a spkverif model file.

    The model keeps the front end it was trained with; extract, export and verify take the file.
    Local files only: nothing is downloaded.

    \b
    Example:
      spkverif import wespeaker resnet34/avg_model.pt --config resnet34/config.yaml model.pt
    """
    from spkverif.stages.importers import import_checkpoint

    import_checkpoint(source, checkpoint, config, output)
