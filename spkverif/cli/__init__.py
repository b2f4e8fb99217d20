"""The `spkverif` command: a short dispatcher over one module per command family.

Each module (prepare, data, validate, shard, train, extract, score, report, verify,
export, import_, list_) parses its options and calls one function of its stage
(`spkverif.stages`); the shared Click extensions and options are `options`. Here the
commands are put in pipeline order, and a user error becomes one line and exit status 1.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from spkverif import __version__
from spkverif.base.errors import SpkverifError, os_error
from spkverif.cli import data, export, extract, import_, list_, prepare, report, score, shard, train, validate, verify

PIPELINE = (prepare, data, validate, shard, train, extract, score, report, verify, export, import_, list_)
"""The command families in the order `spkverif --help` lists them: the pipeline's, then the tools."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again (Python's advice)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class SpkverifGroup(click.Group):
    """Lists its commands in the order added; maps a user error to one line on stderr and exit
    status 1, Ctrl-C to 130."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SpkverifError as error:
            self._fail(ctx, str(error))
        except click.BadParameter as error:
            # a value out of its range (or not a number): one line and status 1, like every user error
            self._fail(ctx, error.format_message().rstrip("."))
        except BrokenPipeError:
            _silence_stdout()
            self._fail(ctx, "the reader of standard output closed it early (broken pipe)")
        except OSError as error:
            # the machine's refusals (missing file, full disk, read-only, no permission): one line too
            self._fail(ctx, str(os_error(error)))
        except KeyboardInterrupt:
            click.echo("spkverif: interrupted", err=True)
            ctx.exit(130)

    @staticmethod
    def _fail(ctx: click.Context, message: str) -> None:
        stage = f" {ctx.invoked_subcommand}" if ctx.invoked_subcommand else ""
        click.echo(f"spkverif{stage}: error: {message}", err=True)
        ctx.exit(1)


@click.group(cls=SpkverifGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="spkverif")
def cli() -> None:
    """Speaker verification with deep speaker embeddings, Kaldi-style.

    Stages: prepare -> train -> extract -> score -> report. Archives are Kaldi
    rspecifiers/wspecifiers (scp:, ark:, ark,scp:, ark:-), data directories are
    Kaldi's, so every stage can stand in a Kaldi pipeline.
    """


for family in PIPELINE:
    cli.add_command(family.command)


def install_signal_handlers() -> None:
    """SIGTERM (a scheduler cancelling a job) unwinds like Ctrl-C, so temporary files are removed."""

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)


def main() -> None:
    """Console-script entry point."""
    install_signal_handlers()
    try:
        cli()
    except BrokenPipeError:
        sys.exit(141)
