"""Every file type a stage reads, each corrupted in every way that applies (issue #12).

A clean set of inputs (a data directory, a segmented one, embeddings in binary and
text archives, trial lists in both forms, a score file, a YAML configuration, a
PLDA model, a cohort) is built once; each case copies it, corrupts one file in one
way, runs the stage that reads it in-process and asserts one of:

- `same`: exit 0 and the very output of the clean input (the corruption is harmless);
- `accepted`: exit 0, every figure finite: a value that is unusual but valid, used as given;
- `error`: exit 1, no traceback, and the line `spkverif STAGE: error: FILE[:LINE]: ...`
  (for `validate`, which lists every problem, that problem among its lines).

The table in docs/corruption.md is rendered from `CASES` and checked against them:
`python -m tests.test_corruption --write` regenerates it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kaldiio
import numpy as np
import pytest
from click.testing import CliRunner

from spkverif.backends.calibration import Calibration, false_accept_thresholds
from spkverif.backends.plda import PldaModel
from spkverif.cli import cli
from spkverif.io.specifiers import ArchiveWriter
from spkverif.models import build_model
from spkverif.runtime import open_model
from spkverif.training.checkpoint import model_payload, save_atomic
from tests.fake_corpora import make_fake_rirs, make_fake_voxceleb1

DOC = Path(__file__).resolve().parents[1] / "docs" / "corruption.md"
BEGIN, END = "<!-- corruption table: begin -->", "<!-- corruption table: end -->"

# The clean inputs ----------------------------------------------------------------------------------

UTTERANCES = {"a1": ("a", 1.0), "a2": ("a", 1.2), "b1": ("b", 1.4), "b2": ("b", 1.6)}
KALDI_TRIALS = "a1 a2 target\na1 b1 nontarget\na2 b2 nontarget\nb1 b2 target\n"
VOXCELEB_TRIALS = "1 a1 a2\n0 a1 b1\n0 a2 b2\n1 b1 b2\n"
SCORES = "a1 a2 0.9\na1 b1 0.1\na2 b2 0.3\nb1 b2 0.8\n"
# Held-out trials for --calibrate: the four above first (the corruptions edit their lines), then 16 more, so that
# each class has the 10 trials a calibration needs (spkverif.backends.calibration.MIN_TRIALS_PER_CLASS), with
# classes that overlap (perfectly separated ones are fitted with a warning).
HELD_OUT = [(f"h{i}", f"g{i}", i % 2 == 0, 0.25 + 0.03 * i + 0.2 * (i % 2 == 0)) for i in range(16)]
HELD_OUT_TRIALS = KALDI_TRIALS + "".join(f"{e} {t} {'target' if same else 'nontarget'}\n" for e, t, same, _ in HELD_OUT)
HELD_OUT_SCORES = SCORES + "".join(f"{e} {t} {score:.2f}\n" for e, t, _, score in HELD_OUT)
CONFIG = """seed: 0
training:
  epochs: 2
  speakers_per_batch: 2
model:
  name: xvector
  channels: 32
  stats_channels: 64
  embedding_dim: 16
