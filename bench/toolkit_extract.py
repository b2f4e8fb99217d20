"""Figure 3b: extraction from wav.scp to an ark, spkverif beside WeSpeaker's and 3D-Speaker's own code and onnxruntime.

The same utterances (LibriSpeech crops of exactly 2, 6 or 30 s, 16-bit WAV)
and the same network at the peer's recipe size, random weights, on each side.
Each contestant reads the wav.scp, embeds every utterance and writes a Kaldi ark:

- spkverif: the `extract` stage (`spkverif.stages.extract.extract`) on a model
  file of ours: reading, fbank, the network (utterances of one length batched
  together), the ark;
- WeSpeaker: its command-line tool's `embedding_kaldi` task
  (`wespeaker.cli.speaker.main`, `-p MODEL_DIR` holding config.yaml and
  avg_model.pt, `--vad` off, CPU): `Speaker.extract_embedding_list`, one
  utterance at a time (torchaudio.load, torchaudio's Kaldi fbank, mean removal,
  the network), then its kaldiio writer. Its batch script `wespeaker/bin/extract.py`
  runs on CUDA only (`torch.device("cuda")`), so the CLI is its CPU path;
- 3D-Speaker: its extraction script `speakerlab/bin/extract.py` (`main`, one
  process, LOCAL_RANK 0 of 1, CPU), which builds the network from config.yaml,
  recovers the checkpoint its own `Checkpointer` saved, and loops over the
  utterances (torchaudio.load, its `FBank` with mean removal, the network, its
  kaldiio writer);
- onnxruntime: the peer's network exported to ONNX as `wespeaker/bin/export_onnx.py`
  exports it (opset 14, dynamic batch and time, `torch.onnx.export` with the
  TorchScript exporter), run by an `InferenceSession` on the same threads, one
  utterance at a time behind soundfile and torchaudio's Kaldi fbank with mean removal.

Each side loads its model inside the timed call (ours reads the model file,
the peers' scripts their checkpoint, onnxruntime makes its session from the ONNX
file). The figure is seconds of audio per second of wall time, the median over
interleaved rounds after one warm-up round; the limit columns count the
network's forward operations per second of audio.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import soundfile
import torch
import yaml

from bench.audio import utterances, write_wav_scp
from bench.common import Row, Section
from bench.flops import forward_flops_per_second
from bench.peers import PEER_NETWORKS, PeerNetwork, peer_problem, registered, wespeaker_cli
from spkverif.base.progress import set_quiet
from spkverif.stages.extract import extract
from spkverif.training.checkpoint import model_payload, save_atomic

# (network label, toolkit) of PEER_NETWORKS whose extraction is timed; one network per toolkit, plus the new ones.
EXTRACTED = (
    ("resnet34", "WeSpeaker"),
    ("campplus", "3D-Speaker"),
    ("eres2netv2", "3D-Speaker"),
    ("redimnet", "WeSpeaker"),
)
# At the tiny size: WeSpeaker's CLI builds its network from config.yaml's name and arguments, and its
# tiny ResNet needs a block class no YAML holds; its ECAPA-TDNN takes a width.
TINY_EXTRACTED = (("ecapa_tdnn c512", "WeSpeaker"), ("campplus", "3D-Speaker"))


@dataclass
class ToolkitExtractSize:
    lengths: tuple[float, ...] = (2.0, 6.0, 30.0)
    audio_seconds: float = 12.0  # audio of each length in a round: 6 × 2 s, 2 × 6 s, 1 × 30 s
    rounds: int = 3
    networks: tuple[tuple[str, str], ...] = EXTRACTED
    tiny: bool = False


def _quietly(function: Callable[[], object]) -> None:
    """Run a peer's script with its prints and progress bars (stdout, stderr) swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        function()


