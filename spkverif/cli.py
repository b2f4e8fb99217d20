"""The `spkverif` command: parse options, call the stage, turn user errors into one line.

Nothing here does the work; each subcommand calls one function of its stage module.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from spkverif import __version__
from spkverif.base.errors import SpkverifError, os_error
from spkverif.base.progress import set_quiet
from spkverif.base.ranges import (
    AT_LEAST_ONE,
    COSINE,
    NOT_NEGATIVE,
    OPEN_PROBABILITY,
    POSITIVE,
    Range,
    at_least,
    lower,
    upper,
)
from spkverif.stages.catalogue import CATALOGUE, choices_help, render_listing

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
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


logger = logging.getLogger("spkverif")


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


class ModuleDefault(click.Option):
    """An option whose default is its stage module's own, named "module:Name.attribute" (a dataclass
    field's default or a constant): the value is written once, in the module, and read only when the
    command runs or shows its help, so starting `spkverif` does not import every stage."""

    def __init__(self, *args: Any, default_from: str, **kwargs: Any):
        super().__init__(*args, show_default=True, **kwargs)
        self.default_from = default_from

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        import importlib

        module, _, names = self.default_from.partition(":")
        value: Any = importlib.import_module(module)
        for name in names.split("."):
            value = getattr(value, name)
        return value


# Options several subcommands share, each declared once.


def out_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--out DIR`, required: where a preparer writes its data directories."""
    return click.option("--out", required=True, type=click.Path(file_okay=False), help=help_text)


def jobs_option(help_text: str = "Threads reading audio headers.") -> Callable[..., Any]:
    """`--jobs N` (at least 1, default 4): threads or processes of a preparer or decoder."""
    return click.option("--jobs", default=4, type=ranged(int, AT_LEAST_ONE), show_default=True, help=help_text)


def seed_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--seed N` (at least 0, default 0) of a stage's random choices."""
    return click.option("--seed", default=0, type=ranged(int, NOT_NEGATIVE), show_default=True, help=help_text)


device_option = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
channel_option = click.option(
    "--channel",
    type=ranged(int, NOT_NEGATIVE),
    help="Channel of multi-channel audio to embed (0 first) [default: 0, with a warning naming the file].",
)
resample_option = click.option(
    "--resample", is_flag=True, help="Resample audio not at the model's rate instead of failing."
)


def model_files_option(help_text: str, **extra: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--model, required and repeatable (several files: one ensemble), declared once for extract and verify."""
    return click.option(
        "--model", "model_path", required=True, multiple=True, type=click.Path(), help=help_text, **extra
    )


def cohort_options(used_by: str, top_n_help: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--cohort, --cohort-utt2spk and (with `top_n_help`) --top-n, declared once for score, report and verify."""
    options = [
        click.option("--cohort", help=f"{used_by}: cohort embeddings, an rspecifier."),
        click.option(
            "--cohort-utt2spk", type=click.Path(), help=f"{used_by}: average the cohort per speaker of this utt2spk."
        ),
    ]
    if top_n_help is not None:
        options.append(click.option("--top-n", type=ranged(int, AT_LEAST_ONE), help=top_n_help))

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again (Python's advice)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class RegistryOption(click.Option):
    """An option whose help ends with the names its registries accept, each with its one-line description.

    The registries (keys of spkverif.base.registry.CATALOGUE) are imported only when help is
    shown, so a plain `spkverif ...` does not import every model for its help text.
    """

    def __init__(self, *args: Any, registries: tuple[str, ...], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lead = self.help or ""
        self.registries = registries

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        # Click's help column starts about 34 columns in and ends at the narrower of the
        # terminal and max_content_width; the choices are wrapped to fit between.
        if not self.registries:
            return super().get_help_record(ctx)
        columns = min(ctx.terminal_width or shutil.get_terminal_size().columns, ctx.max_content_width or 80)
        self.help = f"{self.lead}\n\n{choices_help(*self.registries, width=max(40, columns - 36))}"
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = self.lead


class SpkverifGroup(click.Group):
    """Maps a user error to one line on stderr and exit status 1, Ctrl-C to 130."""

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


# prepare ---------------------------------------------------------------------


@cli.group()
def prepare() -> None:
    """Make Kaldi data directories (wav.scp, utt2spk, spk2utt, utt2dur[, trials])."""


def trial_sample_options(minimum: int, help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--trials N` (as `num_trials`, at least `minimum`) and `--seed`, for the preparers that write trials."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = seed_option("Seed of the --trials sample.")(command)
        return click.option("--trials", "num_trials", type=click.IntRange(min=minimum), default=None, help=help_text)(
            command
        )

    return decorate


