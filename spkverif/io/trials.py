"""Trial lists in the Kaldi form `enroll test target|nontarget` and the VoxCeleb form `1|0 enroll test`.

A list without labels (`enroll test`) is accepted for scoring; evaluation needs labels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spkverif.base.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.io.tables import iter_lines

logger = logging.getLogger(__name__)

_KALDI_LABELS = {"target": True, "nontarget": False}
_VOXCELEB_LABELS = {"1": True, "0": False}


@dataclass
class Trials:
    """Parallel arrays: enrolment key, test key, label (None when unlabelled), source line."""

    enroll: np.ndarray
    test: np.ndarray
    labels: np.ndarray | None
    lines: np.ndarray
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.enroll)

    def require_labels(self) -> np.ndarray:
        if self.labels is None:
            raise SpkverifError("trials have no target/nontarget labels", self.path)
        return self.labels

    def keys(self) -> set[str]:
        return set(self.enroll.tolist()) | set(self.test.tolist())


def read_trials(path: str | Path) -> Trials:
    """Read either form, detected per file from its first line; mixed forms are errors.

    The whole list is held, so repeats are seen: a trial listed twice with opposite
    labels is an error at its second line; listed twice with the same label, it is kept
    and counted as listed (as Kaldi's compute-eer and the VoxCeleb scoring scripts
    count every line), with a warning naming the first repeat and the count.
    """
    blocks = list(iter_trials(path))
    first: dict[tuple[str, str], tuple[int, bool | None]] = {}
    repeats: list[str] = []
    for block in blocks:
        labels = block.labels if block.labels is not None else [None] * len(block)
        for enroll, test, label, line in zip(block.enroll, block.test, labels, block.lines, strict=True):
            previous = first.setdefault((enroll, test), (int(line), label))
            if previous[0] == line:
                continue
            if previous[1] != label:
                raise SpkverifError(
                    f"trial {enroll} {test} is listed twice with opposite labels (first on line {previous[0]})",
                    path,
                    int(line),
                )
            repeats.append(f"line {line} repeats line {previous[0]}")
    if repeats:
        logger.warning("%s: %d trial(s) listed more than once, each counted as listed (%s)", path, len(repeats),
                       repeats[0])  # fmt: skip
    if len(blocks) == 1:
        return blocks[0]
    labels = [block.labels for block in blocks]
    return Trials(
        enroll=np.concatenate([block.enroll for block in blocks]),
        test=np.concatenate([block.test for block in blocks]),
        labels=None if labels[0] is None else np.concatenate(labels),
        lines=np.concatenate([block.lines for block in blocks]),
        path=Path(path),
    )


def iter_trials(path: str | Path, block_size: int = 1 << 22) -> Iterator[Trials]:
    """The trials in blocks of at most `block_size`, so a list of any length is read in bounded memory."""
    path = Path(path)
    enroll: list[str] = []
    test: list[str] = []
    labels: list[bool] = []
    lines: list[int] = []
    form: str | None = None

    def block() -> Trials:
        return Trials(
            enroll=np.array(enroll, dtype=object),
            test=np.array(test, dtype=object),
            labels=np.array(labels, dtype=bool) if form != "unlabelled" else None,
            lines=np.array(lines, dtype=np.int64),
            path=path,
        )

    for number, fields in iter_lines(path):
        line_form = _form_of(fields)
        if line_form is None:
            raise SpkverifError(
                "expected `enroll test target|nontarget`, `1|0 enroll test` or `enroll test`", path, number
            )
        if form is None:
            form = line_form
        elif line_form != form:
            raise SpkverifError(
                f"this line is in the {line_form} form but the file began in the {form} form", path, number
            )
        if form == "kaldi":
            enroll.append(fields[0])
            test.append(fields[1])
            labels.append(_KALDI_LABELS[fields[2]])
        elif form == "voxceleb":
            labels.append(_VOXCELEB_LABELS[fields[0]])
            enroll.append(fields[1])
            test.append(fields[2])
        else:
            enroll.append(fields[0])
            test.append(fields[1])
        lines.append(number)
        if len(lines) == block_size:
            yield block()
            enroll, test, labels, lines = [], [], [], []
    if lines:
        yield block()
    elif form is None:
        raise SpkverifError("the trial list is empty", path)


def _form_of(fields: list[str]) -> str | None:
    if len(fields) == 3 and fields[2] in _KALDI_LABELS:
        return "kaldi"
    if len(fields) == 3 and fields[0] in _VOXCELEB_LABELS:
        return "voxceleb"
    if len(fields) == 2:
        return "unlabelled"
    return None


def write_trials(path: str | Path, rows: Iterable[tuple[str, str, bool]]) -> None:
    """Write the Kaldi form atomically."""
    with atomic_write(path) as handle:
        for enroll, test, is_target in rows:
            handle.write(f"{enroll} {test} {'target' if is_target else 'nontarget'}\n")


def validate_trials(trials: Trials, known: set[str], what: str = "the data directory") -> list[SpkverifError]:
    """Trials naming utterances that `known` lacks, one problem per line at fault."""
    problems = []
    for enroll, test, line in zip(trials.enroll, trials.test, trials.lines, strict=False):
        for key in (enroll, test):
            if key not in known:
                problems.append(SpkverifError(f"{key!r} is not in {what}", trials.path, int(line)))
    return problems
