"""The `verify` stage: do these recordings hold the same speaker? A score, an LLR and a decision.

For each pair, the enrolment side is one or more recordings whose embeddings are
averaged (as Kaldi's `ivector-mean` averages a speaker's utterances) and the test
side one recording; the score is the cosine similarity of the two length-normalised
embeddings (-1 to 1; for an ensemble, of the models' concatenated normalised
embeddings), the same as `score --method cosine`. Three ways to decide:

- `--threshold T`: accept when the score is at least T (a threshold read off one's own
  labelled pairs, e.g. report's threshold at the EER or minDCF point);
- `--calibration FILE` (`report --calibrate ... --save-calibration`): the score becomes a
  log-likelihood ratio, accepted when it reaches the Bayes threshold at `--p-target`
  (default `APPLICATION_P_TARGET` = 0.5: an application where a claim is as likely to be
  genuine as not, so accept when LLR >= 0; evaluations such as VoxCeleb's use 0.01, which
  needs an LLR of 4.6) or the threshold that gave `--fa-rate` false accepts on the
  calibration's nontarget trials. The calibration must have been fitted on scores of
  this very model: its fingerprint is checked;
- neither: the score alone.

Output: a table with a header line (`# enroll test score [llr] [decision]`) and one line
per pair, ENROLL being the enrolment files joined by commas; or with `--json` one JSON
object per line (files, score and its kind, LLR, threshold, decision).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from spkverif.backends.base import length_normalise
from spkverif.backends.calibration import Calibration, TrialQuality
from spkverif.backends.snorm import CohortMeans
from spkverif.base.errors import SpkverifError
from spkverif.base.progress import ProgressBar
from spkverif.io.atomic import atomic_write
from spkverif.io.audio import OPTION_ADVICE, AudioReader, is_pipe
from spkverif.io.tables import iter_lines
from spkverif.runtime import DEVICE, Embedder, check_finite_embedding, open_models

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """Enrolment recordings (averaged) against one test recording."""

    enroll: tuple[str, ...]
    test: str


@dataclass
class Side:
    """An embedding (D,) before normalisation and the seconds of audio behind it."""

    embedding: np.ndarray
    seconds: float


def read_pairs(path: str | Path) -> list[Pair]:
    """Lines `ENROLL... TEST`: every field but the last is an enrolment recording, the last the test recording."""
    pairs = []
    for number, fields in iter_lines(path):
        if len(fields) < 2:
            raise SpkverifError("expected `enroll.wav [more enrolment files...] test.wav`", path, number)
        pairs.append(Pair(tuple(fields[:-1]), fields[-1]))
    if not pairs:
        raise SpkverifError("the pairs file is empty", path)
    return pairs


class RecordingEmbedder:
    """Embeds audio files once each, refusing audio shorter than the model accepts."""

    def __init__(self, embedder: Embedder, allow_resample: bool, channel: int | None = None):
        self.embedder = embedder
        self.allow_resample = allow_resample
        self.channel = channel
        self.warned: set[str] = set()
        self.cache: dict[str, Side] = {}

    def side(self, path: str) -> Side:
        if path not in self.cache:
            if not is_pipe(path) and not Path(path).is_file():
                missing = "is a directory, not an audio file" if Path(path).is_dir() else "no such audio file"
                raise SpkverifError(missing, path)
            reader = AudioReader(
                {path: path}, None, self.embedder.sample_rate, self.allow_resample, channel=self.channel,
                warned=self.warned, channel_advice=OPTION_ADVICE,
            )  # fmt: skip
            try:
                samples = reader.read(path)
            except SpkverifError as error:
                raise SpkverifError(error.message, path) from None
            rate, shortest = self.embedder.sample_rate, self.embedder.min_samples
            if len(samples) < shortest:
                raise SpkverifError(
                    f"{len(samples) / rate:.3f} s of audio is shorter than the model accepts ({shortest / rate:.3f} s)",
                    path,
                )
            embedding = self.embedder(samples[None, :])[0].astype(np.float64)
            check_finite_embedding(embedding, path)
            self.cache[path] = Side(embedding, len(samples) / rate)
        return self.cache[path]

    def enrolment(self, paths: tuple[str, ...]) -> Side:
        """The mean embedding of the enrolment recordings and their total duration."""
        sides = [self.side(path) for path in paths]
        return Side(np.mean([s.embedding for s in sides], axis=0), sum(s.seconds for s in sides))


APPLICATION_P_TARGET = 0.5
"""verify's prior of a target trial with a calibration: claims as likely genuine as not (LLR threshold 0)."""


def _decision_rule(
    calibration: Calibration | None, p_target: float | None, fa_rate: float | None, threshold: float | None
) -> tuple[float | None, str]:
    """The threshold and a sentence saying what it applies to; None: scores only."""
    if p_target is not None and fa_rate is not None:
        raise SpkverifError("give --p-target or --fa-rate, not both")
    if threshold is not None and calibration is not None:
        raise SpkverifError("give --threshold (on the score) or --calibration (an LLR threshold), not both")
    if calibration is None:
        if p_target is not None or fa_rate is not None:
            raise SpkverifError("--p-target and --fa-rate need --calibration: a threshold applies to calibrated LLRs")
        if threshold is not None:
            return threshold, f"cosine score threshold {threshold:g}"
        return None, "no calibration and no --threshold: scores only"
    if fa_rate is not None and not 0 < fa_rate < 1:
        raise SpkverifError(f"--fa-rate must be in (0, 1), not {fa_rate:g}")
    return calibration.threshold(APPLICATION_P_TARGET if p_target is None and fa_rate is None else p_target, fa_rate)


