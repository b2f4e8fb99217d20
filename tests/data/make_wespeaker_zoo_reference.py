"""Make tests/data/wespeaker_{resnet221,resnet293,samresnet100}*: WeSpeaker's deep ResNets in its format.

Run once, by hand, with a checkout of WeSpeaker's public repository (not part of
this repository and never committed here):

    python tests/data/make_wespeaker_zoo_reference.py /path/to/wespeaker

As make_wespeaker_reference.py does for ResNet34 and ECAPA-TDNN: WeSpeaker's own
classes (wespeaker/models/resnet.py ResNet with Bottleneck blocks, samresnet.py
SimAM_ResNet100_ASP) at their published layouts but 2 base channels instead of 32/64,
so the files stay small; BatchNorm statistics randomised; a `projection` head as
WeSpeaker's train.py adds; the state_dict saved as float16 after the weights were
rounded to float16; the experiment's config.yaml; the embeddings of the three inputs
of wespeaker_inputs.npz computed as wespeaker/cli/speaker.py does (torchaudio's
Kaldi fbank of int16-scaled samples, Hamming window, no dither, mean normalisation,
the model's last output).

    python tests/data/make_wespeaker_zoo_reference.py /path/to/wespeaker --full

instead measures parity at the published sizes (random weights, nothing written
here): each network built by WeSpeaker's code, saved in its format to a temporary
folder, imported with `spkverif import wespeaker`, both run on the three inputs;
prints the parameter counts and the largest difference of the unit-length embeddings.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_wespeaker_reference import _embed, _randomise, _wespeaker_models

HERE = Path(__file__).resolve().parent
FBANK = {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25, "dither": 1.0}


def _networks(models, full: bool) -> dict[str, tuple[torch.nn.Module, str, dict]]:
    """name -> (WeSpeaker's network, its `model` name, its `model_args`)."""
    resnet, samresnet, ecapa = models.resnet, models.samresnet, models.ecapa_tdnn
    embed = 256 if full else 16
    made = {}
    for name, label, blocks in (
        ("resnet221", "ResNet221", [6, 16, 48, 3]),
        ("resnet293", "ResNet293", [10, 20, 64, 3]),
    ):
        args = {"feat_dim": 80, "embed_dim": embed, "pooling_func": "TSTP", "two_emb_layer": False}
        made[name] = (resnet.ResNet(resnet.Bottleneck, blocks, m_channels=32 if full else 2, **args), label, args)
    args = {"in_planes": 64 if full else 2, "embed_dim": embed, "acoustic_dim": 80, "dropout": 0}
    made["samresnet100"] = (samresnet.SimAM_ResNet100_ASP(**args), "SimAM_ResNet100_ASP", args)
    if full:
        args = {"in_planes": 64, "embed_dim": 256, "acoustic_dim": 80, "dropout": 0}
        made["samresnet34"] = (samresnet.SimAM_ResNet34_ASP(**args), "SimAM_ResNet34_ASP", args)
        args = {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP"}
        made["ecapa1024"] = (ecapa.ECAPA_TDNN_GLOB_c1024(**args), "ECAPA_TDNN_GLOB_c1024", args)
    return made


def _save(model: torch.nn.Module, label: str, args: dict, folder: Path, name: str, half: bool) -> tuple[Path, Path]:
    """The checkpoint (with a projection head, as train.py adds) and config.yaml, as a WeSpeaker experiment has them."""
    model.add_module("projection", torch.nn.Linear(args["embed_dim"], 5))
    state = model.state_dict()
    if half:
        state = {key: value.half() if value.is_floating_point() else value for key, value in state.items()}
    del model.projection
    torch.save(state, folder / f"wespeaker_{name}.pt")
    config = {"model": label, "model_args": args, "dataset_args": {"resample_rate": 16000, "fbank_args": FBANK},
              "projection_args": {"project_type": "arc_margin", "scale": 32.0}}  # fmt: skip
    (folder / f"wespeaker_{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder / f"wespeaker_{name}.pt", folder / f"wespeaker_{name}.yaml"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main(checkout: Path, full: bool) -> None:
    models = _wespeaker_models(checkout)
    import wespeaker.models.samresnet  # noqa: F401

    torch.manual_seed(0)
    inputs = np.load(HERE / "wespeaker_inputs.npz")
    pcm = [inputs[f"arr_{index}"] for index in range(len(inputs.files))]
    folder = Path(tempfile.mkdtemp()) if full else HERE
    for name, (model, label, args) in _networks(models, full).items():
        _randomise(model)
        if not full:
            model.half().float()  # weights on the float16 grid, stored as float16: half the file, same values
        model.eval()
        embeddings = np.stack([_embed(model, x) for x in pcm])
        checkpoint, config = _save(model, label, args, folder, name, half=not full)
        count = sum(p.numel() for p in model.parameters())
        if not full:
            np.save(HERE / f"wespeaker_{name}_embeddings.npy", embeddings)
            print(name, count, embeddings.shape)
            continue
        from spkverif.models.files import load_model
        from spkverif.stages.importers import import_checkpoint

        import_checkpoint("wespeaker", checkpoint, config, folder / f"{name}_ours.pt")
        ours = load_model(folder / f"{name}_ours.pt")
        with torch.no_grad():
            got = np.stack([ours(torch.from_numpy(x.astype(np.float32) / 32768.0)[None])[0].numpy() for x in pcm])
        largest = float(np.abs(_unit(got) - _unit(embeddings)).max())
        mine = sum(p.numel() for p in ours.parameters())
        print(f"{label}: WeSpeaker {count / 1e6:.2f}M parameters, ours {mine / 1e6:.2f}M; "
              f"largest difference of unit embeddings {largest:.1e}")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--full" in sys.argv[2:])
