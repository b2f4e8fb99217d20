"""What the commands share: the Click extensions (`Option`, `ranged`), logging flags, and the
options several commands take, each declared once.

Nothing here imports a stage or a registry when `spkverif` starts: an option's default that a
stage owns, and the names a registry holds, are read when a command runs or shows its help.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import shutil
import sys
import textwrap
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from spkverif.base.progress import set_quiet
from spkverif.base.ranges import AT_LEAST_ONE, NOT_NEGATIVE, Range, lower, upper
from spkverif.base.workers import JOBS

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

# The one conversion of a `Range` into a Click type: `--help` shows it, a flag out of range is a usage error.


def ranged(kind: type, valid: Range | None) -> click.ParamType:
    """An int or float Click type bounded by `valid` (plain int/float without one); NaN and inf are refused."""
    if valid is None:
        return click.INT if kind is int else click.FLOAT
    (low, low_open), (high, high_open) = lower(valid), upper(valid)
    bounds = {"min": low, "max": high, "min_open": low_open, "max_open": high_open}
    if kind is int:
        return click.IntRange(**bounds)
    return _FiniteFloatRange(**bounds)


class _FiniteFloatRange(click.FloatRange):
    """FloatRange that also refuses nan and inf (which compare false with every bound)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def default_of(holder: Any, name: str) -> Any:
    """The default `holder` declares for `name`: a field of an options dataclass, or a parameter of a
    stage function. With `Option(default=lambda: default_of(...))` the stage's declaration is the flag's."""
    if dataclasses.is_dataclass(holder):
        return next(item.default for item in dataclasses.fields(holder) if item.name == name)
    return inspect.signature(holder).parameters[name].default


class Option(click.Option):
    """Click's option, and two things read only when the command runs or shows its help, so that
    starting `spkverif` imports no stage and no registry:

    - a default the stage owns, written once there (a constant, an options-dataclass field or a
      stage function's parameter: `default_of`): `default=FUNCTION` returns it (importing the
      stage); or `shown=FUNCTION` when the flag stays None unless given and the stage applies its
      default where it applies (`--top-n` to asnorm alone): the help shows it all the same;
    - `registries=(KEY, ...)`: the help ends with the names each registry holds (the catalogue,
      `spkverif list KEY`), each with its one-line description, or with `names_only` on one line.
    """

    def __init__(
        self,
        *args: Any,
        shown: Callable[[], Any] | None = None,
        registries: tuple[str, ...] = (),
        names_only: bool = False,
        **kwargs: Any,
    ):
        if callable(kwargs.get("default")):
            kwargs.setdefault("show_default", True)
        super().__init__(*args, **kwargs)
        self.shown = shown
        self.registries = registries
        self.names_only = names_only
        self.lead = self.help or ""

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        return super().get_default(ctx, call=True)  # the stage's value in the help, not Click's "(dynamic)"

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if self.shown is not None:
            extra["default"] = str(self.shown())
        return extra

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        if not self.registries:
            return super().get_help_record(ctx)
        from spkverif.stages.catalogue import choices_help, choices_line, set_key

        # Click's help column starts about 34 columns in and ends at the narrower of the
        # terminal and max_content_width; the choices are wrapped to fit between.
        columns = min(ctx.terminal_width or shutil.get_terminal_size().columns, ctx.max_content_width or 80)
        width = max(40, columns - 36)
        if self.names_only and len(self.registries) == 1:  # wrapped here: Click would break semi-hard at its hyphen
            text = f"{self.lead} {choices_line(self.registries[0])}."
            self.help = "\b\n" + textwrap.fill(text, width, break_on_hyphens=False, break_long_words=False)
        elif self.names_only:  # a line a registry, after the key that `--set` gives its names to
            lines = [f"{set_key(key)}: {choices_line(key)}" for key in self.registries]
            self.help = "\n".join([f"{self.lead}\n\n\b", *lines])
        else:
            self.help = f"{self.lead}\n\n{choices_help(*self.registries, width=width)}"
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = self.lead


