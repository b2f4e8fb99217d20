"""The mini corpus: synthetic speakers from eSpeak NG, no download needed.

A speaker is a fixed voice identity: language voice x variant x base pitch x
pitch range x base rate. Each of its utterances says different text with the
rate and pitch jittered by up to 10%, then passes through an utterance-level
nuisance (a random EQ/low-pass "channel" and additive noise at 5-20 dB SNR)
and is resampled to 16 kHz. Everything is drawn from seeded generators, so the
same seed gives the same bytes.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile

from spkverif.base.errors import SpkverifError
from spkverif.base.progress import ProgressBar
from spkverif.base.workers import worker_pool
from spkverif.io.atomic import atomic_write
from spkverif.io.datadir import DataDir
from spkverif.io.trials import write_trials
from spkverif.stages.prepare.espeak import EspeakSynthesizer, espeak_variants
from spkverif.stages.prepare.trials import sampled_trials

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
LANGUAGES = (
    "af", "ca", "cs", "cy", "da", "de", "en", "en-us", "eo", "es", "et", "eu", "fi", "fr", "ga", "hr",
    "hu", "id", "is", "it", "la", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt", "ro", "sk", "sl",
    "sq", "sv", "sw", "tr", "vi",
)  # fmt: skip
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "ch", "tr", "pl")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_CODAS = ("", "", "", "n", "s", "r", "l", "m", "t")


@dataclass(frozen=True)
class VoiceIdentity:
    """What makes a synthetic speaker: fixed across all of its utterances."""

    language: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"


@dataclass(frozen=True)
class MiniOptions:
    num_speakers: int = 160
    num_test_speakers: int = 40
    utts_per_speaker: int = 12
    min_seconds: float = 2.0
    max_seconds: float = 6.0
    num_trials: int = 3000
    seed: int = 0
    jobs: int = 1


def sample_identities(rng: np.random.Generator, count: int, variants: list[str]) -> list[VoiceIdentity]:
    identities: list[VoiceIdentity] = []
    seen: set[VoiceIdentity] = set()
    while len(identities) < count:
        identity = VoiceIdentity(
            language=str(rng.choice(LANGUAGES)),
            variant=str(rng.choice(variants)),
            pitch=int(rng.integers(15, 86)),
            pitch_range=int(rng.integers(10, 91)),
            rate=int(rng.integers(130, 211)),
        )
        if identity not in seen:
            seen.add(identity)
            identities.append(identity)
    return identities


def pseudo_text(rng: np.random.Generator, words: int) -> str:
    """Pronounceable nonsense in Latin script: every language voice can read it."""
    out = []
    for _ in range(words):
        syllables = int(rng.integers(1, 4))
        out.append(
            "".join(
                str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) + str(rng.choice(_CODAS)) for _ in range(syllables)
            )
        )
    return " ".join(out) + "."


def _peaking_eq(frequency: float, gain_db: float, q: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    amplitude = 10 ** (gain_db / 40)
    omega = 2 * np.pi * frequency / rate
    alpha = np.sin(omega) / (2 * q)
    b = np.array([1 + alpha * amplitude, -2 * np.cos(omega), 1 - alpha * amplitude])
    a = np.array([1 + alpha / amplitude, -2 * np.cos(omega), 1 - alpha / amplitude])
    return b / a[0], a / a[0]


def random_channel(samples: np.ndarray, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Three random peaking filters (+-8 dB) and a Butterworth low-pass at 3-7.5 kHz."""
    out = samples
    for _ in range(3):
        b, a = _peaking_eq(float(rng.uniform(150, 5000)), float(rng.uniform(-8, 8)), float(rng.uniform(0.5, 2.0)), rate)
        out = scipy.signal.lfilter(b, a, out)
    cutoff = float(rng.uniform(3000, 7500))
    order = int(rng.integers(2, 7))
    sos = scipy.signal.butter(order, cutoff, btype="low", fs=rate, output="sos")
    return scipy.signal.sosfilt(sos, out)


def coloured_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """White, pink or brown noise, chosen at random, with unit power."""
    white = rng.standard_normal(length)
    colour = int(rng.integers(0, 3))
    if colour == 0:
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        frequencies = np.arange(len(spectrum), dtype=np.float64)
        frequencies[0] = 1.0
        spectrum /= frequencies ** (0.5 if colour == 1 else 1.0)
        noise = np.fft.irfft(spectrum, n=length)
    return noise / np.sqrt(np.mean(noise**2) + 1e-12)