def wespeaker_contestant(network: PeerNetwork, peer: torch.nn.Module, root: Path, tiny: bool) -> Callable:
    """WeSpeaker's `python -m wespeaker --task embedding_kaldi` over a wav.scp, in this process."""
    model_dir = root / "wespeaker-model"
    model_dir.mkdir()
    config = (
        {"model": network.tiny_builder or network.builder, "model_args": network.tiny_args}
        if tiny
        else {"model": network.builder, "model_args": network.args}
    )
    (model_dir / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(peer.state_dict(), model_dir / "avg_model.pt")
    cli = wespeaker_cli()

    def run(scp: Path, ark: Path) -> None:
        argv = [
            "wespeaker",
            "--task",
            "embedding_kaldi",
            "--wav_scp",
            str(scp),
            "--output_file",
            str(ark.with_suffix("")),
            "-p",
            str(model_dir),
            "--device",
            "cpu",
        ]
        with _argv(argv):
            _quietly(cli.main)

    return run


def speakerlab_contestant(network: PeerNetwork, peer: torch.nn.Module, root: Path, tiny: bool) -> Callable:
    """3D-Speaker's `speakerlab/bin/extract.py` over a wav.scp, in this process."""
    from speakerlab.bin import extract as speakerlab_extract
    from speakerlab.utils.checkpoint import Checkpointer

    exp_dir = root / "speakerlab-exp"
    config = {
        "num_epoch": 1,
        "sample_rate": 16000,
        "embedding_model": {
            "obj": f"{network.module}.{network.builder}",
            "args": dict(network.tiny_args if tiny else network.args),
        },
        "feature_extractor": {
            "obj": "speakerlab.process.processor.FBank",
            "args": {"n_mels": network.feat_dim, "sample_rate": 16000, "mean_nor": True},
        },
        "checkpointer": {
            "obj": "speakerlab.utils.checkpoint.Checkpointer",
            "args": {"checkpoints_dir": str(exp_dir / "models"), "recoverables": {}},
        },
    }
    exp_dir.mkdir()
    (exp_dir / "config.yaml").write_text(yaml.safe_dump(config))
    _quietly(lambda: Checkpointer(exp_dir / "models", {"embedding_model": peer}).save_checkpoint(epoch=1))

    def run(scp: Path, ark: Path) -> None:
        with (
            _argv(["extract.py", "--exp_dir", str(exp_dir), "--data", str(scp)]),
            _environment(LOCAL_RANK="0", WORLD_SIZE="1"),
        ):
            _quietly(speakerlab_extract.main)
        os.replace(exp_dir / "embeddings" / "xvector_00.ark", ark)

    return run


def onnxruntime_contestant(network: PeerNetwork, peer: torch.nn.Module, root: Path) -> Callable:
    """The peer's network exported to ONNX, run by onnxruntime behind soundfile and torchaudio's Kaldi fbank."""
    import onnxruntime
    import torchaudio.compliance.kaldi as kaldi

    path = root / f"{network.toolkit}.onnx"

    class Embedding(torch.nn.Module):  # export_onnx.py's wrapper: the tuple's last item
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, feats: torch.Tensor) -> torch.Tensor:
            outputs = self.inner(feats)
            return outputs[-1] if isinstance(outputs, tuple) else outputs

    with contextlib.redirect_stderr(io.StringIO()):
        torch.onnx.export(
            Embedding(peer).eval(),
            (torch.ones(1, 200, network.feat_dim),),
            str(path),
            do_constant_folding=True,
            opset_version=14,
            input_names=["feats"],
            output_names=["embs"],
            dynamic_axes={"feats": {0: "B", 1: "T"}, "embs": {0: "B"}},
            dynamo=False,
        )
    window = "hamming" if network.toolkit == "WeSpeaker" else "povey"

    def run(scp: Path, ark: Path) -> None:
        options = onnxruntime.SessionOptions()  # the session is made in the timed call, as the others load
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        with kaldiio.WriteHelper(f"ark:{ark}") as writer:
            for line in scp.read_text().splitlines():
                key, wav = line.split(maxsplit=1)
                wave, rate = soundfile.read(wav, dtype="float32")
                features = kaldi.fbank(
                    torch.from_numpy(wave).unsqueeze(0),
                    num_mel_bins=network.feat_dim,
                    sample_frequency=rate,
                    window_type=window,
                )
                features = (features - features.mean(dim=0)).unsqueeze(0).numpy()
                writer(key, session.run(None, {"feats": features})[0][0])

    return run