# --quiet and --verbose ------------------------------------------------------------------------------


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s spkverif: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr, force=True
    )
    set_quiet(quiet)


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--quiet and --verbose on every subcommand, so `spkverif extract -q ...` reads naturally."""

    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars (for pipelines).")
    @click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
    @wraps(command)
    def wrapper(*args: Any, quiet: bool, verbose: bool, **kwargs: Any) -> Any:
        _setup_logging(quiet, verbose)
        return command(*args, **kwargs)

    return wrapper


# options several commands take, each declared once ---------------------------------------------------


def out_option(help_text: str) -> Decorator:
    """`--out DIR`, required: where a preparer writes its data directories."""
    return click.option("--out", required=True, type=click.Path(file_okay=False), help=help_text)


def jobs_option(help_text: str = "Threads reading audio headers.") -> Decorator:
    """`--jobs N` (at least 1, default `JOBS`): threads or processes of a preparer or decoder."""
    return click.option("--jobs", default=JOBS, type=ranged(int, AT_LEAST_ONE), show_default=True, help=help_text)


def seed_option(help_text: str, default: Callable[[], int]) -> Decorator:
    """`--seed N` (at least 0) of a stage's random choices; `default` reads the stage's."""
    return click.option("--seed", cls=Option, default=default, type=ranged(int, NOT_NEGATIVE), help=help_text)


def _device() -> str:
    from spkverif.runtime import DEVICE

    return DEVICE


device_option = click.option(
    "--device", cls=Option, default=_device, type=click.STRING, help="cpu, cuda, cuda:N or auto."
)


channel_option = click.option(
    "--channel",
    type=ranged(int, NOT_NEGATIVE),
    help="Channel of multi-channel audio to embed (0 first) [default: 0, with a warning naming the file].",
)
resample_option = click.option(
    "--resample", is_flag=True, help="Resample audio not at the model's rate instead of failing."
)


def model_files_option(help_text: str, **extra: Any) -> Decorator:
    """--model, required and repeatable (several files: one ensemble), declared once for extract and verify."""
    return click.option(
        "--model", "model_path", required=True, multiple=True, type=click.Path(), help=help_text, **extra
    )


def cohort_options(used_by: str, top_n_help: str | None = None) -> Decorator:
    """--cohort, --cohort-utt2spk and (with `top_n_help`) --top-n, declared once for score, report and verify.
    --top-n stays None unless given; its help shows AS-norm's default (`spkverif.backends.snorm.TOP_N`)."""
    options = [
        click.option("--cohort", help=f"{used_by}: cohort embeddings, an rspecifier."),
        click.option(
            "--cohort-utt2spk", type=click.Path(), help=f"{used_by}: average the cohort per speaker of this utt2spk."
        ),
    ]
    if top_n_help is not None:
        options.append(
            click.option("--top-n", cls=Option, shown=_top_n, type=ranged(int, AT_LEAST_ONE), help=top_n_help)
        )

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _top_n() -> int:
    from spkverif.backends.snorm import TOP_N

    return TOP_N


def decode_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--format, --decoder and --part, shared by `data decode` and `prepare voxceleb2 --decode-to`;
    the defaults are `DecodeOptions`'."""
    from spkverif.io.decoders import DECODERS

    command = click.option(
        "--part", metavar="J/N", help="Decode only every N-th recording from the J-th (one of N cluster jobs)."
    )(command)
    command = click.option(
        "--decoder",
        cls=Option,
        registries=("decoders",),
        type=click.Choice(DECODERS.names()),
        default=lambda: default_of(_decode_options(), "decoder"),
        help="Decoder of files (pyav measured fastest):",
    )(command)
    return click.option(
        "--format",
        "audio_format",
        cls=Option,
        type=click.Choice(["wav", "flac"]),
        default=lambda: default_of(_decode_options(), "audio_format"),
        help="Decoded files: wav reads fastest, flac takes about half the space.",
    )(command)


def _decode_options() -> type:
    from spkverif.stages.decode import DecodeOptions

    return DecodeOptions
