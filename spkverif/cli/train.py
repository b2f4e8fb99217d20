"""`spkverif train`: the flags are made from the configuration's declarations (`spkverif.config`),
so a setting's type, valid values and help are written once; the stage is `spkverif.stages.train`."""

from __future__ import annotations

from typing import Any

import click

from spkverif.cli.options import Option, common_options, ranged
from spkverif.config import Flag, load_train_config, parse_override, train_flags


class ConfigOption(Option):
    """A `train` flag made from a configuration `Flag`: its type, valid values and help come from the
    setting's declaration, a registry's names end its help on one line, and the help ends with the
    setting it sets (`[training.epochs; x>=1]`). Every such flag defaults to None, so a flag not given
    leaves the config file's value."""

    def __init__(self, param_decls: Any, *, flag: Flag, **attrs: Any):
        attrs["default"] = None
        if flag.kind is bool:
            attrs["is_flag"] = True
        elif flag.path:
            attrs["type"] = click.Path()
        elif flag.choices:
            attrs["type"] = click.Choice(flag.choices)
        elif flag.kind in (int, float):
            attrs["type"] = ranged(flag.kind, flag.valid)
        super().__init__(param_decls, registries=flag.registries, names_only=True, help=flag.help, **attrs)
        self.key = flag.key

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        extra["range"] = f"{self.key}; {extra['range']}" if "range" in extra else self.key
        return extra


def config_flags(function: Any) -> Any:
    """Add the `train` flags generated from the configuration's declarations."""
    for flag in reversed(train_flags()):
        function = click.option(flag.name, flag.key.replace(".", "_"), cls=ConfigOption, flag=flag)(function)
    return function


class ConfigCommand(click.Command):
    """A command whose --help lists its configuration flags apart from its own options."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[bool, list[tuple[str, str]]] = {False: [], True: []}
        for parameter in self.get_params(ctx):
            record = parameter.get_help_record(ctx)
            if record is not None:
                groups[isinstance(parameter, ConfigOption)].append(record)
        with formatter.section("Options"):
            formatter.write_dl(groups[False])
        with formatter.section("Configuration flags (each sets the [setting] named; --set KEY=VALUE any other)"):
            formatter.write_dl(groups[True])


@click.command("train", cls=ConfigCommand)
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Training data directory.")
@click.option("--exp", "exp_dir", required=True, type=click.Path(), help="Experiment directory to write.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(),
    help="YAML config (it may name a base file by `defaults: BASE.yaml`); flags override it.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    cls=Option,
    registries=("optimizers", "schedulers", "distances", "channels", "frontends"),
    names_only=True,
    help="Set any config value, e.g. --set loss.margin=0.2; a component's options are listed by "
    "spkverif list. Names reached only this way:",
)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --exp.")
@click.option("--dry-run", is_flag=True, help="Build the model and loss, print their sizes, train nothing.")
@config_flags
@common_options
def command(
    data_dir: str,
    exp_dir: str,
    config_path: str | None,
    settings: tuple[str, ...],
    resume: bool,
    dry_run: bool,
    **flags: Any,
) -> None:
    """Train an embedding network with a chosen loss.

    Runs the same on a CPU, a GPU, or under torchrun across GPUs and nodes:
    `torchrun --nproc_per_node 4 $(which spkverif) train ...`.

    \b
    Example:
      spkverif train --config conf/xvector_aam.yaml --data data/train --exp exp/xvector_aam --resume
    """
    from spkverif.stages.train import train

    keys = {parameter.name: parameter.key for parameter in click.get_current_context().command.params
            if isinstance(parameter, ConfigOption)}  # fmt: skip
    overrides = [(keys[name].split("."), value) for name, value in flags.items() if value is not None]
    overrides += [parse_override(text) for text in settings]
    description = train(load_train_config(config_path, overrides), data_dir, exp_dir, resume=resume, dry_run=dry_run)
    if dry_run:
        for key, value in description.items():
            click.echo(f"{key}\t{value}")