def mini_option(name: str, kind: type, valid: Range, help_text: str) -> Callable[..., Any]:
    """An option of `prepare mini` whose default is the same field of `MiniOptions` (--num-speakers: num_speakers)."""
    field = name.lstrip("-").replace("-", "_")
    default_from = f"spkverif.stages.prepare.mini:MiniOptions.{field}"
    return click.option(name, cls=ModuleDefault, default_from=default_from, type=ranged(kind, valid), help=help_text)


@prepare.command("mini")
@out_option("Output directory: OUT/{train,test,audio}.")
@mini_option("--num-speakers", int, at_least(2), "Speakers in all, training and test.")
@mini_option("--num-test-speakers", int, at_least(2), "Held-out speakers for the test set.")
@mini_option("--utts-per-speaker", int, at_least(2), "Utterances per speaker.")
@mini_option("--min-seconds", float, POSITIVE, "Shortest utterance.")
@mini_option("--max-seconds", float, POSITIVE, "Longest utterance.")
@mini_option("--num-trials", int, at_least(2), "Test trials, half target and half nontarget.")
@mini_option("--seed", int, NOT_NEGATIVE, "The same seed gives the same bytes.")
@click.option(
    "--jobs",
    default=None,
    type=ranged(int, AT_LEAST_ONE),
    help="Parallel synthesis processes [default: cores, at most 4].",
)
@common_options
def prepare_mini_command(out: str, jobs: int | None, **options: Any) -> None:
    """Synthesise a multi-speaker corpus with eSpeak NG: no download needed."""
    from spkverif.stages.prepare.mini import MiniOptions, default_jobs, prepare_mini

    prepare_mini(out, MiniOptions(jobs=jobs or default_jobs(), **options))


@prepare.command("dir")
@click.argument("root", type=click.Path())
@out_option("Output data directory.")
@jobs_option()
@trial_sample_options(
    0, "Also write OUT/trials: 0 for every pair, N for N pairs, half target, cross-folder targets first."
)
@common_options
def prepare_dir_command(root: str, out: str, jobs: int, num_trials: int | None, seed: int) -> None:
    """Turn ROOT/<speaker>/**/*.{wav,flac} into a data directory (ids: speaker-path-below-it)."""
    from spkverif.stages.prepare.directory import prepare_dir

    prepare_dir(root, out, jobs, num_trials=num_trials, seed=seed)


@prepare.command("voxceleb1")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/{vox1_dev,vox1_test,vox1}.")
@click.option(
    "--trials-dir",
    type=click.Path(file_okay=False),
    help="Where veri_test2.txt, list_test_all2.txt, list_test_hard2.txt are [default: ROOT].",
)
@click.option("--trials-o", type=click.Path(dir_okay=False), help="VoxCeleb1-O list (veri_test2.txt) by path.")
@click.option("--trials-e", type=click.Path(dir_okay=False), help="VoxCeleb1-E list (list_test_all2.txt) by path.")
@click.option("--trials-h", type=click.Path(dir_okay=False), help="VoxCeleb1-H list (list_test_hard2.txt) by path.")
@click.option(
    "--meta",
    type=click.Path(dir_okay=False),
    help="vox1_meta.csv: dev/test split and genders (spk2gender) [default: ROOT/vox1_meta.csv if there].",
)
@jobs_option()
@common_options
def prepare_voxceleb1_command(
    root: str,
    out: str,
    trials_dir: str | None,
    trials_o: str | None,
    trials_e: str | None,
    trials_h: str | None,
    meta: str | None,
    jobs: int,
) -> None:
    """VoxCeleb1 (ROOT/wav/idXXXXX/<video>/NNNNN.wav) and its O/E/H trial lists as Kaldi data."""
    from spkverif.stages.prepare.voxceleb import prepare_voxceleb1

    lists = {"O": trials_o, "E": trials_e, "H": trials_h}
    prepare_voxceleb1(root, out, trials_dir=trials_dir, trial_lists=lists, meta=meta, jobs=jobs)