"""


def _write_audio(path: Path, seconds: float, seed: int) -> str:
    import soundfile

    samples = np.random.default_rng(seed).uniform(-0.3, 0.3, round(seconds * 16000)).astype(np.float32)
    soundfile.write(path, samples, 16000, subtype="PCM_16")
    return str(path)


def _write_data(root: Path) -> None:
    data = root / "data"
    data.mkdir()
    wavs = {
        utt: _write_audio(root / f"{utt}.wav", seconds, i) for i, (utt, (_, seconds)) in enumerate(UTTERANCES.items())
    }
    (data / "wav.scp").write_text("".join(f"{utt} {path}\n" for utt, path in wavs.items()))
    (data / "utt2spk").write_text("".join(f"{utt} {spk}\n" for utt, (spk, _) in UTTERANCES.items()))
    (data / "spk2utt").write_text("a a1 a2\nb b1 b2\n")
    (data / "utt2dur").write_text("".join(f"{utt} {seconds:.4f}\n" for utt, (_, seconds) in UTTERANCES.items()))
    (data / "spk2gender").write_text("a m\nb f\n")
    segmented = root / "segdata"
    segmented.mkdir()
    recordings = {rec: _write_audio(root / f"{rec}.wav", 3.0, 10 + i) for i, rec in enumerate(("ra", "rb"))}
    (segmented / "wav.scp").write_text("".join(f"{rec} {path}\n" for rec, path in recordings.items()))
    (segmented / "segments").write_text("a1 ra 0.0 1.0\na2 ra 1.0 2.0\nb1 rb 0.0 1.0\nb2 rb 1.0 2.5\n")
    (segmented / "utt2spk").write_text((data / "utt2spk").read_text())
    (segmented / "spk2utt").write_text((data / "spk2utt").read_text())


def _write_vectors(path: Path, vectors: dict[str, np.ndarray], text: bool = False) -> None:
    wspecifier = f"ark,t:{path}" if text else f"ark,scp:{path}.ark,{path}.scp"
    with ArchiveWriter(wspecifier) as writer:
        for key, vector in vectors.items():
            writer.write(key, vector.astype(np.float32))


def build_world(root: Path) -> None:
    """Every clean input, in ROOT."""
    _write_data(root)
    rng = np.random.default_rng(0)
    speakers = {"a": rng.normal(size=4), "b": rng.normal(size=4)}
    vectors = {utt: speakers[spk] + 0.3 * rng.normal(size=4) for utt, (spk, _) in UTTERANCES.items()}
    _write_vectors(root / "emb", vectors)
    _write_vectors(root / "emb_t.ark", vectors, text=True)
    cohort = {f"c{i}": rng.normal(size=4) for i in range(6)}
    _write_vectors(root / "cohort", cohort)
    (root / "cohort_utt2spk").write_text("".join(f"c{i} x{i // 2}\n" for i in range(6)))
    labels = np.repeat(np.arange(5), 8)
    plda_vectors = rng.normal(size=(5, 4))[labels] * 2 + rng.normal(size=(40, 4))
    PldaModel.train(plda_vectors.astype(np.float32), labels, None, 3).save(root / "plda")
    (root / "trials").write_text(KALDI_TRIALS)
    (root / "vox_trials").write_text(VOXCELEB_TRIALS)
    (root / "scores").write_text(SCORES)
    (root / "held_out_scores").write_text(HELD_OUT_SCORES)
    (root / "held_out_trials").write_text(HELD_OUT_TRIALS)
    (root / "config.yaml").write_text(CONFIG)
    network = build_model("xvector", {"channels": 16, "stats_channels": 32, "embedding_dim": 8})
    save_atomic(model_payload(network.eval()), root / "model.pt")
    _write_deployment(root, rng)
    _write_corpora(root)
    kaldiio.save_ark(
        str(root / "wav.ark"),
        {utt: (16000, (np.random.default_rng(i).uniform(-0.3, 0.3, 8000) * 32767).astype(np.int16))
         for i, utt in enumerate(("a1", "a2", "b1"))},
    )  # fmt: skip


def _write_deployment(root: Path, rng: np.random.Generator) -> None:
    """The model exported to ONNX, a calibration for it, a verify pairs list, the data directory in shards."""
    result = CliRunner().invoke(cli, ["export", "-q", "--model", str(root / "model.pt"), str(root / "model.onnx")])
    assert result.exit_code == 0, result.output
    nontarget = rng.normal(-2.0, 1.0, 40)
    fingerprint = open_model(root / "model.pt", "cpu").fingerprint
    calibration = Calibration("linear", [], [4.0], -1.0, fingerprint, {"target": 40, "nontarget": 40})
    calibration.fa_thresholds = false_accept_thresholds(nontarget, points=4)
    calibration.save(root / "calibration.json")
    (root / "pairs").write_text(
        f"{root}/a1.wav {root}/a2.wav\n{root}/a1.wav {root}/b1.wav\n{root}/b1.wav {root}/b2.wav\n"
    )
    shard = ["shard", "-q", str(root / "data"), str(root / "shards"), "--shard-dir", str(root / "tars")]
    result = CliRunner().invoke(cli, [*shard, "--shard-size", "40K"])
    assert result.exit_code == 0, result.output


def _write_corpora(root: Path) -> None:
    """A VoxCeleb1 tree with vox1_meta.csv, and RIRS_NOISES with its rir_lists."""
    make_fake_voxceleb1(
        root / "vox1", dev_speakers=1, test_speakers=2, videos=1, utts=2, seconds=0.3, trials=4, meta=True
    )
    make_fake_rirs(root / "rirs", rooms=1, rirs_per_room=3, real=1, isotropic=1, pointsource=1, seconds=0.05)


# The stages that read each file ---------------------------------------------------------------------

OUT = "OUT"  # replaced by the case's output path


@dataclass(frozen=True)
class FileType:
    """A file type, the file of the clean world that stands for it, and the command that reads it."""

    name: str
    path: str
    command: tuple[str, ...]
    output: str  # what `same` compares: a file under OUT, "stdout", or "" (exit status only)
    number_field: int | None = None  # the field of line 2 the number corruptions replace
    number_line: int = 2


SCORE = ("score", "-q", "--trials", "{root}/trials", "scp:{root}/emb.scp", f"{OUT}/scores")
VERIFY = ("verify", "-q", "--model", "{root}/model.pt")
PAIR = ("{root}/a1.wav", "{root}/b1.wav")
TRAIN = (
    "train",
    "-q",
    "--dry-run",
    "--config",
    "{root}/config.yaml",
    "--exp",
    f"{OUT}/exp",
    "--speakers-per-batch",
    "2",
)
REPORT = ("report", "-q", "--trials", "{root}/trials", "--bootstrap", "0", "--no-det", "--out-dir", OUT)
TYPES = {
    t.name: t
    for t in (
        FileType("wav.scp", "data/wav.scp", ("validate", "{root}/data"), ""),
        FileType("segments", "segdata/segments", ("validate", "{root}/segdata"), "", number_field=3),
        FileType("utt2spk", "data/utt2spk", ("validate", "{root}/data"), ""),
        FileType("spk2utt", "data/spk2utt", ("validate", "{root}/data"), ""),
        FileType("utt2dur", "data/utt2dur", ("validate", "{root}/data"), "", number_field=1),
        FileType("spk2gender", "data/spk2gender", ("validate", "{root}/data"), ""),
        FileType("trials (Kaldi form)", "trials", SCORE, "scores"),
        FileType(
            "trials (VoxCeleb form)",
            "vox_trials",
            (*SCORE[:2], "--trials", "{root}/vox_trials", *SCORE[4:]),
            "scores",
            number_field=0,
        ),
        FileType("trials, evaluated", "trials", (*REPORT, "{root}/scores"), "report.json"),
        FileType("score file", "scores", (*REPORT, "{root}/scores"), "report.json", number_field=2),
        FileType(
            "held-out scores for --calibrate",
            "held_out_scores",
            (
                *REPORT,
                "--calibrate",
                "{root}/held_out_scores",
                "--calibrate-trials",
                "{root}/held_out_trials",
                "{root}/clean_scores",
            ),
            "report.json",
            number_field=2,
        ),
        FileType(
            "wav archive",
            "wav.ark",
            ("extract", "-q", "--model", "{root}/model.pt", "ark:{root}/wav.ark", f"ark,t:{OUT}/emb.txt"),
            "emb.txt",
        ),
        FileType("vector scp", "emb.scp", SCORE, "scores"),
        FileType("vector ark, binary", "emb.ark", (*SCORE[:4], "ark:{root}/emb.ark", SCORE[5]), "scores"),
        FileType(
            "vector ark, text", "emb_t.ark", (*SCORE[:4], "ark:{root}/emb_t.ark", SCORE[5]), "scores", number_field=2
        ),
        FileType(
            "config YAML",
            "config.yaml",
            (
                "train",
                "-q",
                "--dry-run",
                "--config",
                "{root}/config.yaml",
                "--data",
                "{root}/data",
                "--exp",
                f"{OUT}/exp",
                "--speakers-per-batch",
                "2",
            ),
            "stdout",
        ),
        FileType(
            "PLDA model", "plda", (*SCORE[:2], "--method", "plda", "--plda-model", "{root}/plda", *SCORE[2:]), "scores"
        ),
        FileType(
            "cohort archive",
            "cohort.scp",
            (*SCORE[:2], "--method", "snorm", "--cohort", "scp:{root}/cohort.scp", *SCORE[2:]),
            "scores",
        ),
        FileType(
            "calibration file",
            "calibration.json",
            (*VERIFY, "--calibration", "{root}/calibration.json", *PAIR),
            "stdout",
        ),
        FileType("verify pairs", "pairs", (*VERIFY, "--pairs", "{root}/pairs"), "stdout"),
        FileType(
            "ONNX model",
            "model.onnx",
            ("extract", "-q", "--model", "{root}/model.onnx", "scp:{root}/data/wav.scp", f"ark,t:{OUT}/emb.txt"),
            "emb.txt",
        ),
        FileType("shards.list", "shards/shards.list", (*TRAIN, "--data", "{root}/shards"), "stdout", number_field=1),
        FileType(
            "vox1_meta.csv",
            "vox1/vox1_meta.csv",
            ("prepare", "voxceleb1", "-q", "{root}/vox1", "--out", OUT, "--jobs", "1"),
            "vox1/spk2gender",
        ),
        FileType(
            "rir_list",
            "rirs/RIRS_NOISES/simulated_rirs/smallroom/rir_list",
            ("prepare", "rirs", "-q", "{root}/rirs", "--out", OUT, "--jobs", "1"),
            "rirs_smallroom/utt2spk",
        ),
        FileType(
            "cohort utt2spk",
            "cohort_utt2spk",
            (
                *SCORE[:2],
                "--method",
                "snorm",
                "--cohort",
                "scp:{root}/cohort.scp",
                "--cohort-utt2spk",
                "{root}/cohort_utt2spk",
                *SCORE[2:],
            ),
            "scores",
        ),
    )
}


# The corruptions -------------------------------------------------------------------------------------


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _set_field(path: Path, line: int, field: int, value: str) -> None:
    lines = _lines(path)
    fields = lines[line - 1].split()
    fields[field] = value.encode()
    lines[line - 1] = b" ".join(fields) + b"\n"
    path.write_bytes(b"".join(lines))


def _edit_lines(edit: Callable[[list[bytes]], list[bytes]]) -> Callable[[Path, FileType], None]:
    def corrupt(path: Path, kind: FileType) -> None:
        path.write_bytes(b"".join(edit(_lines(path))))

    return corrupt


def _number(value: str) -> Callable[[Path, FileType], None]:
    def corrupt(path: Path, kind: FileType) -> None:
        if kind.name == "config YAML":
            path.write_text(path.read_text().replace("epochs: 2", f"epochs: {value}"))
        elif kind.name == "calibration file":
            path.write_text(path.read_text().replace('"offset": -1.0', f'"offset": {value}'))
        elif kind.name == "vector ark, text":
            _set_field(path, 2, 2, value)
        else:
            assert kind.number_field is not None
            _set_field(path, kind.number_line, kind.number_field, value)

    return corrupt


def _truncate(path: Path, kind: FileType) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3 - 7])  # not at an entry boundary: that is a shorter archive


def _non_utf8(path: Path, kind: FileType) -> None:
    if kind.name == "config YAML":
        path.write_bytes(path.read_bytes().replace(b"epochs", b"epo\xffchs"))
        return
    lines = _lines(path)
    separator = b" " if b" " in lines[1] else b"\t"
    lines[1] = lines[1].replace(separator, b"\xff" + separator, 1)
    path.write_bytes(b"".join(lines))


def _missing_reference(path: Path, kind: FileType) -> None:
    """A line naming something its partner file lacks."""
    replacements = {
        "wav.scp": (b"a2.wav", b"absent.wav"),
        "segments": (b"a2 ra", b"a2 rz"),
        "utt2spk": (b"a2 a", b"a9 a"),
        "spk2utt": (b"a a1 a2", b"a a1 a9"),
        "utt2dur": (b"a2 ", b"a9 "),
        "spk2gender": (b"b f", b"z f"),
        "trials (Kaldi form)": (b"a1 b1", b"a1 z9"),
        "trials, evaluated": (b"a1 b1", b"a1 z9"),
        "trials (VoxCeleb form)": (b"a1 b1", b"a1 z9"),
        "score file": (b"a1 b1 0.1\n", b""),
        "held-out scores for --calibrate": (b"a1 b1 0.1\n", b""),
        "vector scp": (b"emb.ark", b"absent.ark"),
        "cohort utt2spk": (b"c2 x1\n", b""),
        "calibration file": (b'"fingerprint": "', b'"fingerprint": "0ther'),
        "verify pairs": (b"a2.wav", b"absent.wav"),
        "shards.list": (b"shard-000001.tar", b"absent.tar"),
        "vox1_meta.csv": (b"id10001\t", b"id19999\t"),
        "rir_list": (b"Room001-00002.wav", b"Room001-00009.wav"),
        "config YAML": (b"seed: 0", b"seed: 0\nloss:\n  name: no_such_loss"),
    }
    old, new = replacements[kind.name]
    data = path.read_bytes()
    assert old in data, (kind.name, old)
    path.write_bytes(data.replace(old, new, 1))


CORRUPTIONS: dict[str, Callable[[Path, FileType], None]] = {
    "empty file": lambda path, kind: path.write_bytes(b""),
    "empty line": _edit_lines(lambda lines: [lines[0], b"\n", *lines[1:]]),
    "wrong number of fields": _edit_lines(lambda lines: [lines[0], lines[1].rstrip(b"\n") + b" extra\n", *lines[2:]]),
    "duplicate key": _edit_lines(lambda lines: [lines[0], lines[1], lines[1], *lines[2:]]),
    "unsorted keys": _edit_lines(lambda lines: lines[::-1]),
    "CRLF endings": _edit_lines(lambda lines: [line.replace(b"\n", b"\r\n") for line in lines]),
    "bytes not UTF-8": _non_utf8,
    "NaN": _number("nan"),
    "inf": _number("inf"),
    "huge number": _number("1e300"),
    "negative number": _number("-1"),
    "missing-key reference": _missing_reference,
    "truncated": _truncate,
}


# The expected results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A file type, a corruption and what the stage must do: `same`, `accepted` or `error`."""

    file: str
    corruption: str
    expect: str
    message: str = ""  # the error's text after `FILE[:LINE]: `
    line: int | None = None  # the line the error names (None: the file alone)
    note: str = ""  # why an accepted corruption is accepted

    @property
    def id(self) -> str:
        return f"{self.file}: {self.corruption}"


