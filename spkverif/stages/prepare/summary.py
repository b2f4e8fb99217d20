"""What a `prepare` found, set against the published counts, as rich tables on stdout.

A corpus on disk is often incomplete (a download that stopped, a disk that
filled up); putting the counts found beside the official ones shows it at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from spkverif.base.progress import is_quiet
from spkverif.io.datadir import DataDir


@dataclass(frozen=True)
class Reference:
    """Published size of a set; None where nothing is published."""

    speakers: int | None = None
    utterances: int | None = None
    hours: float | None = None


@dataclass(frozen=True)
class SetCounts:
    """One data directory as written."""

    name: str
    speakers: int
    utterances: int
    hours: float
    left_out: int = 0
    reference: Reference | None = None
    note: str = ""

    @classmethod
    def of(
        cls, name: str, data: DataDir, left_out: int = 0, reference: Reference | None = None, note: str = ""
    ) -> SetCounts:
        hours = sum((data.utt2dur or {}).values()) / 3600
        return cls(name, len(data.speakers), len(data.utterances), hours, left_out, reference, note)


@dataclass(frozen=True)
class TrialCounts:
    """One trial list converted: lines read, trials written, and what was dropped."""

    name: str
    source: str
    target: str
    lines: int
    written: int
    missing_files: int
    official: int | None = None
    note: str = ""


@dataclass(frozen=True)
class DrawnTrials:
    """A trial list made from a data directory: how, trials, targets (and those across
    sessions: LibriSpeech's chapters), and the sha256 (hex) of the bytes written."""

    name: str
    how: str
    trials: int
    targets: int
    across_sessions: int
    sha256: str

    @property
    def nontargets(self) -> int:
        return self.trials - self.targets


def _against(found: int, expected: int | None) -> str:
    if expected is None:
        return f"{found:,}"
    colour = "green" if found == expected else "yellow"
    return f"[{colour}]{found:,}[/] / {expected:,}"


def _format_hours(hours: float) -> str:
    """Three or four significant figures: 2,360 / 11.2 / 1.23 / 0.0028."""
    if hours >= 100:
        return f"{hours:,.0f}"
    if hours >= 10:
        return f"{hours:.1f}"
    if hours >= 1:
        return f"{hours:.2f}"
    return f"{hours:.4f}".rstrip("0").rstrip(".")


def _hours(found: float, expected: float | None) -> str:
    if expected is None:
        return _format_hours(found)
    return (
        f"{_format_hours(found)} / ≈{expected:,.0f}" if expected >= 100 else f"{_format_hours(found)} / ≈{expected:g}"
    )


OFFICIAL_CAPTION = "found / official where published; left out: unreadable or duplicate files"


def sets_table(title: str, rows: list[SetCounts], caption: str = OFFICIAL_CAPTION) -> Table:
    """Speakers, utterances and hours found (/ official where published) per data directory."""
    table = Table(title=title, title_justify="left")
    for column in ("data dir", "speakers", "utterances", "hours", "left out"):
        table.add_column(column, justify="left" if column == "data dir" else "right")
    with_notes = any(row.note for row in rows)
    if with_notes:
        table.add_column("note")
    for row in rows:
        reference = row.reference or Reference()
        cells = [
            row.name,
            _against(row.speakers, reference.speakers),
            _against(row.utterances, reference.utterances),
            _hours(row.hours, reference.hours),
            f"[red]{row.left_out:,}[/]" if row.left_out else "0",
        ]
        table.add_row(*cells, *([row.note] if with_notes else []))
    table.caption = caption
    table.caption_justify = "left"
    return table


def trials_table(rows: list[TrialCounts]) -> Table:
    """Per trial list: lines read, trials written, trials dropped for naming files not found."""
    table = Table(title="trial lists", title_justify="left")
    numbers = ("lines", "written", "dropped", "missing files")
    for column in ("trials", "from", "to", *numbers, "note"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for row in rows:
        dropped = row.lines - row.written
        table.add_row(
            row.name,
            row.source,
            row.target,
            _against(row.lines, row.official),
            f"{row.written:,}",
            f"[red]{dropped:,}[/]" if dropped else "0",
            f"[red]{row.missing_files:,}[/]" if row.missing_files else "0",
            row.note,
        )
    return table


def drawn_trials_table(rows: list[DrawnTrials], sessions: str = "sessions") -> Table:
    """Per trial list made: how, trials, targets (across `sessions`), nontargets, sha256."""
    table = Table(title="trial lists", title_justify="left")
    numbers = ("trials", "target", f"across {sessions}", "nontarget")
    for column in ("list", "drawn", *numbers, "sha256"):
        table.add_column(
            column, justify="right" if column in numbers else "left", no_wrap=column in ("drawn", "sha256")
        )
    for row in rows:
        counts = (row.trials, row.targets, row.across_sessions, row.nontargets)
        table.add_row(row.name, row.how, *(f"{count:,}" for count in counts), row.sha256)
    return table


def print_tables(*tables: Table, console: Console | None = None) -> None:
    """To stdout, wide enough not to wrap when stdout is a file; nothing with --quiet."""
    if is_quiet():
        return
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    for table in tables:
        console.print(table)
