"""The `verify` stage: do these recordings hold the same speaker? A score, an LLR and a decision.

For each pair, the enrolment side is one or more recordings whose embeddings are
averaged (as Kaldi's `ivector-mean` averages a speaker's utterances) and the test
side one recording; the score is the cosine similarity, the same as
`score --method cosine`. With a calibration (`report --calibrate ...
--save-calibration`), the score becomes a log-likelihood ratio, and the decision
is "accept" when the LLR reaches the Bayes threshold at `--p-target` (or the
threshold that gave `--fa-rate` false accepts on the calibration's nontarget
trials). The calibration must have been fitted on scores of this very model:
its fingerprint is checked.

Output, one line per pair: `ENROLL TEST score [llr decision]`, ENROLL being the
enrolment files joined by commas.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from spkverif.backends.base import length_normalise
from spkverif.backends.calibration import Calibration, TrialQuality
from spkverif.backends.snorm import CohortMeans
from spkverif.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.io.audio import OPTION_ADVICE, AudioReader, is_pipe
from spkverif.io.tables import iter_lines
from spkverif.progress import ProgressBar
from spkverif.runtime import Embedder, check_finite_embedding, open_models

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
                raise SpkverifError("no such audio file", path)
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


def _decision_rule(
    calibration: Calibration | None, p_target: float | None, fa_rate: float | None
) -> tuple[float | None, str]:
    if p_target is not None and fa_rate is not None:
        raise SpkverifError("give --p-target or --fa-rate, not both")
    if calibration is None:
        if p_target is not None or fa_rate is not None:
            raise SpkverifError("--p-target and --fa-rate need --calibration: a threshold applies to calibrated LLRs")
        return None, "no calibration: scores only"
    if fa_rate is not None and not 0 < fa_rate < 1:
        raise SpkverifError(f"--fa-rate must be in (0, 1), not {fa_rate:g}")
    return calibration.threshold(p_target, fa_rate)


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
    device: str = "auto",
    out: str | Path | None = None,
    cohort: tuple[str | None, str | None] = (None, None),
    channel: int | None = None,
) -> list[dict[str, object]]:
    """Run the verify stage; returns one dict per pair (score, and llr and decision with a calibration).

    `model_path`: one model file of any kind, or several run as one ensemble
    (`spkverif.runtime.ensemble`; a calibration must have been made with the same files, in order).

    Writes `ENROLL TEST score [llr decision]` lines to `out` (atomically) or stdout.
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
    threshold, rule = _decision_rule(calibration, p_target, fa_rate)
    cohort_means = _cohort_means(calibration, *cohort)
    recordings = RecordingEmbedder(embedder, allow_resample, channel)
    results: list[dict[str, object]] = []
    with ProgressBar(len(pairs), "verify", unit="pair") as bar:
        for pair in pairs:
            enroll, test = recordings.enrolment(pair.enroll), recordings.side(pair.test)
            unit = length_normalise(np.stack([enroll.embedding, test.embedding]))
            result: dict[str, object] = {"enroll": ",".join(pair.enroll), "test": pair.test}
            result["score"] = float(unit[0] @ unit[1])
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
    logger.info("decision rule: %s%s", rule, "" if threshold is None else f" (accept when LLR >= {threshold:.3f})")
    if out is None:
        _write(results, sys.stdout)
    else:
        with atomic_write(out) as handle:
            _write(results, handle)
    return results


def _write(results: list[dict[str, object]], handle: TextIO) -> None:
    for result in results:
        fields = [str(result["enroll"]), str(result["test"]), f"{result['score']:.6f}"]
        if "llr" in result:
            fields += [f"{result['llr']:.4f}", str(result["decision"])]
        handle.write(" ".join(fields) + "\n")