def decode_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--format, --decoder and --part, shared by `data decode` and `prepare voxceleb2 --decode-to`."""
    from spkverif.io.decoders import DECODERS

    command = click.option(
        "--part", metavar="J/N", help="Decode only every N-th recording from the J-th (one of N cluster jobs)."
    )(command)
    command = click.option(
        "--decoder",
        cls=RegistryOption,
        registries=("decoders",),
        type=click.Choice(DECODERS.names()),
        default="pyav",
        show_default=True,
        help="Decoder of files (pyav measured fastest):",
    )(command)
    return click.option(
        "--format",
        "audio_format",
        type=click.Choice(["wav", "flac"]),
        default="wav",
        show_default=True,
        help="Decoded files: wav reads fastest, flac takes about half the space.",
    )(command)


@prepare.command("voxceleb2")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/vox2_SUBSET.")
@click.option(
    "--subset", type=click.Choice(["dev", "test"]), default="dev", show_default=True, help="Which part to prepare."
)
@click.option(
    "--audio-ext",
    type=click.Choice(["m4a", "wav", "flac"]),
    default="m4a",
    show_default=True,
    help="m4a: wav.scp decodes through an ffmpeg pipe; wav/flac: files already converted.",
)
@click.option("--ffmpeg", default="ffmpeg", show_default=True, help="The ffmpeg command wav.scp pipes through.")
@click.option(
    "--decode-to",
    type=click.Path(file_okay=False),
    help="Decode every file once into DIR (16 kHz mono) and name the decoded files in wav.scp, not pipes.",
)
@decode_options
@jobs_option("Threads reading audio headers; decoding processes.")
@common_options
def prepare_voxceleb2_command(
    root: str, out: str, subset: str, audio_ext: str, ffmpeg: str, decode_to: str | None, jobs: int, **decoding: Any
) -> None:
    """VoxCeleb2 (ROOT/dev/aac/idXXXXX/<video>/NNNNN.m4a) as a Kaldi data directory."""
    from spkverif.stages.decode import DecodeOptions, parse_part
    from spkverif.stages.prepare.voxceleb import prepare_voxceleb2

    part = parse_part(decoding.pop("part"))
    decode = DecodeOptions(jobs=jobs, part=part, **decoding) if decode_to is not None else None
    if part is not None and decode is None:
        raise click.UsageError("--part needs --decode-to")
    prepare_voxceleb2(
        root, out, subset=subset, audio_ext=audio_ext, ffmpeg=ffmpeg, jobs=jobs, decode_to=decode_to, decode=decode
    )


@prepare.command("librispeech")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/<subset> (train_clean_100, ...).")
@click.option(
    "--subsets",
    multiple=True,
    help="Subsets to prepare, e.g. train-clean-100,test-other (repeat or comma-separate) [default: all present].",
)
@trial_sample_options(
    2, "Trials per dev/test subset: N pairs, half target, cross-chapter targets first [default: every pair]."
)
@jobs_option()
@common_options
def prepare_librispeech_command(
    root: str, out: str, subsets: tuple[str, ...], num_trials: int | None, seed: int, jobs: int
) -> None:
    """LibriSpeech (ROOT[/LibriSpeech]/<subset>/<speaker>/<chapter>/*.flac), one data directory per subset."""
    from spkverif.stages.prepare.librispeech import prepare_librispeech

    names = [name for value in subsets for name in value.replace(",", " ").split()]
    prepare_librispeech(root, out, subsets=names or None, num_trials=num_trials, seed=seed, jobs=jobs)


@prepare.command("musan")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/{musan_noise,musan_music,musan_speech,musan}.")
@jobs_option()
@common_options
def prepare_musan_command(root: str, out: str, jobs: int) -> None:
    """MUSAN (ROOT/{noise,music,speech}/<source>/*.wav), one data directory per subset and one for all."""
    from spkverif.stages.prepare.musan import prepare_musan

    prepare_musan(root, out, jobs=jobs)


@prepare.command("rirs")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/rirs, OUT/rirs_* sets.")
@jobs_option()
@common_options
def prepare_rirs_command(root: str, out: str, jobs: int) -> None:
    """RIRS_NOISES (simulated and real room impulse responses, isotropic and point-source noises)."""
    from spkverif.stages.prepare.rirs import prepare_rirs

    prepare_rirs(root, out, jobs=jobs)


# data ------------------------------------------------------------------------


@cli.group("data")
def data_group() -> None:
    """Kaldi's data-directory utilities (utils/*_data*.sh): combine, subset, fix, copy, durations, decode.

    Each writes a whole, valid, C-sorted data directory or nothing. Add a
    subcommand with `@data_group.command(NAME)`.
    """


@data_group.command("combine")
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@common_options
def data_combine_command(out: str, sources: tuple[str, ...]) -> None:
    """OUT := the union of SOURCES (utils/combine_data.sh); clashing ids are an error."""
    from spkverif.stages.data import combine_data_dirs

    combine_data_dirs(list(sources), out)


@data_group.command("subset")
@click.argument("source", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--utt-list", type=click.Path(dir_okay=False), help="Keep the utterances listed (first field per line).")
@click.option("--spk-list", type=click.Path(dir_okay=False), help="Keep every utterance of the speakers listed.")
@click.option("--first", type=ranged(int, AT_LEAST_ONE), help="Keep the first N utterances (C order).")
@click.option("--per-spk", type=ranged(int, AT_LEAST_ONE), help="Keep the first K utterances of each speaker.")
@click.option("--random", type=ranged(int, AT_LEAST_ONE), help="Keep N utterances drawn at random (with --seed).")
@seed_option("Seed of --random.")
@common_options
def data_subset_command(source: str, out: str, **ways: Any) -> None:
    """OUT := part of SOURCE (utils/subset_data_dir.sh); give exactly one way to choose."""
    from spkverif.stages.data import subset_data_dir

    subset_data_dir(source, out, **ways)


@data_group.command("fix")
@click.argument("data_dir", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Write the fixed copy here [default: in place].")
@common_options
def data_fix_command(data_dir: str, out: str | None) -> None:
    """Keep the utterances every file knows, sort, rebuild spk2utt (utils/fix_data_dir.sh)."""
    from spkverif.stages.data import fix_data_dir

    fix_data_dir(data_dir, out)


@data_group.command("copy")
@click.argument("source", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--spk-prefix", default="", help="Prefix every speaker id.")
@click.option("--utt-prefix", default="", help="Prefix every utterance and recording id.")
@common_options
def data_copy_command(source: str, out: str, spk_prefix: str, utt_prefix: str) -> None:
    """OUT := SOURCE with prefixed ids (utils/copy_data_dir.sh), so clashing corpora combine."""
    from spkverif.stages.data import copy_data_dir

    copy_data_dir(source, out, spk_prefix=spk_prefix, utt_prefix=utt_prefix)


@data_group.command("durations")
@click.argument("data_dir", type=click.Path())
@click.option(
    "--sample-rate",
    type=ranged(int, AT_LEAST_ONE),
    cls=ModuleDefault,
    default_from="spkverif.training.config:DataOptions.sample_rate",
    help="Rate lengths count at (Hz).",
)
@click.option("--force", is_flag=True, help="Measure again even when utt2dur covers every utterance.")
@common_options
def data_durations_command(data_dir: str, sample_rate: int, force: bool) -> None:
    """Write DATA_DIR/utt2dur from the audio (utils/data/get_utt2dur.sh); `train` reads it instead of measuring."""
    from spkverif.stages.data import write_durations

    write_durations(data_dir, sample_rate, force)


@data_group.command("decode")
@click.argument("data_dir", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--audio-dir", required=True, type=click.Path(file_okay=False), help="Where the decoded files go.")
@decode_options
@jobs_option("Decoding processes.")
@common_options
def data_decode_command(data_dir: str, out: str, audio_dir: str, jobs: int, **decoding: Any) -> None:
    """Decode every recording of DATA_DIR (files, `cmd |` pipes, arks) once into AUDIO_DIR as
    16 kHz mono files; OUT is DATA_DIR naming them, with utt2dur of the decoded lengths."""
    from spkverif.stages.decode import DecodeOptions, decode, parse_part

    part = parse_part(decoding.pop("part"))
    decode(data_dir, out, audio_dir, DecodeOptions(jobs=jobs, part=part, **decoding))


@cli.command("shard")
@click.argument("data_dir", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--shard-dir", required=True, type=click.Path(file_okay=False), help="Where the .tar shards go.")
@click.option("--shard-size", default="1G", show_default=True, help="Bytes a shard (about): 1G, 500M, ...")
@seed_option("Seed of the shuffle before packing.")
@click.option("--resample", is_flag=True, help="Resample audio not at 16 kHz instead of failing.")
@common_options
def shard_command(data_dir: str, out: str, shard_dir: str, shard_size: str, seed: int, resample: bool) -> None:
    """Pack DATA_DIR's utterances into tar shards (WebDataset layout) for streaming training;
    OUT is the data directory with shards.list (`spkverif train --data OUT` reads the shards)."""
    from spkverif.stages.shard import parse_size, shard

    shard(data_dir, out, shard_dir, parse_size(shard_size), seed, resample)


@cli.command("validate")
@click.argument("data_dir", type=click.Path())
@click.option("--trials", type=click.Path(), help="Also check that a trial list names only utterances of DATA_DIR.")
@click.option("--no-audio-check", is_flag=True, help="Do not check that audio files exist.")
@common_options
def validate_command(data_dir: str, trials: str | None, no_audio_check: bool) -> None:
    """Check a data directory the way Kaldi's validate_data_dir.sh does."""
    from spkverif.stages.validate import validate

    validate(data_dir, trials, check_audio_files=not no_audio_check)


# train -----------------------------------------------------------------------


class ConfigOption(RegistryOption):
    """A `train` flag made from a configuration `Flag` (spkverif.training.config): its type, valid values and help
    come from the setting's declaration, and its help ends with the setting it sets (`[training.epochs; x>=1]`).
    Every such flag defaults to None, so a flag not given leaves the config file's value."""

    def __init__(self, param_decls: Any, *, flag: Any, **attrs: Any):
        attrs["default"] = None
        if flag.kind is bool:
            attrs["is_flag"] = True
        elif flag.path:
            attrs["type"] = click.Path()
        elif flag.choices:
            attrs["type"] = click.Choice(flag.choices)
        elif flag.kind in (int, float):
            attrs["type"] = ranged(flag.kind, flag.valid)
        super().__init__(param_decls, registries=flag.registries, help=flag.help, **attrs)
        self.key = flag.key

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        extra["range"] = f"{self.key}; {extra['range']}" if "range" in extra else self.key
        return extra


def config_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the `train` flags generated from the configuration's declarations (spkverif.training.config.train_flags)."""
    from spkverif.training.config import train_flags

    for flag in reversed(train_flags()):
        command = click.option(flag.name, flag.key.replace(".", "_"), cls=ConfigOption, flag=flag)(command)
    return command


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


@cli.command("train", cls=ConfigCommand)
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
    cls=RegistryOption,
    registries=("optimizers", "schedulers", "distances", "channels", "frontends"),
    help="Set any config value, e.g. --set loss.margin=0.2; a component's options are listed by "
    "spkverif list. Names reached only this way:",
)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --exp.")
@click.option("--dry-run", is_flag=True, help="Build the model and loss, print their sizes, train nothing.")
@config_flags
@common_options
def train_command(
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
    """
    from spkverif.stages.train import train
    from spkverif.training.config import load_train_config, parse_override

    keys = {parameter.name: parameter.key for parameter in click.get_current_context().command.params
            if isinstance(parameter, ConfigOption)}  # fmt: skip
    overrides = [(keys[name].split("."), value) for name, value in flags.items() if value is not None]
    overrides += [parse_override(text) for text in settings]
    config = load_train_config(config_path, overrides)
    description = train(config, data_dir, exp_dir, resume=resume, dry_run=dry_run)
    if dry_run:
        for key, value in description.items():
            click.echo(f"{key}\t{value}")


# extract ---------------------------------------------------------------------


@cli.command("extract")
@model_files_option(
    "Model file (models/final.pt), checkpoint, or a TorchScript or ONNX file from `spkverif export`; "
    "told apart by content. Repeated: the models as one ensemble (their length-normalised embeddings "
    "concatenated, so a cosine score is the mean of theirs). Kinds:",
    cls=RegistryOption,
    registries=("model-files",),
)
@click.argument("rspecifier")
@click.argument("wspecifier")
@device_option
@click.option(
    "--batch-size",
    cls=ModuleDefault,
    default_from="spkverif.stages.extract:BATCH_SIZE",
    type=ranged(int, AT_LEAST_ONE),
    help="Utterances of equal length, or windows, per forward pass.",
)
@click.option("--segments", type=click.Path(), help="Kaldi segments file applied to an scp: input.")
@resample_option
@click.option(
    "--window",
    type=ranged(float, POSITIVE),
    metavar="SEC",
    help="Average the embeddings of SEC-long windows instead of embedding whole utterances (the paper: 3).",
)
@click.option(
    "--step",
    type=ranged(float, POSITIVE),
    metavar="SEC",
    help="Distance between window starts [default: 0.1 with --window].",
)
@channel_option
@common_options
def extract_command(
    model_path: tuple[str, ...],
    rspecifier: str,
    wspecifier: str,
    device: str,
    batch_size: int,
    segments: str | None,
    resample: bool,
    window: float | None,
    step: float | None,
    channel: int | None,
) -> None:
    """Whole-utterance embeddings, or the mean over sliding windows (--window).

    RSPECIFIER is scp:wav.scp, ark:wav.ark or a data directory; WSPECIFIER e.g.
    ark,scp:emb.ark,emb.scp or ark:- for a pipe.
    """
    from spkverif.stages.extract import extract

    extract(
        model_path,
        rspecifier,
        wspecifier,
        device,
        batch_size,
        segments=segments,
        allow_resample=resample,
        window=window,
        step=step,
        channel=channel,
    )


# export ----------------------------------------------------------------------


@cli.command("export")
@click.option(
    "--model", "model_path", required=True, type=click.Path(), help="Model file (models/final.pt) or checkpoint."
)
@click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    cls=RegistryOption,
    registries=("formats",),
    help="[default: onnx for an OUTPUT ending in .onnx, else torchscript]:",
)
@click.argument("output", type=click.Path(dir_okay=False))
@common_options
def export_command(model_path: str, fmt: str | None, output: str) -> None:
    """Write the model (front end included) as TorchScript or ONNX: waveforms (B, T) in, embeddings (B, D) out.

    TorchScript loads with torch.jit.load (Python) or torch::jit::load (C++); ONNX runs in onnxruntime,
    and `spkverif extract --model model.onnx` runs it without torch. Neither needs spkverif's training code.
    """
    from spkverif.stages.export import export_model

    result = export_model(model_path, output, fmt)
    logger.info(
        "exported %s to %s as %s (max deviation %.2g)",
        result["model"]["name"],
        output,
        result["format"],
        result["max_deviation"],
    )


# import ----------------------------------------------------------------------


class RegistryArgumentCommand(click.Command):
    """A command whose help lists, under "Arguments", the names a positional argument takes from a registry."""

    def __init__(self, *args: Any, argument_registries: dict[str, tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.argument_registries = argument_registries

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        with formatter.section("Arguments"):
            rows = [(name, f"{lead}\n\n{choices_help(key)}") for name, (lead, key) in self.argument_registries.items()]
            formatter.write_dl(rows)


@cli.command(
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
    required=True,
    type=click.Path(),
    help="The checkpoint's configuration: WeSpeaker's config.yaml, SpeechBrain's hyperparams.yaml.",
)
@click.argument("output", type=click.Path(dir_okay=False))
@common_options
def import_command(source: str, checkpoint: str, config: str, output: str) -> None:
    """Turn another toolkit's checkpoint into a spkverif model file.

    The model keeps the front end it was trained with; extract, export and verify take the file.
    Local files only: nothing is downloaded.
    """
    from spkverif.stages.importers import import_checkpoint

    result = import_checkpoint(source, checkpoint, config, output)
    logger.info("imported %s as %s (fingerprint %s)", checkpoint, result["model"]["name"], result["fingerprint"])


# verify ----------------------------------------------------------------------


@cli.command("verify")
@model_files_option("Model file, TorchScript or ONNX export; repeated, the models as one ensemble (as extract's).")
@click.option("--calibration", type=click.Path(), help="Calibration from `report --save-calibration` (LLR, decision).")
@click.option(
    "--threshold",
    type=ranged(float, COSINE),
    help="Without a calibration: accept when the cosine score is at least this.",
)
@click.option(
    "--p-target",
    type=ranged(float, OPEN_PROBABILITY),
    cls=ModuleDefault,
    default_from="spkverif.stages.verify:APPLICATION_P_TARGET",
    help="With --calibration: prior of a target trial; accept when the LLR reaches its Bayes threshold "
    "(0.5: claims as likely genuine as not, LLR >= 0; evaluations use 0.01).",
)
@click.option(
    "--fa-rate",
    type=ranged(float, OPEN_PROBABILITY),
    help="With --calibration: decide at this false-accept rate (on the calibration's trials) instead.",
)
@click.option("--pairs", type=click.Path(), help="File of `ENROLL... TEST` lines, instead of FILES.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the results here [default: stdout].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per pair instead of the table.")
@resample_option
@channel_option
@device_option
@cohort_options("a calibration with cohort measures", None)
@click.argument("files", nargs=-1)
@common_options
def verify_command(
    model_path: tuple[str, ...],
    calibration: str | None,
    threshold: float | None,
    p_target: float | None,
    fa_rate: float | None,
    pairs: str | None,
    out: str | None,
    as_json: bool,
    resample: bool,
    channel: int | None,
    device: str,
    cohort: str | None,
    cohort_utt2spk: str | None,
    files: tuple[str, ...],
) -> None:
    """Same speaker? FILES is ENROLL... TEST: the enrolment recordings (averaged) and the test recording.

    \b
    Prints a header line, then `ENROLL TEST score [llr] [decision]`. The score is the
    cosine similarity of the two embeddings (-1 to 1, higher: more alike). It decides
    with --threshold T on the score, or with --calibration at --p-target. A calibration
    comes from your own labelled pairs, scored and then fitted in one command:
      spkverif report --trials pairs.trials --calibrate pairs.cosine \\
        --calibrate-trials pairs.trials --model M --save-calibration cal.json pairs.cosine

    \b
    Examples:
      spkverif verify --model model.pt --threshold 0.5 alice1.wav alice2.wav
      spkverif verify --model model.onnx --calibration cal.json --json enrol1.wav enrol2.wav test.wav
    """
    from spkverif.stages.verify import Pair, read_pairs, verify

    if (pairs is None) == (len(files) == 0):
        raise click.UsageError("give ENROLL... TEST files or --pairs FILE (not both)")
    if pairs is None and len(files) < 2:
        raise click.UsageError("give at least one enrolment file and one test file")
    todo = read_pairs(pairs) if pairs is not None else [Pair(tuple(files[:-1]), files[-1])]
    if click.get_current_context().get_parameter_source("p_target") is click.core.ParameterSource.DEFAULT:
        p_target = None  # the stage applies its default to calibrated LLRs only, and never beside --fa-rate
    verify(
        model_path, todo, calibration, p_target, fa_rate, resample, device, out, (cohort, cohort_utt2spk), channel,
        threshold, as_json,
    )  # fmt: skip


# score -----------------------------------------------------------------------


@cli.command("score")
@click.option("--trials", required=True, type=click.Path(), help="Trial list (Kaldi or VoxCeleb form).")
@click.option(
    "--method",
    default="cosine",
    show_default=True,
    cls=RegistryOption,
    registries=("backends",),
    help="Scoring back end (spkverif list backends):",
)
@click.option("--allow-missing", is_flag=True, help="Skip trials whose embeddings are missing, and count them.")
@click.option("--mean", help="cosine/snorm/asnorm: subtract the mean of these vectors first (e.g. scp:train.scp).")
@cohort_options("snorm/asnorm", "asnorm: closest cohort entries per side [default: 300].")
@click.option("--plda-model", type=click.Path(), help="plda: model file to read, or to write with --train-plda.")
@click.option("--train-plda", help="plda: train on these embeddings first (an rspecifier), then score.")
@click.option("--utt2spk", type=click.Path(), help="plda: speakers of the --train-plda embeddings.")
@click.option(
    "--lda-dim", type=ranged(int, AT_LEAST_ONE), help="plda: reduce dimension by LDA before PLDA [default: no LDA]."
)
@click.option("--plda-iters", type=ranged(int, AT_LEAST_ONE), help="plda: EM iterations [default: 10].")
@click.argument("archives", nargs=-1, required=True)
@common_options
def score_command(trials: str, method: str, allow_missing: bool, archives: tuple[str, ...], **backend: Any) -> None:
    """Score trials: ARCHIVES is EMB_RSPECIFIER OUTPUT, or ENROLL_RSPECIFIER TEST_RSPECIFIER OUTPUT."""
    from spkverif.stages.score import score

    if len(archives) not in (2, 3):
        raise click.UsageError("expected EMB_RSPECIFIER OUTPUT or ENROLL_RSPECIFIER TEST_RSPECIFIER OUTPUT")
    enroll, test = archives[0], archives[1] if len(archives) == 3 else None
    options = {name: value for name, value in backend.items() if value is not None}
    score(method, trials, enroll, archives[-1], test_rspecifier=test, allow_missing=allow_missing, options=options)


# report ----------------------------------------------------------------------


@cli.command("report")
@click.option(
    "--trials",
    "trials",
    multiple=True,
    type=click.Path(),
    help="Labelled trial list (needed with score files): one for every score file, or one per score file in order.",
)
@click.argument("scores", nargs=-1)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    help="Where report.json, report.md and det.png go (each path is logged; earlier ones are replaced with a "
    "warning) [default: the folder of the first score file].",
)
@click.option("--name", "names", multiple=True, help="A row label per score file, in order.")
@click.option(
    "--p-target",
    "p_targets",
    multiple=True,
    type=ranged(float, OPEN_PROBABILITY),
    cls=ModuleDefault,
    default_from="spkverif.stages.report:ReportSettings.p_targets",
    help="Priors for minDCF and actDCF.",
)
@click.option("--allow-missing", is_flag=True, help="Evaluate the trials that have scores; count the rest.")
@click.option(
    "--bootstrap",
    "replicates",
    cls=ModuleDefault,
    default_from="spkverif.stages.report:ReportSettings.bootstrap",
    type=ranged(int, NOT_NEGATIVE),
    help="Bootstrap replicates for the 95% confidence intervals; 0 for none.",
)
@seed_option("Seed of the bootstrap.")
@click.option(
    "--utt2spk",
    type=click.Path(),
    help="Resample enrolment speakers (from this utt2spk) instead of trials for the intervals.",
)
@click.option(
    "--calibrate",
    "calibration_scores",
    multiple=True,
    type=click.Path(),
    help="Held-out score file to fit a logistic-regression calibration on: one, or one per score file.",
)
@click.option(
    "--calibrate-trials",
    "calibration_trials",
    multiple=True,
    type=click.Path(),
    help="Labelled trials of the --calibrate score files: one, or one per score file.",
)
@click.option(
    "--calibration-method",
    default="linear",
    show_default=True,
    cls=RegistryOption,
    registries=("calibrations",),
    help="With --calibrate (qmf needs --durations and --embeddings):",
)
@click.option(
    "--durations", multiple=True, type=click.Path(), help="qmf: utt2dur file(s) covering both sides of all trials."
)
@click.option("--embeddings", multiple=True, help="qmf: rspecifier(s) of the trials' embeddings (norms, cohort means).")
@cohort_options("qmf", "qmf: cohort scores averaged per side, the highest N [default: 300].")
@click.option(
    "--model",
    "model_path",
    multiple=True,
    type=click.Path(),
    help="The model that made the scores (any kind extract takes; repeated for an ensemble, in extract's "
    "order); its fingerprint goes into --save-calibration.",
)
@click.option(
    "--save-calibration",
    type=click.Path(dir_okay=False),
    help="Write the fitted calibration (JSON) for `spkverif verify --calibration`.",
)
@click.option("--det", "det_path", type=click.Path(), help="Where the DET plot goes [default: OUT_DIR/det.png].")
@click.option("--no-det", is_flag=True, help="Do not draw the DET plot.")
@click.option(
    "--training",
    "training",
    multiple=True,
    type=click.Path(),
    help="Experiment dir: draw its training curves to training.png.",
)
@click.option(
    "--filters",
    "filters_model",
    type=click.Path(),
    help="SincNet model file: plot its learned filters to filters.png (in --out-dir, default beside MODEL).",
)
@common_options
def report_command(
    trials: tuple[str, ...],
    scores: tuple[str, ...],
    out_dir: str | None,
    names: tuple[str, ...],
    p_targets: tuple[float, ...],
    allow_missing: bool,
    replicates: int,
    seed: int,
    utt2spk: str | None,
    calibration_scores: tuple[str, ...],
    calibration_trials: tuple[str, ...],
    calibration_method: str,
    durations: tuple[str, ...],
    embeddings: tuple[str, ...],
    cohort: str | None,
    cohort_utt2spk: str | None,
    top_n: int | None,
    model_path: tuple[str, ...],
    save_calibration: str | None,
    det_path: str | None,
    no_det: bool,
    training: tuple[str, ...],
    filters_model: str | None,
) -> None:
    """EER (with a confidence interval), minDCF, actDCF and Cllr of each score file: a table, report.{json,md}
    and a DET plot; training curves; learned SincNet filters."""
    if not scores and not training and not filters_model:
        raise click.UsageError("give score files (with --trials), --training EXP or --filters MODEL")
    if filters_model:
        from spkverif.plots.filters import plot_filters

        target = (Path(out_dir) if out_dir else Path(filters_model).parent) / "filters.png"
        click.echo(f"learned filters: {plot_filters(filters_model, target)}")
    if training:
        from spkverif.plots.training import plot_training

        target = (Path(out_dir) if out_dir else Path(training[0])) / "training.png"
        click.echo(f"training curves: {plot_training(list(training), target)}")
    if scores:
        if not trials:
            raise click.UsageError("score files need --trials")
        from spkverif.stages.report import CohortOption, ReportSettings, load_calibration_options, report

        settings = ReportSettings(tuple(p_targets), allow_missing, replicates, seed, utt2spk)
        if cohort is None and (cohort_utt2spk is not None or top_n is not None):
            raise click.UsageError("--cohort-utt2spk and --top-n go with --cohort")
        qmf_cohort = CohortOption(cohort, cohort_utt2spk, top_n or 300) if cohort is not None else None
        options = load_calibration_options(
            calibration_method,
            list(durations),
            list(embeddings),
            list(model_path) or None,
            save_calibration,
            qmf_cohort,
        )
        report(
            list(trials),
            list(scores),
            out_dir,
            list(names) or None,
            settings,
            calibration_scores=list(calibration_scores),
            calibration_trials=list(calibration_trials),
            det_path=det_path,
            plot=not no_det,
            calibration_options=options,
        )


# list ------------------------------------------------------------------------


@cli.command(
    "list",
    help=f"Print the registered choices with their options, defaults and valid values. "
    f"KIND: {', '.join(CATALOGUE)} [default: all].",
)
@click.argument("kinds", nargs=-1, metavar="[KIND]...")
@common_options
def list_command(kinds: tuple[str, ...]) -> None:
    click.echo(render_listing(kinds, width=shutil.get_terminal_size((100, 24)).columns), nl=False)


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