def _cohort_means(calibration: Calibration | None, cohort: str | None, utt2spk: str | None) -> CohortMeans | None:
    if calibration is None or not calibration.uses_cohort:
        if cohort is not None or utt2spk is not None:
            raise SpkverifError("--cohort is for a calibration with cohort measures (report --cohort)")
        return None
    if cohort is None:
        raise SpkverifError(
            "the calibration's quality measures include cohort means: pass the --cohort (and --cohort-utt2spk) "
            "it was fitted with"
        )
    assert calibration.cohort_top_n is not None
    return CohortMeans(cohort, utt2spk, calibration.cohort_top_n)


def verify(
    model_path: str | Path | Sequence[str | Path],
    pairs: list[Pair],
    calibration_path: str | Path | None = None,
    p_target: float | None = None,
    fa_rate: float | None = None,
    allow_resample: bool = False,
    device: str = DEVICE,
    out: str | Path | None = None,
    cohort: tuple[str | None, str | None] = (None, None),
    channel: int | None = None,
    threshold: float | None = None,
    as_json: bool = False,
) -> list[dict[str, object]]:
    """Run the verify stage; returns one dict per pair (score, and llr and decision with a calibration).

    `model_path`: one model file of any kind, or several run as one ensemble
    (`spkverif.runtime.ensemble`; a calibration must have been made with the same files, in order).

    Writes the table (or with `as_json` JSON lines) to `out` (atomically; `-` is stdout) or
    stdout. `threshold` decides on the cosine score without a calibration; with one, the
    decision is at `p_target` (default `APPLICATION_P_TARGET`) or `fa_rate`.
    A calibration with cohort measures (`report --cohort`) needs the same `cohort`
    (rspecifier, utt2spk or None) to compute each side's mean top-N cohort score.
    Raises `SpkverifError` for a bad model or calibration file (including one made
    for another model), unreadable audio, audio at another rate without
    `allow_resample`, audio shorter than the model's shortest input, or a cohort
    calibration without a cohort, a channel the audio lacks (`channel`: which channel of
    multi-channel audio to embed; None, channel 0 with a warning), and audio with a
    non-finite sample.
    """
    embedder = open_models(model_path, device)
    calibration = None
    if calibration_path is not None:
        calibration = Calibration.load(calibration_path, embedder.fingerprint)
    threshold, rule = _decision_rule(calibration, p_target, fa_rate, threshold)
    cohort_means = _cohort_means(calibration, *cohort)
    recordings = RecordingEmbedder(embedder, allow_resample, channel)
    results: list[dict[str, object]] = []
    with ProgressBar(len(pairs), "verify", unit="pair") as bar:
        for pair in pairs:
            enroll, test = recordings.enrolment(pair.enroll), recordings.side(pair.test)
            unit = length_normalise(np.stack([enroll.embedding, test.embedding]))
            result: dict[str, object] = {"enroll": ",".join(pair.enroll), "test": pair.test}
            result["score"] = float(unit[0] @ unit[1])
            if calibration is None and threshold is not None:
                result["decision"] = "accept" if result["score"] >= threshold else "reject"
            if calibration is not None and threshold is not None:
                sides = np.stack([enroll.embedding, test.embedding])
                quality = TrialQuality(
                    np.array([result["score"]]),
                    np.array([[enroll.seconds, test.seconds]]),
                    np.linalg.norm(sides, axis=1)[None, :],
                    None if cohort_means is None else cohort_means(sides)[None, :],
                )
                llr = float(calibration.llrs(quality)[0])
                result["llr"] = llr
                result["decision"] = "accept" if llr >= threshold else "reject"
            results.append(result)
            bar.advance(1)
    measure = "LLR" if calibration is not None else "score"
    logger.info("decision rule: %s%s", rule, "" if threshold is None else f" (accept when {measure} >= {threshold:g})")
    with atomic_write("-" if out is None else out) as handle:  # `-`: standard output
        if as_json:
            _write_json(results, handle, threshold)
        else:
            _write_table(results, handle)
    return results


def _write_table(results: list[dict[str, object]], handle: TextIO) -> None:
    """A header line naming the columns, then `ENROLL TEST score [llr] [decision]` per pair."""
    columns = ["enroll", "test", "score"] + ["llr"] * ("llr" in results[0]) + ["decision"] * ("decision" in results[0])
    handle.write("# " + " ".join(columns) + "\n")
    for result in results:
        fields = [str(result["enroll"]), str(result["test"]), f"{result['score']:.6f}"]
        if "llr" in result:
            fields.append(f"{result['llr']:.4f}")
        if "decision" in result:
            fields.append(str(result["decision"]))
        handle.write(" ".join(fields) + "\n")


def _write_json(results: list[dict[str, object]], handle: TextIO, threshold: float | None) -> None:
    """One JSON object per pair: enrolment files (a list), test file, score and its kind, LLR,
    threshold and what it applies to, decision (null where not asked for)."""
    for result in results:
        calibrated = "llr" in result
        record = {
            "enroll": str(result["enroll"]).split(","),
            "test": result["test"],
            "score": round(float(result["score"]), 6),  # type: ignore[arg-type]
            "score_kind": "cosine",
            "llr": round(float(result["llr"]), 4) if calibrated else None,  # type: ignore[arg-type]
            "threshold": threshold,
            "threshold_on": None if threshold is None else "llr" if calibrated else "score",
            "decision": result.get("decision"),
        }
        handle.write(json.dumps(record) + "\n")