@contextlib.contextmanager
def _argv(argv: list[str]):
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _environment(**values: str):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _contestants(network: PeerNetwork, root: Path, tiny: bool) -> tuple[dict, dict, dict]:
    """Each contestant's run(scp, ark), its name, and the network whose forward operations it does."""
    torch.manual_seed(0)
    ours = network.build_ours(tiny)
    save_atomic(model_payload(ours), root / "model.pt")
    peer = network.build_peer(tiny).eval()
    own = (
        wespeaker_contestant(network, peer, root, tiny)
        if network.toolkit == "WeSpeaker"
        else speakerlab_contestant(network, peer, root, tiny)
    )
    script = "CLI embedding_kaldi" if network.toolkit == "WeSpeaker" else "bin/extract.py"
    runs = {
        "ours": lambda scp, ark: extract(root / "model.pt", f"scp:{scp}", f"ark:{ark}", device="cpu"),
        "own": own,
        "onnxruntime": onnxruntime_contestant(network, peer, root),
    }
    names = {
        "own": f"{network.toolkit} {script} ({network.builder})",
        "onnxruntime": f"onnxruntime, {network.peer_name} exported",
    }
    networks = {"ours": ours.encoder, "own": peer, "onnxruntime": peer}
    return runs, names, networks


def _time_length(runs: dict, seconds: float, size: ToolkitExtractSize, root: Path) -> dict[str, float]:
    """Median seconds of audio per second of each contestant over the rounds, after one warm-up round."""
    count = max(1, round(size.audio_seconds / seconds))
    waves, _ = utterances(count, seconds, seconds, seed=3)
    scp = write_wav_scp(waves, root / f"audio-{seconds:g}")
    audio = sum(len(wave) for wave in waves) / 16000
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(size.rounds + 1):
        for name, run in runs.items():
            ark = root / f"{name}.ark"
            started = time.perf_counter()
            run(scp, ark)
            if round_index:
                rates[name].append(audio / (time.perf_counter() - started))
            assert len(dict(kaldiio.load_ark(str(ark)))) == count, f"{name} wrote {ark} short"
    return {name: statistics.median(values) for name, values in rates.items()}


def run(size: ToolkitExtractSize) -> Section:
    section = Section("toolkit extraction")
    set_quiet(True)
    logging.getLogger("spkverif").setLevel(logging.WARNING)
    section.lines.append(
        "utterances of "
        + ", ".join(f"{max(1, round(size.audio_seconds / s))} × {s:g} s" for s in size.lengths)
        + f" (each length its own timing), {torch.get_num_threads()} threads, median of {size.rounds} interleaved "
        "rounds after a warm-up round; random weights; see bench/toolkit_extract.py for what each side does"
    )
    for label, toolkit in size.networks:
        network = next(item for item in PEER_NETWORKS if item.label == label and item.toolkit == toolkit)
        problem = registered(network) or peer_problem(toolkit)
        if network.toolkit == "WeSpeaker" and network.feat_dim != 80:  # its CLI's compute_features: 80 bins
            problem = f"WeSpeaker's CLI computes 80 fbank bins, its {network.builder} takes {network.feat_dim}; no row"
        if size.tiny and network.tiny_args is None:
            problem = problem or f"{label} has no tiny size; left out of the tiny run"
        if problem:
            section.lines.append(f"{label} ({toolkit}): {problem}")
            print(section.lines[-1], flush=True)
            continue
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            runs, names, networks = _contestants(network, root, size.tiny)
            for seconds in size.lengths:
                rate = _time_length(runs, seconds, size, root)
                flops = {
                    name: forward_flops_per_second(module, network.feat_dim, seconds)
                    for name, module in networks.items()
                }
                for peer in ("own", "onnxruntime"):
                    section.rows.append(
                        Row(
                            f"{label} {seconds:g} s utterances, wav.scp → ark",
                            "× real time",
                            rate["ours"],
                            names[peer],
                            rate[peer],
                            higher_is_better=True,
                            flops=flops["ours"],
                            peer_flops=flops[peer],
                        )
                    )
                print(
                    f"extraction {label} {seconds:g} s: " + ", ".join(f"{k} {v:.1f}×" for k, v in rate.items()),
                    flush=True,
                )
    return section
