"""Make tests/data/wespeaker_*: randomly initialised checkpoints in WeSpeaker's format and their embeddings.

Run once, by hand, with a checkout of WeSpeaker's public repository (not part of
this repository and never committed here):

    python tests/data/make_wespeaker_reference.py /path/to/wespeaker

It builds WeSpeaker's own model classes (wespeaker/models/resnet.py and
ecapa_tdnn.py) at narrow widths so the files stay small, randomises BatchNorm
statistics, adds a projection head as WeSpeaker's train.py does (the importer
must drop it), saves the state_dict with torch.save as WeSpeaker's
save_checkpoint does (tensors as float16, the weights having been rounded to
float16 first, to halve the files), writes the matching config.yaml, and embeds
three fixed inputs (wespeaker_inputs.npz, int16) the way wespeaker/cli/speaker.py
does: torchaudio's Kaldi fbank on int16-scaled samples, Hamming window, no
dither, mean normalisation per utterance, the model's last output.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
import yaml

HERE = Path(__file__).resolve().parent
SECONDS = (0.8, 1.5, 3.0)


def _wespeaker_models(checkout: Path) -> types.ModuleType:
    """Import wespeaker.models.* without running wespeaker/__init__.py (it needs silero_vad and more)."""
    for name, folder in (("wespeaker", checkout / "wespeaker"), ("wespeaker.models", checkout / "wespeaker/models")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    import wespeaker.models.ecapa_tdnn
    import wespeaker.models.resnet  # noqa: F401

    return sys.modules["wespeaker.models"]


def _inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(20251129)
    return [np.round(rng.uniform(-0.3, 0.3, round(s * 16000)) * 32767).astype(np.int16) for s in SECONDS]


def _randomise(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and name.endswith(("running_mean", "running_var")):
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(0.5 + values if name.endswith("running_var") else values - 0.5)


def _embed(model: torch.nn.Module, pcm: np.ndarray) -> np.ndarray:
    waveform = torch.from_numpy(pcm.astype(np.float32))[None]
    feats = kaldi.fbank(waveform, num_mel_bins=80, frame_length=25, frame_shift=10, sample_frequency=16000,
                        window_type="hamming")  # fmt: skip
    feats = (feats - feats.mean(dim=0))[None]
    with torch.no_grad():
        outputs = model(feats)  # a tuple's last (ResNet, ECAPA-TDNN) or the tensor (SimAM-ResNet), as speaker.py
    return (outputs[-1] if isinstance(outputs, tuple) else outputs)[0].numpy()


def main(checkout: Path) -> None:
    models = _wespeaker_models(checkout)
    torch.manual_seed(0)
    made = {
        "resnet34": (
            models.resnet.ResNet(models.resnet.BasicBlock, [3, 4, 6, 3], m_channels=4, feat_dim=80, embed_dim=16),
            "ResNet34",
            {"feat_dim": 80, "embed_dim": 16, "pooling_func": "TSTP", "two_emb_layer": False},
        ),
        "ecapa": (
            models.ecapa_tdnn.ECAPA_TDNN(channels=16, feat_dim=80, embed_dim=16, global_context_att=True),
            "ECAPA_TDNN_GLOB_c512",
            {"feat_dim": 80, "embed_dim": 16, "pooling_func": "ASTP"},
        ),
    }
    pcm = _inputs()
    np.savez_compressed(HERE / "wespeaker_inputs.npz", *pcm)
    for name, (model, label, model_args) in made.items():
        _randomise(model)
        model.half().float()  # weights on the float16 grid, stored as float16 below: half the file, same values
        model.eval()
        embeddings = np.stack([_embed(model, x) for x in pcm])
        model.add_module("projection", torch.nn.Linear(16, 5).half().float())  # the training head train.py adds
        state = {key: value.half() if value.is_floating_point() else value for key, value in model.state_dict().items()}
        torch.save(state, HERE / f"wespeaker_{name}.pt")
        config = {
            "model": label,
            "model_args": model_args,
            "dataset_args": {
                "resample_rate": 16000,
                "fbank_args": {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25, "dither": 1.0},
            },
            "projection_args": {"project_type": "arc_margin", "scale": 32.0},
        }
        (HERE / f"wespeaker_{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        np.save(HERE / f"wespeaker_{name}_embeddings.npy", embeddings)
        print(name, sum(p.numel() for p in model.parameters()), embeddings.shape)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
