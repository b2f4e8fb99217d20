"""Figure 3: extraction from wav.scp to an ark, spkverif beside a SpeechBrain EncoderClassifier loop and Resemblyzer.

The same utterances (crops of 4-8 s) are written as 16-bit WAV files and a
wav.scp; each contestant reads them, embeds them and writes a Kaldi ark:

- spkverif: the `extract` stage (`spkverif.stages.extract.extract`) on an `ecapa_tdnn`
  (C = 512) model file with random weights;
- SpeechBrain: `EncoderClassifier.encode_batch` one utterance at a time (the
  loop of its speaker-verification recipes) over its `ECAPA_TDNN` of the same
  size, random weights, behind its `Fbank` and sentence mean normalisation;
- Resemblyzer: `preprocess_wav` (its voice-activity trimming) and
  `VoiceEncoder.embed_utterance` with the weights its wheel ships: a different
  network (3-layer LSTM on 40 mel bins), the off-the-shelf reference.

The figure is seconds of audio per second of wall time (1 / real-time factor),
the median over interleaved rounds of each contestant's rate.

Every contestant meets a length it has not seen in every round, as in a real
data set, where no two recordings have the same length: the network's
convolution kernels are built (oneDNN primitives, about 14 ms a new length for
ECAPA-TDNN C = 512 here) for each new input length, and its cache holds 1,024
of them, so utterances repeated round after round would measure a cache that a
real extraction never hits. Each (contestant, round) reads its own copy of the
utterances, each shortened by a different whole number of 10 ms frames (at
most 0.15 s of 4-8 s), the copies' offsets interleaved over the contestants.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import soundfile
import torch

from bench.audio import utterances, write_wav_scp
from bench.common import Row, Section
from bench.flops import forward_flops_per_second
from spkverif.base.progress import set_quiet
from spkverif.models import build_model, count_parameters
from spkverif.stages.extract import extract
from spkverif.training.checkpoint import model_payload, save_atomic


@dataclass
class ExtractSize:
    utterances: int = 100
    min_seconds: float = 4.0
    max_seconds: float = 8.0
    rounds: int = 5
    warmup_utterances: int = 4
    model_options: dict | None = None  # None: ecapa_tdnn at C = 512; the smoke test passes a tiny width


FRAME = 160  # 10 ms at 16 kHz: each copy of the utterances is this many samples shorter than the one before


def _read_scp(scp: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(maxsplit=1)) for line in scp.read_text().splitlines()]


def speechbrain_loop(scp: Path, ark: Path, classifier) -> None:
    """Read each utterance, encode it alone, write its embedding: EncoderClassifier as its recipes use it."""
    with kaldiio.WriteHelper(f"ark:{ark}") as writer, torch.no_grad():
        for key, path in _read_scp(scp):
            wave, _ = soundfile.read(path, dtype="float32")
            embedding = classifier.encode_batch(torch.from_numpy(wave).unsqueeze(0))
            writer(key, embedding.squeeze().numpy())


def resemblyzer_loop(scp: Path, ark: Path, encoder) -> None:
    from resemblyzer import preprocess_wav

    with kaldiio.WriteHelper(f"ark:{ark}") as writer:
        for key, path in _read_scp(scp):
            wave, rate = soundfile.read(path, dtype="float32")
            writer(key, encoder.embed_utterance(preprocess_wav(wave, source_sr=rate)))


def speechbrain_classifier(tiny: bool):
    from speechbrain.inference.speaker import EncoderClassifier
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    channels = [32] * 4 + [48] if tiny else [512] * 4 + [1536]
    network = ECAPA_TDNN(
        80,
        channels=channels,
        lin_neurons=32 if tiny else 192,
        attention_channels=8 if tiny else 128,
        se_channels=8 if tiny else 128,
    )
    modules = {
        "compute_features": Fbank(n_mels=80),
        "mean_var_norm": InputNormalization(norm_type="sentence", std_norm=False),
        "embedding_model": network,
    }
    return EncoderClassifier(modules=modules, hparams={}), count_parameters(network)


def run(size: ExtractSize) -> Section:
    section = Section("extraction")
    set_quiet(True)
    logging.getLogger("spkverif").setLevel(logging.WARNING)
    waves, source = utterances(size.utterances, size.min_seconds, size.max_seconds, seed=2)
    tiny = size.model_options is not None
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        warm_scp = write_wav_scp(waves[: size.warmup_utterances], root / "warm")
        torch.manual_seed(0)
        model = build_model("ecapa_tdnn", size.model_options or {})
        save_atomic(model_payload(model), root / "model.pt")
        section.lines.append(
            f"{size.utterances} utterances of {size.min_seconds:g}-{size.max_seconds:g} s "
            f"({sum(len(wave) for wave in waves) / 16000:.0f} s of audio; {source}), {torch.get_num_threads()} "
            f"threads, median of {size.rounds} interleaved rounds after a warm-up on {size.warmup_utterances}, "
            f"every round on lengths new to the process; "
            f"ecapa_tdnn {count_parameters(model) / 1e6:.2f}M parameters (spkverif)"
        )

        def ours(listing: Path, ark: Path) -> None:
            extract(root / "model.pt", f"scp:{listing}", f"ark:{ark}", device="cpu")

        contestants = {"ours": ours}
        peers = {}
        try:
            classifier, parameters = speechbrain_classifier(tiny)
        except ImportError as error:
            section.lines.append(f"SpeechBrain not installed ({error}); its row is left out")
        else:
            contestants["speechbrain"] = lambda listing, ark: speechbrain_loop(listing, ark, classifier)
            peers["speechbrain"] = "SpeechBrain EncoderClassifier loop (ECAPA_TDNN)"
            section.lines[0] += f", {parameters / 1e6:.2f}M (SpeechBrain ECAPA_TDNN)"
        try:
            from resemblyzer import VoiceEncoder

            encoder = VoiceEncoder("cpu", verbose=False)
        except ImportError as error:
            section.lines.append(f"Resemblyzer not installed ({error}); its row is left out")
        else:
            contestants["resemblyzer"] = lambda listing, ark: resemblyzer_loop(listing, ark, encoder)
            peers["resemblyzer"] = "Resemblyzer VoiceEncoder (its own LSTM, shipped weights)"
        for name, function in contestants.items():
            function(warm_scp, root / f"{name}-warm.ark")
        rates: dict[str, list[float]] = {name: [] for name in contestants}
        for round_index in range(size.rounds):
            for position, (name, function) in enumerate(contestants.items()):
                shortened = FRAME * (1 + round_index * len(contestants) + position)
                copy = [wave[: len(wave) - shortened] for wave in waves]
                listing = write_wav_scp(copy, root / f"{name}-{round_index}")
                started = time.perf_counter()
                function(listing, root / f"{name}.ark")
                elapsed = time.perf_counter() - started
                rates[name].append(sum(len(wave) for wave in copy) / 16000 / elapsed)
                shutil.rmtree(listing.parent)
        rate = {name: statistics.median(values) for name, values in rates.items()}
        written = {name: len(dict(kaldiio.load_ark(str(root / f"{name}.ark")))) for name in contestants}
        section.lines.append("embeddings written: " + ", ".join(f"{name} {count}" for name, count in written.items()))
    # the network's forward operations a second of audio at the mean length (SpeechBrain's is the same network)
    flops = forward_flops_per_second(model.encoder, 80, (size.min_seconds + size.max_seconds) / 2)
    for peer, peer_name in peers.items():
        section.rows.append(
            Row(
                "wav.scp → ark, seconds of audio per second",
                "× real time",
                rate["ours"],
                peer_name,
                rate[peer],
                higher_is_better=True,
                flops=flops,
                peer_flops=flops if peer == "speechbrain" else None,
            )
        )
    if not peers:
        section.rows.append(
            Row(
                "wav.scp → ark, seconds of audio per second",
                "× real time",
                rate["ours"],
                higher_is_better=True,
                flops=flops,
            )
        )
    for line in section.lines:
        print(line, flush=True)
    return section
