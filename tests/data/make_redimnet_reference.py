"""Make tests/data/redimnet_*: small randomly initialised checkpoints in IDRnD's ReDimNet format and their embeddings.

Run once, by hand, with a checkout of IDRnD's public repository (github.com/IDRnD/redimnet;
not part of this repository and never committed here):

    python tests/data/make_redimnet_reference.py /path/to/redimnet

It builds IDRnD's own `ReDimNetWrap` (redimnet/model.py) at small widths, one checkpoint per
mixture of blocks, sets every constant-initialised tensor (norms, biases, mixing weights,
BatchNorm statistics) to random values, rounds the weights to float16, saves
`{"model_config": ..., "state_dict": ...}` as IDRnD's release files hold them (tensors as
float16 to halve the files), and embeds the int16 inputs of `wespeaker_inputs.npz`
(scaled by 1/32768) with the model itself in eval mode, as its `hubconf.py` model is used.
With `--full` it instead prints, for B2 and B6 at random weights, the largest difference
between IDRnD's embeddings and those of our imported model (nothing is written).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

CONFIGS = {
    "fwse_convatt": {
        "F": 24, "C": 4, "block_1d_type": "conv+att", "block_2d_type": "basic_resnet_fwse",
        "stages_setup": [(1, 1, 2, [(3, 3)], 4), (2, 1, 1, [(3, 3)], None), (3, 1, 1, [(3, 3)], 8),
                         (2, 1, 1, [(3, 3)], 4)],
        "group_divisor": 2, "out_channels": None, "embed_dim": 16, "global_context_att": True,
    },
    "convnext_att": {
        "F": 24, "C": 4, "block_1d_type": "att", "block_2d_type": "convnext_like",
        "stages_setup": [(1, 1, 1, [(3, 3)], 4), (2, 1, 2, [(3, 3)], 8), (3, 2, 1, [(3, 3)], None)],
        "group_divisor": 4, "out_channels": 32, "embed_dim": 16, "global_context_att": False, "emb_bn": True,
    },
    "resnet_conv": {
        "F": 24, "C": 4, "block_1d_type": "conv", "block_2d_type": "basic_resnet",
        "stages_setup": [(2, 1, 1, [(3, 3)], 8), (1, 1, 3, [(3, 3)], 4)],
        "group_divisor": 1, "out_channels": None, "embed_dim": 16, "global_context_att": True,
    },
    "relu_fc": {
        "F": 24, "C": 4, "block_1d_type": "fc", "block_2d_type": "convnext_like_relu",
        "stages_setup": [(1, 1, 1, [(3, 3)], 4), (2, 1, 1, [(3, 3)], 4)],
        "group_divisor": 2, "out_channels": None, "embed_dim": 16, "global_context_att": True,
        "spec_params": {"do_spec_aug": False, "spec_norm": "mvn", "f_max": 7000},
    },
}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Every floating tensor that starts constant (ones: norms' scales, running variances; zeros: biases,
    means, mixing weights) set to 0.5 + U(0, 1) or U(0, 1) - 0.5, so a misplaced one shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.numel() and bool((tensor == tensor.flatten()[0]).all()):
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if float(tensor.flatten()[0]) > 0 else values - 0.5)


def _inputs() -> list[torch.Tensor]:
    pcm = np.load(HERE / "wespeaker_inputs.npz")
    return [torch.from_numpy(pcm[key].astype(np.float32) / 32768.0)[None] for key in sorted(pcm.files)]


def main(checkout: Path) -> None:
    sys.path.insert(0, str(checkout))
    from redimnet.model import ReDimNetWrap

    inputs = _inputs()
    for index, (name, config) in enumerate(CONFIGS.items()):
        torch.manual_seed(index)
        model = ReDimNetWrap(**config)
        _randomise(model, 100 + index)
        model.backbone.half().float()  # the network's weights on the float16 grid, stored as float16 (half the
        for part in (model.pool, model.bn, model.linear, model.bn2):  # file, the same values); the front end's
            if part is not None:  # buffers (window, mel matrix, pre-emphasis filter) stay float32, as released
                part.half().float()
        model.eval()
        with torch.no_grad():
            embeddings = np.stack([model(x)[0].numpy() for x in inputs])
        state = {key: value.half() if value.is_floating_point() and not key.startswith("spec.") else value
                 for key, value in model.state_dict().items()}  # fmt: skip
        torch.save({"model_config": config, "state_dict": state}, HERE / f"redimnet_{name}.pt")
        np.save(HERE / f"redimnet_{name}_embeddings.npy", embeddings)
        print(name, sum(p.numel() for p in model.parameters()), embeddings.shape)


def full_sizes(checkout: Path) -> None:
    """B2 and B6 at random weights: IDRnD's embeddings against our imported model's (max abs, unit length)."""
    import tempfile

    sys.path.insert(0, str(checkout))
    sys.path.insert(0, str(ROOT))
    from redimnet.model import ReDimNetWrap

    from spkverif.models.files import load_model
    from spkverif.models.redimnet import SIZES
    from spkverif.stages.importers import import_checkpoint

    inputs = _inputs()
    for size in ("b2", "b6"):
        table = SIZES[size]
        config = {
            "F": table.mel_bins, "C": table.channels, "block_1d_type": table.block_1d, "block_2d_type": table.block_2d,
            "stages_setup": [(s, b, e, [(3, 3)], r or None) for s, b, e, r in table.stages],
            "group_divisor": table.group_divisor, "out_channels": None, "embed_dim": 192,
            "global_context_att": table.global_context,
        }  # fmt: skip
        torch.manual_seed(0)
        model = ReDimNetWrap(**config)
        _randomise(model, 1)
        model.eval()
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = Path(folder) / f"{size}-random.pt"
            torch.save({"model_config": config, "state_dict": model.state_dict()}, checkpoint)
            import_checkpoint("redimnet", checkpoint, None, Path(folder) / "ours.pt")
            ours = load_model(Path(folder) / "ours.pt")
        largest = 0.0
        with torch.no_grad():
            for x in inputs:
                expected = torch.nn.functional.normalize(model(x), dim=1)
                got = torch.nn.functional.normalize(ours(x), dim=1)
                largest = max(largest, float((got - expected).abs().max()))
        print(f"{size}: {sum(p.numel() for p in model.parameters())} parameters, largest difference {largest:.2e}")


if __name__ == "__main__":
    if "--full" in sys.argv:
        full_sizes(Path(sys.argv[1]))
    else:
        main(Path(sys.argv[1]))
