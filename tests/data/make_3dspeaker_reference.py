"""Make tests/data/3dspeaker_* and wespeaker_campplus*: the reference for `spkverif import 3dspeaker`
(CAM++, ERes2Net, ERes2Net_huge, ERes2NetV2) and for WeSpeaker's CAM++ (`spkverif import wespeaker`).

Run once, by hand, with checkouts of 3D-Speaker's and WeSpeaker's public repositories (neither
part of this repository nor committed here):

    python tests/data/make_3dspeaker_reference.py /path/to/3D-Speaker /path/to/wespeaker

For each network it reads the peer's own recipe configuration (3D-Speaker's
`egs/voxceleb/sv-*/conf/*.yaml`, WeSpeaker's `examples/voxceleb/v2/conf/campplus.yaml`),
narrows the network's arguments so the test runs in moments, builds the network with the
peer's own code (3D-Speaker's `speakerlab.utils.builder.build`, WeSpeaker's model class),
gives it the seeded random weights of `tests/seeded_weights.py` (all of them, BatchNorm
statistics included; the state_dict is loaded strictly) and embeds the three inputs of
`wespeaker_inputs.npz` the way the peer's inference does: 3D-Speaker's `infer_sv.py`
(torchaudio.load's floats, its `FBank` with mean normalisation, the model's output) and
WeSpeaker's `cli/speaker.py` (int16-scaled samples, Kaldi fbank with a Hamming window, minus
the mean, the model's last output). It writes the narrowed configuration (`*.yaml`) and the
network's keys, shapes, seed, weights' digest and embeddings (`*_reference.npz`): the test
makes the same checkpoint from them, so no weights are stored. For 3D-Speaker's networks it
adds the network's embeddings of seeded features (`hot_*`: the encoder alone, no front end)
with weights twice as wide, where ERes2Net's clipped ReLU acts on a share of the activations.

CAM++'s front (FCM) width is fixed at 32 in both peers' classes; the script narrows it to 4
by handing their `CAMPPlus` their own `FCM` with `m_channels=4`, which the importers read
from the weights as they read the published models' 32.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from tests.seeded_weights import digest, manifest, seeded_features, seeded_state  # noqa: E402

SEED = 20260311
HOT_GAIN, HOT_FEATURES = 2, (2, 150, 80)  # the encoder alone, on seeded features, with weights twice as wide
FCM_CHANNELS = 4
# name -> (recipe under egs/voxceleb, the args its embedding_model gets here)
THREED_SPEAKER = {
    "campplus": ("sv-cam++/conf/cam++.yaml", {"embedding_size": 16, "growth_rate": 4, "bn_size": 2,
                                              "init_channels": 16}),
    "eres2net": ("sv-eres2net/conf/eres2net.yaml", {"m_channels": 4, "embedding_size": 16, "num_blocks": [2, 1, 2, 1]}),
    "eres2net_huge": ("sv-eres2net/conf/eres2net.yaml", {"m_channels": 4, "embedding_size": 16,
                                                         "num_blocks": [1, 2, 1, 1]}),
    "eres2netv2": ("sv-eres2netv2/conf/eres2netv2.yaml", {"m_channels": 8, "embedding_size": 16, "baseWidth": 26,
                                                          "scale": 3, "expansion": 2, "num_blocks": [1, 2, 2, 1]}),
}  # fmt: skip
HUGE = "speakerlab.models.eres2net.ERes2Net_huge.ERes2Net"


def _stub(name: str, **attributes: object) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module


def _narrow_fcm(fcm: type) -> None:
    """The peer's FCM class with its `m_channels` default (32) set to FCM_CHANNELS: its CAMPPlus builds
    `FCM(...)` without passing one."""
    names = fcm.__init__.__code__.co_varnames[: fcm.__init__.__code__.co_argcount]
    defaults = list(fcm.__init__.__defaults__)
    defaults[names.index("m_channels") - (len(names) - len(defaults))] = FCM_CHANNELS
    fcm.__init__.__defaults__ = tuple(defaults)


def _threed_speaker(checkout: Path) -> types.SimpleNamespace:
    """3D-Speaker's builder, config reader and FBank; processor.py's training-only imports are stubbed."""
    sys.path.insert(0, str(checkout))
    _stub("speakerlab.process.augmentation", NoiseReverbCorrupter=object)
    _stub("speakerlab.utils.fileio", load_data_csv=None)
    import speakerlab.models.campplus.DTDNN as dtdnn
    from speakerlab.utils.builder import build
    from speakerlab.utils.config import Config

    _narrow_fcm(dtdnn.FCM)
    return types.SimpleNamespace(build=build, Config=Config)


def _wespeaker_campplus(checkout: Path) -> types.ModuleType:
    """wespeaker.models.campplus without running wespeaker/__init__.py."""
    for name, folder in (("wespeaker", checkout / "wespeaker"), ("wespeaker.models", checkout / "wespeaker/models")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    import wespeaker.models.campplus as campplus

    _narrow_fcm(campplus.FCM)
    return campplus


def _seeded(model: torch.nn.Module, gain: int = 1) -> dict[str, torch.Tensor]:
    state = seeded_state(*manifest(model.state_dict()), SEED, gain)
    model.load_state_dict(state, strict=True)
    return {key: value.clone() for key, value in model.eval().state_dict().items()}


def _hot(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The network on seeded features with HOT_GAIN-wide weights, and the share of the activations its clipped
    ReLU (3D-Speaker's Hardtanh(0, 20), in place: seen before it acts) clipped."""
    state = _seeded(model, HOT_GAIN)
    seen = {"values": 0, "clipped": 0}

    def count(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen["values"] += inputs[0].numel()
        seen["clipped"] += int((inputs[0] > 20).sum())

    hooks = [m.register_forward_pre_hook(count) for m in model.modules() if isinstance(m, torch.nn.Hardtanh)]
    with torch.no_grad():
        embeddings = model(seeded_features(SEED, HOT_FEATURES)).numpy()
    for hook in hooks:
        hook.remove()
    clipped = seen["clipped"] / max(seen["values"], 1)
    print("  hot: digest", digest(state)[:12], "clipped", f"{clipped:.3f}")
    return {"hot_gain": np.array(HOT_GAIN), "hot_features": np.array(HOT_FEATURES), "hot_embeddings": embeddings,
            "hot_clipped": np.array(clipped), "hot_digest": np.array(digest(state))}  # fmt: skip


def _save(name: str, state: dict[str, torch.Tensor], embeddings: np.ndarray, **hot: np.ndarray) -> None:
    keys, shapes, dtypes = manifest(state)
    np.savez_compressed(
        HERE / f"{name}_reference.npz", keys=np.array(keys), shapes=np.array(json.dumps(shapes)),
        dtypes=np.array(dtypes), seed=np.array(SEED), digest=np.array(digest(state)), embeddings=embeddings, **hot,
    )  # fmt: skip
    print(name, len(keys), "tensors,", sum(v.numel() for v in state.values()), "values,", embeddings.shape)


def main(threed_speaker: Path, wespeaker: Path) -> None:
    inputs = np.load(HERE / "wespeaker_inputs.npz")
    pcm = [inputs[f"arr_{index}"] for index in range(len(inputs.files))]
    peer = _threed_speaker(threed_speaker)
    for name, (recipe, args) in THREED_SPEAKER.items():
        config = yaml.safe_load((threed_speaker / "egs/voxceleb" / recipe).read_text())
        config["embedding_model"]["args"].update(args)
        config["embedding_size"] = args["embedding_size"]
        config["embedding_model"]["args"]["embedding_size"] = "<embedding_size>"
        if name == "eres2net_huge":
            config["embedding_model"]["obj"] = HUGE
        (HERE / f"3dspeaker_{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        built = peer.Config(yaml.safe_load(yaml.safe_dump(config)))
        model, fbank = peer.build("embedding_model", built), peer.build("feature_extractor", built)
        state = _seeded(model)
        with torch.no_grad():  # speakerlab/bin/infer_sv.py: torchaudio.load's floats, FBank, the model
            embeddings = np.stack([
                model(fbank(torch.from_numpy(x.astype(np.float32) / 32768.0)[None]).unsqueeze(0))[0].numpy()
                for x in pcm
            ])  # fmt: skip
        _save(f"3dspeaker_{name}", state, embeddings, **_hot(model))

    campplus = _wespeaker_campplus(wespeaker)
    config = yaml.safe_load((wespeaker / "examples/voxceleb/v2/conf/campplus.yaml").read_text())
    config["model_args"].update({"embed_dim": 16, "growth_rate": 4, "bn_size": 2, "init_channels": 16})
    (HERE / "wespeaker_campplus.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    model = campplus.CAMPPlus(**config["model_args"])
    model.add_module("projection", torch.nn.Linear(16, 5))  # the training head WeSpeaker's train.py adds
    state = _seeded(model)
    del model.projection
    with torch.no_grad():  # wespeaker/cli/speaker.py: int16-scaled samples, fbank, minus its mean, the last output
        embeddings = []
        for x in pcm:
            feats = kaldi.fbank(torch.from_numpy(x.astype(np.float32))[None], num_mel_bins=80, frame_length=25,
                                frame_shift=10, sample_frequency=16000, window_type="hamming")  # fmt: skip
            embeddings.append(model((feats - feats.mean(dim=0))[None])[0].numpy())
    _save("wespeaker_campplus", state, np.stack(embeddings))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