# One-letter constructors keep the table below a table: E(rror), S(ame), A(ccepted).
def E(file: str, corruption: str, message: str, line: int | None = None) -> Case:
    return Case(file, corruption, "error", message, line)


def S(file: str, corruption: str, note: str) -> Case:
    return Case(file, corruption, "same", note=note)


def A(file: str, corruption: str, note: str) -> Case:
    return Case(file, corruption, "accepted", note=note)


BLANK = "blank lines are skipped, as Kaldi's readers skip them"
CRLF = "a CR is white space to the field splitter: the fields are the same"
ORDER = "trials and scores are matched by key, not by position"
DATA_ORDER = "not sorted: {key!r} after"

CASES = [
    # wav.scp ----------------------------------------------------------------------------------------
    E("wav.scp", "empty file", "the file is empty (fill it, or remove it where it is optional)"),
    S("wav.scp", "empty line", BLANK),
    E("wav.scp", "wrong number of fields", "audio file '{root}/a2.wav extra' of 'a2' does not exist", 2),
    E("wav.scp", "duplicate key", "duplicate key 'a2' (first on line 2)", 3),
    E("wav.scp", "unsorted keys", "not sorted: 'b1' after 'b2' (use `LC_ALL=C sort`)", 2),
    S("wav.scp", "CRLF endings", CRLF),
    E("wav.scp", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E("wav.scp", "missing-key reference", "audio file '{root}/absent.wav' of 'a2' does not exist", 2),
    # segments ---------------------------------------------------------------------------------------
    E("segments", "empty file", "the file is empty (fill it, or remove it where it is optional)"),
    S("segments", "empty line", BLANK),
    E("segments", "wrong number of fields", "expected `segment recording start end`, found 5 fields", 2),
    E("segments", "duplicate key", "duplicate key 'a2' (first on line 2)", 3),
    E("segments", "unsorted keys", "not sorted: 'b1' after 'b2' (use `LC_ALL=C sort`)", 2),
    S("segments", "CRLF endings", CRLF),
    E("segments", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E("segments", "NaN", "end 'nan' is not a finite number", 2),
    E("segments", "inf", "end 'inf' is not a finite number", 2),
    E("segments", "huge number", "segment ends at 1e+300 s, more than 0.5 s past the end of 'ra' (3 s long)", 2),
    A("segments", "negative number", "an end of -1 is Kaldi's 'to the end of the recording'"),
    E("segments", "negative start", "start '-1' must be at least 0", 2),
    E("segments", "missing-key reference", "recording 'rz' is not in wav.scp", 2),
    # utt2spk -----------------------------------------------------------------------------------------
    E("utt2spk", "empty file", "the file is empty (fill it, or remove it where it is optional)"),
    S("utt2spk", "empty line", BLANK),
    E("utt2spk", "wrong number of fields", "expected `utt speaker`, found 3 fields", 2),
    E("utt2spk", "duplicate key", "duplicate key 'a2' (first on line 2)", 3),
    E("utt2spk", "unsorted keys", "not sorted: 'b1' after 'b2' (use `LC_ALL=C sort`)", 2),
    S("utt2spk", "CRLF endings", CRLF),
    E("utt2spk", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E("utt2spk", "missing-key reference", "utterance 'a9' has no audio in wav.scp", 2),
    # spk2utt -----------------------------------------------------------------------------------------
    E("spk2utt", "empty file", "the file is empty (fill it, or remove it where it is optional)"),
    S("spk2utt", "empty line", BLANK),
    E("spk2utt", "wrong number of fields", "utterance 'extra' of speaker 'b' is not in utt2spk", 2),
    E("spk2utt", "duplicate key", "duplicate key 'b' (first on line 2)", 3),
    E("spk2utt", "unsorted keys", "not sorted: 'a' after 'b' (use `LC_ALL=C sort`)", 2),
    S("spk2utt", "CRLF endings", CRLF),
    E("spk2utt", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 2)", 2),
    E("spk2utt", "missing-key reference", "utterance 'a9' of speaker 'a' is not in utt2spk", 1),
    # utt2dur -----------------------------------------------------------------------------------------
    E("utt2dur", "empty file", "the file is empty (fill it, or remove it where it is optional)"),
    S("utt2dur", "empty line", BLANK),
    E("utt2dur", "wrong number of fields", "expected `utt seconds`, found 3 fields", 2),
    E("utt2dur", "duplicate key", "duplicate key 'a2' (first on line 2)", 3),
    E("utt2dur", "unsorted keys", "not sorted: 'b1' after 'b2' (use `LC_ALL=C sort`)", 2),
    S("utt2dur", "CRLF endings", CRLF),
    E("utt2dur", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E("utt2dur", "NaN", "duration 'nan' is not a finite number", 2),
    E("utt2dur", "inf", "duration 'inf' is not a finite number", 2),
    E("utt2dur", "huge number", "utt2dur says 1e+300 s; 'a2' is 1.2000 s", 2),
    E("utt2dur", "negative number", "duration '-1' must be positive", 2),
    E("utt2dur", "missing-key reference", "utterance 'a9' is not in utt2spk", 2),
    # spk2gender --------------------------------------------------------------------------------------
    E("spk2gender", "empty file", "the file is empty (fill it, or remove it where it is optional)"),
    S("spk2gender", "empty line", BLANK),
    E("spk2gender", "wrong number of fields", "expected `speaker m|f`, found 'b f extra'", 2),
    E("spk2gender", "duplicate key", "duplicate key 'b' (first on line 2)", 3),
    E("spk2gender", "unsorted keys", "not sorted: 'a' after 'b' (use `LC_ALL=C sort`)", 2),
    S("spk2gender", "CRLF endings", CRLF),
    E("spk2gender", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 2)", 2),
    E("spk2gender", "missing-key reference", "speaker 'z' is not in utt2spk", 2),
    # trials, Kaldi form (score) ---------------------------------------------------------------------
    E("trials (Kaldi form)", "empty file", "the trial list is empty"),
    S("trials (Kaldi form)", "empty line", BLANK),
    E(
        "trials (Kaldi form)",
        "wrong number of fields",
        "expected `enroll test target|nontarget`, `1|0 enroll test` or `enroll test`",
        2,
    ),
    A("trials (Kaldi form)", "duplicate key", "`score` scores every line; `report` counts a repeat as listed (below)"),
    S("trials (Kaldi form)", "unsorted keys", ORDER),
    S("trials (Kaldi form)", "CRLF endings", CRLF),
    E("trials (Kaldi form)", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E(
        "trials (Kaldi form)",
        "missing-key reference",
        "1 of 4 trials name embeddings that are missing (line 2: z9); pass --allow-missing to skip them",
    ),
    # trials, VoxCeleb form (score) ------------------------------------------------------------------
    E("trials (VoxCeleb form)", "empty file", "the trial list is empty"),
    S("trials (VoxCeleb form)", "empty line", BLANK),
    E(
        "trials (VoxCeleb form)",
        "wrong number of fields",
        "expected `enroll test target|nontarget`, `1|0 enroll test` or `enroll test`",
        2,
    ),
    A("trials (VoxCeleb form)", "duplicate key", "`score` scores every line; `report` counts a repeat as listed"),
    S("trials (VoxCeleb form)", "unsorted keys", ORDER),
    S("trials (VoxCeleb form)", "CRLF endings", CRLF),
    E("trials (VoxCeleb form)", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 2)", 2),
    E("trials (VoxCeleb form)", "NaN", "expected `enroll test target|nontarget`, `1|0 enroll test`", 2),
    E("trials (VoxCeleb form)", "negative number", "expected `enroll test target|nontarget`, `1|0 enroll test`", 2),
    E("trials (VoxCeleb form)", "missing-key reference", "1 of 4 trials name embeddings that are missing (line 2: z9)"),
    # trials, evaluated by report ------------------------------------------------------------------
    A("trials, evaluated", "duplicate key", "counted as listed, as Kaldi's compute-eer does, with a warning"),
    E(
        "trials, evaluated",
        "repeat with the opposite label",
        "trial a1 b1 is listed twice with opposite labels (first on line 2)",
        3,
    ),
    S("trials, evaluated", "unsorted keys", ORDER),
    E("trials, evaluated", "missing-key reference", "1 trials have no score in"),
    # score files (report) ------------------------------------------------------------------------------
    E("score file", "empty file", "the score file is empty"),
    S("score file", "empty line", BLANK),
    E(
        "score file",
        "wrong number of fields",
        "expected `enroll test score` (or `enroll test score target|nontarget`), found 4 fields",
        2,
    ),
    S("score file", "duplicate key", "a repeated line is the same score: `score` writes one for each repeated trial"),
    E("score file", "repeat with another score", "trial a1 b1 is scored twice, differently (first on line 2)", 3),
    S("score file", "unsorted keys", ORDER),
    S("score file", "CRLF endings", CRLF),
    E("score file", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E("score file", "NaN", "score 'nan' is not a finite number", 2),
    E("score file", "inf", "score 'inf' is not a finite number", 2),
    A("score file", "huge number", "any finite score is a score: the metrics are computed from it as given"),
    A("score file", "negative number", "scores (and LLRs) may be negative"),
    E("score file", "missing-key reference", "1 trials have no score in"),
    E("held-out scores for --calibrate", "NaN", "score 'nan' is not a finite number", 2),
    E(
        "held-out scores for --calibrate",
        "repeat with another score",
        "trial a1 b1 is scored twice, differently (first on line 2)",
        3,
    ),
    E("held-out scores for --calibrate", "missing-key reference", "1 trials have no score in"),
    # vector archives (score) -------------------------------------------------------------------------
    E("wav archive", "empty file", "no utterances to extract"),
    E("wav archive", "truncated", "entry 'a2' is cut short: 16037 of 16044 bytes (a truncated archive?)"),
    E("wav archive", "not a WAV", "entry 'a1' is not a WAV (features, or a truncated archive?)"),
    E("vector scp", "empty file", "no vectors in the archive"),
    E("vector scp", "empty line", "empty line (an scp has none; Kaldi's readers refuse them too)", 2),
    E("vector scp", "wrong number of fields", "expected `key archive:offset`, found 3 fields", 2),
    E("vector scp", "duplicate key", "duplicate key 'a2' (first on line 2)", 3),
    S("vector scp", "unsorted keys", "embeddings are looked up by key"),
    S("vector scp", "CRLF endings", CRLF),
    E("vector scp", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E("vector scp", "missing-key reference", "cannot read archive (truncated or not a Kaldi archive?)"),
    E("vector ark, binary", "empty file", "no vectors in the archive"),
    E("vector ark, binary", "truncated", "cannot read archive (truncated or not a Kaldi archive?)"),
    E("vector ark, text", "empty file", "no vectors in the archive"),
    S("vector ark, text", "empty line", BLANK),
    E("vector ark, text", "duplicate key", "duplicate key 'a2'"),
    S("vector ark, text", "unsorted keys", "embeddings are looked up by key"),
    S("vector ark, text", "CRLF endings", CRLF),
    E("vector ark, text", "wrong number of fields", "vector 'a2' does not end with `]` on its line (truncated?)", 2),
    E("vector ark, text", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E("vector ark, text", "NaN", "1 vector(s) hold NaN or inf and cannot be scored: a2"),
    E("vector ark, text", "inf", "1 vector(s) hold NaN or inf and cannot be scored: a2"),
    E("vector ark, text", "huge number", "1e+300 does not fit a 32-bit float", 2),
    A("vector ark, text", "negative number", "embedding values may be negative"),
    E("vector ark, text", "truncated", "vector 'b1' does not end with `]` on its line (truncated?)", 3),
    # configuration (train) -----------------------------------------------------------------------------
    A("config YAML", "empty file", "an empty configuration is the defaults, as no --config"),
    S("config YAML", "empty line", "YAML ignores blank lines"),
    E("config YAML", "duplicate key", "not valid YAML: key 'training' given twice (first on line 2)", 3),
    S("config YAML", "CRLF endings", "YAML reads CRLF as a line end"),
    E("config YAML", "bytes not UTF-8", "not UTF-8 text (byte 0xff)", 3),
    E("config YAML", "NaN", "training.epochs must be int, not 'nan'"),
    E("config YAML", "inf", "training.epochs must be int, not 'inf'"),
    E("config YAML", "huge number", "training.epochs must be int, not '1e300'"),
    E("config YAML", "YAML NaN", "training.epochs must be int, not nan"),
    E("config YAML", "negative probability", "augment.noise_prob must be 0<=x<=1, not -0.5"),
    E("config YAML", "negative number", "training.epochs must be x>=1, not -1"),
    E("config YAML", "missing-key reference", "unknown loss 'no_such_loss'"),
    # PLDA model, cohort (score) ------------------------------------------------------------------------
    E("PLDA model", "empty file", "cannot read the PLDA model (truncated?)"),
    E("PLDA model", "truncated", "cannot read the PLDA model (truncated?)"),
    E("PLDA model", "NaN", "PLDA model: between holds NaN or inf"),
    E("cohort archive", "duplicate key", "duplicate key 'c1' (first on line 2)", 3),
    E("cohort archive", "missing-key reference", "cannot read archive (truncated or not a Kaldi archive?)"),
    E("cohort utt2spk", "empty file", "the file is empty"),
    E("cohort utt2spk", "wrong number of fields", "expected 2 fields, found 3", 2),
    E("cohort utt2spk", "duplicate key", "duplicate key 'c1' (first on line 2)", 3),
    S("cohort utt2spk", "unsorted keys", "speakers are looked up by key"),
    S("cohort utt2spk", "CRLF endings", CRLF),
    E("cohort utt2spk", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 3)", 2),
    E("cohort utt2spk", "missing-key reference", "1 of the 6 cohort embeddings have no speaker in utt2spk (e.g. c2)"),
    # calibration file (verify) ---------------------------------------------------------------------------
    E("calibration file", "empty file", "the calibration file is not valid JSON: Expecting value (column 1)", 1),
    S("calibration file", "empty line", "JSON ignores white space between values"),
    E("calibration file", "duplicate key", "the calibration file: key 'format' given twice"),
    S("calibration file", "CRLF endings", "JSON ignores white space between values"),
    E("calibration file", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 1)", 2),
    E("calibration file", "binary garbage", "not UTF-8 text (byte 0x8b at column 2)", 1),
    E("calibration file", "truncated", "the calibration file is not valid JSON: "),
    E("calibration file", "NaN", "the calibration file is not valid JSON: Expecting value (column 13)", 9),
    E("calibration file", "JSON NaN", "the calibration file: NaN is not a finite number"),
    E("calibration file", "number that overflows", "the calibration file: 1e999 is not a finite number"),
    A("calibration file", "huge number", "any finite offset is an offset: the LLR is as the file says"),
    A("calibration file", "negative number", "offsets and weights may be negative"),
    E("calibration file", "missing field", "malformed calibration file: no 'weights'"),
    E("calibration file", "field of the wrong type", "malformed calibration file: 'weights' must be a list of numbers"),
    E("calibration file", "unknown field", "malformed calibration file: unknown field 'scale'"),
    E("calibration file", "another format", "not a calibration file written by `spkverif report --save-calibration`"),
    E("calibration file", "unknown quality measure", "unknown quality measure 'loudness'"),
    E(
        "calibration file",
        "rate outside (0, 1]",
        "malformed calibration file: 'fa_thresholds' must be a list of [rate, LLR] pairs with rates in (0, 1]",
    ),
    E("calibration file", "missing-key reference", "calibrated for model 0ther"),
    # verify pairs (verify) ------------------------------------------------------------------------------
    E("verify pairs", "empty file", "the pairs file is empty"),
    S("verify pairs", "empty line", BLANK),
    E("verify pairs", "wrong number of fields", "extra: no such audio file"),
    A("verify pairs", "duplicate key", "`verify` answers every line it is given, in order"),
    A("verify pairs", "unsorted keys", "`verify` answers every line it is given, in order"),
    S("verify pairs", "CRLF endings", CRLF),
    E("verify pairs", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column", 2),
    E("verify pairs", "missing-key reference", "{root}/absent.wav: no such audio file"),
    # ONNX model (extract) --------------------------------------------------------------------------------
    E("ONNX model", "empty file", "not a readable checkpoint: Ran out of input"),
    E("ONNX model", "truncated", "not an ONNX model onnxruntime can run: "),
    E("ONNX model", "no spkverif.json", "no spkverif.json metadata: not a model exported by `spkverif export`"),
    E(
        "ONNX model",
        "spkverif.json not JSON",
        "spkverif.json metadata is not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        1,
    ),
    E("ONNX model", "spkverif.json lacks a key", "spkverif.json metadata lacks min_samples"),
    E(
        "ONNX model",
        "spkverif.json value of the wrong type",
        "spkverif.json metadata: sample_rate must be a positive whole number of Hz, not '16k'",
    ),
    # shards.list (train) ----------------------------------------------------------------------------------
    E("shards.list", "empty file", "no shards listed"),
    S("shards.list", "empty line", BLANK),
    E("shards.list", "wrong number of fields", "expected `path utterances bytes`", 2),
    E("shards.list", "duplicate key", "shard {root}/tars/shard-000001.tar is listed twice (first on line 2)", 3),
    A("shards.list", "unsorted keys", "shards are read in the order listed: another order is another valid order"),
    S("shards.list", "CRLF endings", CRLF),
    E("shards.list", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column", 2),
    E("shards.list", "NaN", "expected `path utterances bytes`", 2),
    E("shards.list", "negative number", "expected `path utterances bytes`", 2),
    E("shards.list", "missing-key reference", "shard {root}/tars/absent.tar does not exist", 2),
    E(
        "shards.list",
        "truncated shard",
        "shard {root}/tars/shard-000001.tar is truncated or damaged: 40960 bytes, not 81920",
        2,
    ),
    # vox1_meta.csv (prepare voxceleb1) -------------------------------------------------------------------
    E("vox1_meta.csv", "empty file", "no speakers in the metadata file"),
    S("vox1_meta.csv", "empty line", BLANK),
    E("vox1_meta.csv", "wrong number of fields", "expected `id  name  gender  nationality  dev|test`", 2),
    E("vox1_meta.csv", "missing column", "expected `id  name  gender  nationality  dev|test`", 2),
    E("vox1_meta.csv", "duplicate key", "duplicate key 'id10001' (first on line 2)", 3),
    S("vox1_meta.csv", "unsorted keys", "speakers are looked up by id"),
    S("vox1_meta.csv", "CRLF endings", "the line end is stripped before the fields are split"),
    E("vox1_meta.csv", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 8)", 2),
    E("vox1_meta.csv", "binary garbage", "not UTF-8 text (byte 0x8b at column 2)", 1),
    A(
        "vox1_meta.csv",
        "missing-key reference",
        "speakers listed without audio, and with audio but not listed, are named in warnings; the split of the "
        "unlisted falls back to the official test ids",
    ),
    # rir_list (prepare rirs) -------------------------------------------------------------------------------
    S("rir_list", "empty line", BLANK),
    E("rir_list", "wrong number of fields", "expected `--option value ... <file>` with one file", 2),
    E(
        "rir_list",
        "duplicate key",
        "'simulated_rirs/smallroom/Room001/Room001-00002.wav' is listed twice (first on line 2)",
        3,
    ),
    S("rir_list", "unsorted keys", "files are looked up by path"),
    S("rir_list", "CRLF endings", "a CR is white space to the line splitter (shlex)"),
    E("rir_list", "bytes not UTF-8", "not UTF-8 text (byte 0xff at column 9)", 2),
    E("rir_list", "empty file", "the list names no file"),
    A("rir_list", "missing-key reference", "a listed file that is absent is named in a warning and counted"),
    E("rir_list", "unbalanced quote", "cannot split the line: No closing quotation", 2),
    E("rir_list", "option without a value", "option --gain has no value", 2),
]


def _corrupt_plda_nan(path: Path, kind: FileType) -> None:
    model = PldaModel.load(path)
    model.between[0, 0] = np.nan
    model.save(path)


def _edit_json(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path, FileType], None]:
    def corrupt(path: Path, kind: FileType) -> None:
        payload = json.loads(path.read_text())
        edit(payload)
        path.write_text(json.dumps(payload, indent=2))

    return corrupt


def _onnx_metadata(edit: Callable[[dict[str, str]], dict[str, str]]) -> Callable[[Path, FileType], None]:
    """Rewrite the ONNX file's metadata properties (spkverif.json among them)."""

    def corrupt(path: Path, kind: FileType) -> None:
        import onnx

        model = onnx.load(str(path))
        properties = edit({entry.key: entry.value for entry in model.metadata_props})
        del model.metadata_props[:]
        for key, value in properties.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(path))

    return corrupt


def _metadata(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, str]], dict[str, str]]:
    def change(properties: dict[str, str]) -> dict[str, str]:
        metadata = json.loads(properties["spkverif.json"])
        edit(metadata)
        return {**properties, "spkverif.json": json.dumps(metadata)}

    return change


def _garbage(path: Path, kind: FileType) -> None:
    path.write_bytes(b"\x1f\x8b\x08\x00" + np.random.default_rng(0).bytes(200))


def _truncate_shard(path: Path, kind: FileType) -> None:
    shard = Path(_lines(path)[1].split()[0].decode())
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


SPECIAL: dict[tuple[str, str], Callable[[Path, FileType], None]] = {
    ("calibration file", "binary garbage"): _garbage,
    ("calibration file", "JSON NaN"): _number("NaN"),
    ("calibration file", "number that overflows"): _number("1e999"),
    ("calibration file", "missing field"): _edit_json(lambda payload: payload.pop("weights")),
    ("calibration file", "field of the wrong type"): _edit_json(lambda payload: payload.update(weights="4")),
    ("calibration file", "unknown field"): _edit_json(lambda payload: payload.update(scale=1.0)),
    ("calibration file", "another format"): _edit_json(lambda payload: payload.update(format="other")),
    ("calibration file", "unknown quality measure"): _edit_json(
        lambda payload: payload.update(measures=["loudness"], weights=[4.0, 1.0])
    ),
    ("calibration file", "rate outside (0, 1]"): _edit_json(
        lambda payload: payload["fa_thresholds"][0].__setitem__(0, 2.0)
    ),
    ("ONNX model", "no spkverif.json"): _onnx_metadata(lambda properties: {}),
    ("ONNX model", "spkverif.json not JSON"): _onnx_metadata(lambda properties: {"spkverif.json": "{model: x"}),
    ("ONNX model", "spkverif.json lacks a key"): _onnx_metadata(
        _metadata(lambda metadata: metadata.pop("min_samples"))
    ),
    ("ONNX model", "spkverif.json value of the wrong type"): _onnx_metadata(
        _metadata(lambda metadata: metadata.update(sample_rate="16k"))
    ),
    ("shards.list", "truncated shard"): _truncate_shard,
    ("vox1_meta.csv", "binary garbage"): _garbage,
    ("vox1_meta.csv", "missing column"): _edit_lines(
        lambda lines: [lines[0], lines[1].rsplit(b"\t", 1)[0] + b"\n", *lines[2:]]
    ),
    ("vox1_meta.csv", "unsorted keys"): _edit_lines(lambda lines: [lines[0], *lines[:0:-1]]),
    ("rir_list", "unbalanced quote"): _edit_lines(
        lambda lines: [lines[0], lines[1].rstrip(b"\n") + b' "\n', *lines[2:]]
    ),
    ("rir_list", "option without a value"): _edit_lines(
        lambda lines: [lines[0], lines[1].rstrip(b"\n") + b" --gain\n", *lines[2:]]
    ),
    ("PLDA model", "NaN"): _corrupt_plda_nan,
    ("trials, evaluated", "repeat with the opposite label"): _edit_lines(
        lambda lines: [*lines[:2], lines[1].replace(b"nontarget", b"target"), *lines[2:]]
    ),
    ("score file", "repeat with another score"): _edit_lines(
        lambda lines: [*lines[:2], lines[1].replace(b"0.1", b"0.2"), *lines[2:]]
    ),
    ("held-out scores for --calibrate", "repeat with another score"): _edit_lines(
        lambda lines: [*lines[:2], lines[1].replace(b"0.1", b"0.2"), *lines[2:]]
    ),
    ("wav archive", "not a WAV"): lambda path, kind: kaldiio.save_ark(str(path), {"a1": np.zeros((3, 4), np.float32)}),
    ("segments", "negative start"): lambda path, kind: _set_field(path, 2, 2, "-1"),
    ("config YAML", "YAML NaN"): _number(".nan"),
    ("config YAML", "negative probability"): lambda path, kind: path.write_text(
        path.read_text() + "augment:\n  noise_prob: -0.5\n"
    ),
    ("cohort archive", "missing-key reference"): lambda path, kind: path.write_text(
        path.read_text().replace("cohort.ark", "absent.ark", 1)
    ),
}


# The test --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    build_world(root)
    shutil.copy(root / "scores", root / "clean_scores")
    return root


def _run(kind: FileType, root: Path, out: Path) -> tuple[Any, str]:
    args = [part.replace("{root}", str(root)).replace(OUT, str(out)) for part in kind.command]
    out.mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    if kind.output == "stdout":
        output = result.stdout
    elif kind.output == "report.json":
        rows = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else []
        output = json.dumps([{k: v for k, v in row.items() if k not in ("scores", "trials_file")} for row in rows])
    elif kind.output:
        output = (out / kind.output).read_text() if (out / kind.output).is_file() else ""
    else:
        output = ""
    return result, output.replace(str(root), "ROOT").replace(str(out), "OUT")


def _canonical(kind: FileType, output: str) -> str:
    """A score file's lines as a set: it follows its trial list's order, which may be shuffled."""
    return "\n".join(sorted(output.splitlines())) if kind.output == "scores" else output


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_corruption(case: Case, world: Path, tmp_path: Path) -> None:
    kind = TYPES[case.file]
    clean, expected = _run(kind, world, tmp_path / "clean")
    assert clean.exit_code == 0, (clean.stderr, clean.exception)
    root = tmp_path / "world"
    shutil.copytree(world, root, symlinks=True)
    for name in (
        "data/wav.scp",
        "segdata/wav.scp",
        "emb.scp",
        "cohort.scp",
        "pairs",
        "shards/shards.list",
        "shards/wav.scp",
    ):  # keep the copies' own paths
        (root / name).write_text((root / name).read_text().replace(str(world), str(root)))
    target = root / kind.path
    corrupt = SPECIAL.get((case.file, case.corruption)) or CORRUPTIONS[case.corruption]
    corrupt(target, kind)
    result, output = _run(kind, root, tmp_path / "corrupt")
    assert isinstance(result.exception, SystemExit | None), f"a bug, not a user error: {result.exception!r}"
    assert "Traceback" not in result.stderr
    if case.expect == "error":
        assert result.exit_code == 1, (result.stdout, result.stderr)
        case = dataclasses.replace(case, message=case.message.replace("{root}", str(root)))
        location = f"{target}:{case.line}" if case.line is not None else None
        stage = kind.command[0]
        lines = result.stderr.strip().splitlines()
        if stage == "validate":
            assert lines[-1].startswith("spkverif validate: error: ") and lines[-1].endswith("problem(s) found")
            wanted = f"{location}: {case.message}" if location else case.message
            assert any(wanted in line for line in lines), result.stderr
        else:
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith(f"spkverif {stage}: error: "), lines[0]
            if location:
                assert f": error: {location}: {case.message}" in lines[0], lines[0]
            else:
                assert case.message in lines[0], lines[0]
    else:
        assert result.exit_code == 0, result.stderr
        if case.expect == "same":
            assert _canonical(kind, output) == _canonical(kind, expected)
        else:
            numbers = [float(line.split()[-1]) for line in output.splitlines()] if kind.output == "scores" else []
            assert all(np.isfinite(numbers))
            if kind.output == "report.json":
                row = json.loads(output)[0]
                assert all(np.isfinite(row[key]) for key in ("eer", "cllr", "min_dcf_0.01"))


def test_a_binary_archive_cut_anywhere_is_an_error_or_a_shorter_archive(world: Path, tmp_path: Path) -> None:
    """Cut at every byte, a vector archive reads as an error or as its first entries exactly (a cut between
    entries is a shorter archive to any reader); never as a different vector."""
    from spkverif.base.errors import SpkverifError
    from spkverif.io.specifiers import load_vectors

    keys, vectors = load_vectors(f"ark:{world / 'emb.ark'}")
    data = (world / "emb.ark").read_bytes()
    (tmp_path / "cut.scp").write_text(
        (world / "emb.scp").read_text().replace(str(world / "emb.ark"), str(tmp_path / "cut.ark"))
    )
    outcomes: dict[str, set] = {"ark": set(), "scp": set()}
    for length in range(1, len(data)):
        (tmp_path / "cut.ark").write_bytes(data[:length])
        for kind in outcomes:
            try:
                found_keys, found = load_vectors(f"{kind}:{tmp_path / f'cut.{kind}'}")
            except SpkverifError:
                outcomes[kind].add("error")
                continue
            assert found_keys == keys[: len(found_keys)]
            np.testing.assert_array_equal(found, vectors[: len(found_keys)])
            outcomes[kind].add(len(found_keys))
    assert outcomes == {"ark": {"error", 1, 2, 3}, "scp": {"error"}}


def test_a_wav_archive_cut_anywhere_is_an_error_or_a_shorter_archive(world: Path, tmp_path: Path) -> None:
    from spkverif.base.errors import SpkverifError
    from spkverif.io.audio import read_wav_ark

    whole = [(key, samples) for key, samples, _ in read_wav_ark(str(world / "wav.ark"))]
    data = (world / "wav.ark").read_bytes()
    for length in range(1, len(data), 37):
        (tmp_path / "cut.ark").write_bytes(data[:length])
        try:
            found = [(key, samples) for key, samples, _ in read_wav_ark(str(tmp_path / "cut.ark"))]
        except SpkverifError:
            continue
        for (key, samples), (expected_key, expected) in zip(found, whole, strict=False):
            assert key == expected_key
            np.testing.assert_array_equal(samples, expected)


# The table in docs/corruption.md ---------------------------------------------------------------------


def _result(case: Case) -> str:
    """A case's result cell: the error line (FILE for the corrupted file), or `same`/`accepted` and why."""
    if case.expect != "error":
        return f"{case.expect} ({case.note})"
    where = "FILE" if case.line is None else f"FILE:{case.line}"
    message = f"{where}: {case.message.replace('{root}', 'ROOT')}"
    return f"`` {message} ``" if "`" in message else f"`{message}`"


# Shorter names for the table's corruption column.
SHORT = {
    "wrong number of fields": "field count",
    "bytes not UTF-8": "not UTF-8",
    "CRLF endings": "CRLF",
    "unsorted keys": "unsorted",
}


def render_table(cases: list[Case] = CASES) -> str:
    """The corruption table, file type x corruption -> result, as markdown; a result of two
    rows or more is written once below the table and referred to by number."""
    results = [_result(case) for case in cases]
    counts = Counter(results)
    shared = list(dict.fromkeys(result for result in results if counts[result] >= 2))
    lines = ["|file type (stage)|corruption|result|", "|---|---|---|"]
    previous = None
    for case, result in zip(cases, results, strict=True):
        kind = f"{case.file} ({TYPES[case.file].command[0]})"
        shown = "" if kind == previous else kind  # a file type is named on its first row only
        previous = kind
        if result in shared:
            result = f"see {shared.index(result) + 1}"
        corruption = SHORT.get(case.corruption, case.corruption)
        lines.append(f"|{shown}|{corruption}|{result.replace('|', '&#124;')}|")
    lines += ["", "Results shared by several rows:", ""]
    lines += [f"{i}. {result}" for i, result in enumerate(shared, 1)]
    return "\n".join(lines) + "\n"


def test_the_documented_table_is_the_tested_one() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    assert text.split(BEGIN, 1)[1].split(END, 1)[0].strip() == render_table().strip(), (
        "docs/corruption.md is out of date: python -m tests.test_corruption --write"
    )


def write_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{BEGIN}\n{render_table()}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_table()
    else:
        sys.stdout.write(render_table())