def add_noise(samples: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    signal_power = np.mean(samples**2) + 1e-12
    noise = coloured_noise(rng, len(samples))
    return samples + noise * np.sqrt(signal_power / 10 ** (snr_db / 10))


def synthesize_utterance(
    synthesizer: EspeakSynthesizer, identity: VoiceIdentity, rng: np.random.Generator, options: MiniOptions
) -> np.ndarray:
    """One utterance of `identity` at 16 kHz, float32, nuisance applied."""
    import torch
    import torchaudio.functional

    seconds = float(rng.uniform(options.min_seconds, options.max_seconds))
    rate = round(identity.rate * rng.uniform(0.9, 1.1))
    pitch = int(np.clip(round(identity.pitch * rng.uniform(0.9, 1.1)), 0, 100))
    native = synthesizer.sample_rate
    wanted = int(seconds * native)
    speech = np.zeros(0, dtype=np.float64)
    words = max(4, int(seconds * 3))
    while len(speech) < wanted:
        spoken = synthesizer.synthesize(pseudo_text(rng, words), identity.voice, rate, pitch, identity.pitch_range)
        speech = np.concatenate([speech, spoken.astype(np.float64) / 32768.0])
        words = max(4, words // 2)
    lead = int(rng.uniform(0.0, 0.25) * native)
    speech = np.concatenate([np.zeros(lead), speech])[:wanted]
    speech = random_channel(speech, rng, native)
    speech = add_noise(speech, rng, float(rng.uniform(5.0, 20.0)))
    resampled = torchaudio.functional.resample(torch.from_numpy(speech.astype(np.float32)), native, SAMPLE_RATE)
    audio = resampled.numpy()
    peak = float(np.max(np.abs(audio))) or 1.0
    return (audio * (float(rng.uniform(0.3, 0.9)) / peak)).astype(np.float32)


def _fresh_worker() -> None:
    """Each speaker is synthesised in a fresh process with one thread.

    eSpeak NG keeps state between utterances (libc `rand`, echo buffers) that
    re-initialising does not clear, so a speaker's audio is only reproducible
    when the process has synthesised nothing else before it; torch's own thread
    pool would also fight the pool's processes for the cores.
    """
    import torch

    torch.set_num_threads(1)
    ctypes.CDLL(None).srand(1)


def _speaker_job(args: tuple[int, str, VoiceIdentity, MiniOptions, str]) -> list[tuple[str, str, float]]:
    index, speaker, identity, options, audio_dir = args
    synthesizer = EspeakSynthesizer.shared()
    rows = []
    directory = Path(audio_dir) / speaker
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(options.utts_per_speaker):
        rng = np.random.default_rng([options.seed, index, number])
        audio = synthesize_utterance(synthesizer, identity, rng, options)
        utt = f"{speaker}-{number + 1:04d}"
        path = directory / f"{utt}.wav"
        with atomic_write(path, "wb") as handle:
            soundfile.write(handle, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        rows.append((utt, str(path.resolve()), len(audio) / SAMPLE_RATE))
    return rows


def prepare_mini(out: str | Path, options: MiniOptions) -> None:
    """Synthesise the corpus into OUT/{audio,train,test}; test gets a balanced trial list."""
    if options.num_test_speakers < 2 or options.num_speakers - options.num_test_speakers < 2:
        raise SpkverifError("need at least 2 training and 2 test speakers")
    if options.utts_per_speaker < 2:
        raise SpkverifError("need at least 2 utterances per speaker")
    if not 0 < options.min_seconds <= options.max_seconds:
        raise SpkverifError("need 0 < --min-seconds <= --max-seconds")
    out = Path(out)
    identities = sample_identities(np.random.default_rng(options.seed), options.num_speakers, espeak_variants())
    speakers = [f"s{index + 1:04d}" for index in range(options.num_speakers)]
    jobs = [(i, speakers[i], identities[i], options, str(out / "audio")) for i in range(options.num_speakers)]
    results: list[list[tuple[str, str, float]]] = []
    import torchaudio.functional  # noqa: F401  (imported once here, inherited by every forked worker)

    with (
        ProgressBar(options.num_speakers, "prepare mini", unit="spk") as bar,
        worker_pool(options.jobs, "fork", setup=_fresh_worker, maxtasksperchild=1) as pool,
    ):
        for rows in pool.imap(_speaker_job, jobs):
            results.append(rows)
            bar.advance(1)
    num_train = options.num_speakers - options.num_test_speakers
    for name, chunk in (("train", slice(0, num_train)), ("test", slice(num_train, None))):
        rows = [row for speaker_rows in results[chunk] for row in speaker_rows]
        data = DataDir(
            wav_scp={utt: path for utt, path, _ in rows},
            utt2spk={utt: utt.split("-")[0] for utt, _, _ in rows},
            utt2dur={utt: seconds for utt, _, seconds in rows},
        )
        data.save(out / name)
        if name == "test":
            trials = sampled_trials(data.utt2spk, options.num_trials, np.random.default_rng([options.seed, 7]))
            write_trials(out / name / "trials", trials)
    with atomic_write(out / "voices.tsv") as handle:
        handle.write("speaker\tset\tlanguage\tvariant\tpitch\tpitch_range\trate\n")
        for index, (speaker, identity) in enumerate(zip(speakers, identities, strict=False)):
            subset = "train" if index < num_train else "test"
            handle.write(
                f"{speaker}\t{subset}\t{identity.language}\t{identity.variant}\t{identity.pitch}\t"
                f"{identity.pitch_range}\t{identity.rate}\n"
            )
    hours = sum(seconds for rows in results for _, _, seconds in rows) / 3600
    logger.info(
        "mini corpus in %s: %d train + %d test speakers, %d utterances, %.2f hours",
        out,
        num_train,
        options.num_test_speakers,
        options.num_speakers * options.utts_per_speaker,
        hours,
    )


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))
