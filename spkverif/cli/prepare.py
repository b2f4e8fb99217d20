"""`spkverif prepare CORPUS`: Kaldi data directories from a corpus (`spkverif.stages.prepare`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from spkverif.base.ranges import AT_LEAST_ONE, NOT_NEGATIVE, POSITIVE, Range, at_least
from spkverif.cli.options import (
    Decorator,
    Option,
    common_options,
    decode_options,
    default_of,
    jobs_option,
    out_option,
    ranged,
    seed_option,
)


@click.group("prepare")
def command() -> None:
    """Make Kaldi data directories (wav.scp, utt2spk, spk2utt, utt2dur[, trials]).

    \b
    Example:
      spkverif prepare mini --out data
    """


def trial_sample_options(minimum: int, help_text: str, stage: Callable[[], Callable[..., Any]]) -> Decorator:
    """`--trials N` (as `num_trials`, at least `minimum`) and `--seed`, for the preparers that write trials;
    `stage` returns the preparer, whose `seed` default is the flag's."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        function = seed_option("Seed of the --trials sample.", lambda: default_of(stage(), "seed"))(function)
        return click.option("--trials", "num_trials", type=click.IntRange(min=minimum), default=None, help=help_text)(
            function
        )

    return decorate


# mini ------------------------------------------------------------------------------------------------


def _mini() -> type:
    from spkverif.stages.prepare.mini import MiniOptions

    return MiniOptions


def mini_option(name: str, kind: type, valid: Range, help_text: str) -> Decorator:
    """An option of `prepare mini` whose default is the same field of `MiniOptions` (--num-speakers: num_speakers)."""
    field = name.lstrip("-").replace("-", "_")
    return click.option(
        name, cls=Option, default=lambda: default_of(_mini(), field), type=ranged(kind, valid), help=help_text
    )


@command.command("mini")
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
def mini_command(out: str, jobs: int | None, **options: Any) -> None:
    """Synthesise a multi-speaker corpus with eSpeak NG: no download needed.

    \b
    Example:
      spkverif prepare mini --out data --num-speakers 160 --num-trials 3000 --seed 0
    """
    from spkverif.stages.prepare import mini

    mini.prepare_mini(out, mini.MiniOptions(jobs=jobs or mini.default_jobs(), **options))


# a directory tree ------------------------------------------------------------------------------------


def _prepare_dir() -> Callable[..., Any]:
    from spkverif.stages.prepare.directory import prepare_dir

    return prepare_dir


@command.command("dir")
@click.argument("root", type=click.Path())
@out_option("Output data directory.")
@jobs_option()
@trial_sample_options(
    0, "Also write OUT/trials: 0 for every pair, N for N pairs, half target, cross-folder targets first.", _prepare_dir
)
@common_options
def dir_command(root: str, out: str, jobs: int, num_trials: int | None, seed: int) -> None:
    """Turn ROOT/<speaker>/**/*.{wav,flac} into a data directory (ids: speaker-path-below-it).

    \b
    Example:
      spkverif prepare dir /corpora/my_speakers --out data/my_speakers --trials 0
    """
    _prepare_dir()(root, out, jobs, num_trials=num_trials, seed=seed)


# VoxCeleb --------------------------------------------------------------------------------------------


@command.command("voxceleb1")
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
def voxceleb1_command(
    root: str,
    out: str,
    trials_dir: str | None,
    trials_o: str | None,
    trials_e: str | None,
    trials_h: str | None,
    meta: str | None,
    jobs: int,
) -> None:
    """VoxCeleb1 (ROOT/wav/idXXXXX/<video>/NNNNN.wav) and its O/E/H trial lists as Kaldi data.

    \b
    Example:
      spkverif prepare voxceleb1 /corpora/VoxCeleb1 --out data --jobs 8
    """
    from spkverif.stages.prepare.voxceleb import prepare_voxceleb1

    lists = {"O": trials_o, "E": trials_e, "H": trials_h}
    prepare_voxceleb1(root, out, trials_dir=trials_dir, trial_lists=lists, meta=meta, jobs=jobs)


def _prepare_voxceleb2() -> Callable[..., Any]:
    from spkverif.stages.prepare.voxceleb import prepare_voxceleb2

    return prepare_voxceleb2


def voxceleb2_option(name: str, help_text: str, **extra: Any) -> Decorator:
    """An option of `prepare voxceleb2` whose default is `prepare_voxceleb2`'s (--audio-ext: audio_ext)."""
    parameter = name.lstrip("-").replace("-", "_")
    return click.option(
        name, cls=Option, default=lambda: default_of(_prepare_voxceleb2(), parameter), help=help_text, **extra
    )


