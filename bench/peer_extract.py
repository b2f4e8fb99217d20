"""Figure 3: extraction from wav.scp to an ark, spkverif beside a SpeechBrain EncoderClassifier loop and Resemblyzer.

The same utterances (crops of 4-8 s) are written as 16-bit WAV files and a
wav.scp; each contestant reads them, embeds them and writes a Kaldi ark:

- spkverif: the `extract` stage (`spkverif.extract.extract`) on an `ecapa_tdnn`
  (C = 512) model file with random weights;
- SpeechBrain: `EncoderClassifier.encode_batch` one utterance at a time (the
  loop of its speaker-verification recipes) over its `ECAPA_TDNN` of the same
  size, random weights, behind its `Fbank` and sentence mean normalisation;
- Resemblyzer: `preprocess_wav` (its voice-activity trimming) and
  `VoiceEncoder.embed_utterance` with the weights its wheel ships: a different
  network (3-layer LSTM on 40 mel bins), the off-the-shelf reference.

The figure is seconds of audio per second of wall time (1 / real-time factor).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import soundfile
import torch

from bench.audio import utterances, write_wav_scp
from bench.common import Row, Section, interleaved
from spkverif.extract import extract
from spkverif.models import build_model, count_parameters
from spkverif.progress import set_quiet
from spkverif.training.checkpoint import model_payload, save_atomic


@dataclass
class ExtractSize:
    utterances: int = 200
    min_seconds: float = 4.0
    max_seconds: float = 8.0
    rounds: int = 5
    warmup_utterances: int = 4
    model_options: dict | None = None  # None: ecapa_tdnn at C = 512; the smoke test passes a tiny width


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
    audio_seconds = sum(len(wave) for wave in waves) / 16000
    tiny = size.model_options is not None
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        scp = write_wav_scp(waves, root / "wav")
        warm_scp = root / "warm.scp"
        warm_scp.write_text("".join(line + "\n" for line in scp.read_text().splitlines()[: size.warmup_utterances]))
        torch.manual_seed(0)
        model = build_model("ecapa_tdnn", size.model_options or {})
        save_atomic(model_payload(model), root / "model.pt")
        section.lines.append(
            f"{size.utterances} utterances, {audio_seconds:.0f} s of audio ({source}), {torch.get_num_threads()} "
            f"threads, median of {size.rounds} interleaved rounds after a warm-up on {size.warmup_utterances}; "
            f"ecapa_tdnn {count_parameters(model) / 1e6:.2f}M parameters (spkverif)"
        )

        def ours(listing: Path) -> None:
            extract(root / "model.pt", f"scp:{listing}", f"ark:{root / 'ours.ark'}", device="cpu")

        contestants = {"ours": ours}
        peers = {}
        try:
            classifier, parameters = speechbrain_classifier(tiny)
        except ImportError as error:
            section.lines.append(f"SpeechBrain not installed ({error}); its row is left out")
        else:
            contestants["speechbrain"] = lambda listing: speechbrain_loop(listing, root / "sb.ark", classifier)
            peers["speechbrain"] = "SpeechBrain EncoderClassifier loop (ECAPA_TDNN)"
            section.lines[0] += f", {parameters / 1e6:.2f}M (SpeechBrain ECAPA_TDNN)"
        try:
            from resemblyzer import VoiceEncoder

            encoder = VoiceEncoder("cpu", verbose=False)
        except ImportError as error:
            section.lines.append(f"Resemblyzer not installed ({error}); its row is left out")
        else:
            contestants["resemblyzer"] = lambda listing: resemblyzer_loop(listing, root / "rz.ark", encoder)
            peers["resemblyzer"] = "Resemblyzer VoiceEncoder (its own LSTM, shipped weights)"
        for function in contestants.values():
            function(warm_scp)
        seconds = interleaved({name: (lambda f=f: f(scp)) for name, f in contestants.items()}, size.rounds, warmup=0)
        written = {
            name: len(dict(kaldiio.load_ark(str(root / ark))))
            for name, ark in (("ours", "ours.ark"), ("speechbrain", "sb.ark"), ("resemblyzer", "rz.ark"))
            if name in seconds
        }
        section.lines.append("embeddings written: " + ", ".join(f"{name} {count}" for name, count in written.items()))
    for peer, peer_name in peers.items():
        section.rows.append(
            Row(
                "wav.scp → ark, seconds of audio per second",
                "× real time",
                audio_seconds / seconds["ours"],
                peer_name,
                audio_seconds / seconds[peer],
                higher_is_better=True,
            )
        )
    if not peers:
        section.rows.append(
            Row(
                "wav.scp → ark, seconds of audio per second",
                "× real time",
                audio_seconds / seconds["ours"],
                higher_is_better=True,
            )
        )
    for line in section.lines:
        print(line, flush=True)
    return section