@command.command("voxceleb2")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/vox2_SUBSET.")
@voxceleb2_option("--subset", "Which part to prepare.", type=click.Choice(["dev", "test"]))
@voxceleb2_option(
    "--audio-ext",
    "m4a: wav.scp decodes through an ffmpeg pipe; wav/flac: files already converted.",
    type=click.Choice(["m4a", "wav", "flac"]),
)
@voxceleb2_option("--ffmpeg", "The ffmpeg command wav.scp pipes through.", type=click.STRING)
@click.option(
    "--decode-to",
    type=click.Path(file_okay=False),
    help="Decode every file once into DIR (16 kHz mono) and name the decoded files in wav.scp, not pipes.",
)
@decode_options
@jobs_option("Threads reading audio headers; decoding processes.")
@common_options
def voxceleb2_command(
    root: str, out: str, subset: str, audio_ext: str, ffmpeg: str, decode_to: str | None, jobs: int, **decoding: Any
) -> None:
    """VoxCeleb2 (ROOT/dev/aac/idXXXXX/<video>/NNNNN.m4a) as a Kaldi data directory.

    \b
    Example:
      spkverif prepare voxceleb2 /corpora/VoxCeleb2 --out data --decode-to audio/vox2 --jobs 8
    """
    from spkverif.stages.decode import DecodeOptions, parse_part

    part = parse_part(decoding.pop("part"))
    decode = DecodeOptions(jobs=jobs, part=part, **decoding) if decode_to is not None else None
    if part is not None and decode is None:
        raise click.UsageError("--part needs --decode-to")
    _prepare_voxceleb2()(
        root, out, subset=subset, audio_ext=audio_ext, ffmpeg=ffmpeg, jobs=jobs, decode_to=decode_to, decode=decode
    )


# LibriSpeech, MUSAN, RIRS_NOISES ---------------------------------------------------------------------


def _prepare_librispeech() -> Callable[..., Any]:
    from spkverif.stages.prepare.librispeech import prepare_librispeech

    return prepare_librispeech


@command.command("librispeech")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/<subset> (train_clean_100, ...).")
@click.option(
    "--subsets",
    multiple=True,
    help="Subsets to prepare, e.g. train-clean-100,test-other (repeat or comma-separate) [default: all present].",
)
@trial_sample_options(
    2,
    "Trials per dev/test subset: N pairs, half target, targets across chapters first [default: every pair].",
    _prepare_librispeech,
)
@click.option(
    "--protocol",
    is_flag=True,
    help="spkverif's LibriSpeech verification protocol (docs/librispeech_protocol.md): the dev and test "
    "subsets present (or --subsets among them), a fixed --trials and --seed; prints each list's sha256.",
)
@jobs_option()
@common_options
def librispeech_command(
    root: str, out: str, subsets: tuple[str, ...], num_trials: int | None, seed: int, protocol: bool, jobs: int
) -> None:
    """LibriSpeech (ROOT[/LibriSpeech]/<subset>/<speaker>/<chapter>/*.flac), one data directory per subset.

    \b
    Example:
      spkverif prepare librispeech /corpora/LibriSpeech --out data --subsets train-clean-100,test-other
    """
    names = [name for value in subsets for name in value.replace(",", " ").split()]
    _prepare_librispeech()(
        root, out, subsets=names or None, num_trials=num_trials, seed=seed, jobs=jobs, protocol=protocol
    )


@command.command("musan")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/{musan_noise,musan_music,musan_speech,musan}.")
@jobs_option()
@common_options
def musan_command(root: str, out: str, jobs: int) -> None:
    """MUSAN (ROOT/{noise,music,speech}/<source>/*.wav), one data directory per subset and one for all.

    \b
    Example:
      spkverif prepare musan /corpora/musan --out data --jobs 8
    """
    from spkverif.stages.prepare.musan import prepare_musan

    prepare_musan(root, out, jobs=jobs)


@command.command("rirs")
@click.argument("root", type=click.Path())
@out_option("Output: OUT/rirs, OUT/rirs_* sets.")
@jobs_option()
@common_options
def rirs_command(root: str, out: str, jobs: int) -> None:
    """RIRS_NOISES (simulated and real room impulse responses, isotropic and point-source noises).

    \b
    Example:
      spkverif prepare rirs /corpora/RIRS_NOISES --out data --jobs 8
    """
    from spkverif.stages.prepare.rirs import prepare_rirs

    prepare_rirs(root, out, jobs=jobs)
