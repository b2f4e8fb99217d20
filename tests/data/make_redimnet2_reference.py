"""Make tests/data/redimnet2_*: small randomly initialised checkpoints in IDRnD's ReDimNet2 format and their embeddings.

Run once, by hand, with a checkout of IDRnD's public repository (github.com/PalabraAI/redimnet2;
not part of this repository and never committed here) first on the path:

    PYTHONPATH=/path/to/redimnet2 python tests/data/make_redimnet2_reference.py /path/to/redimnet2

It builds IDRnD's own `ReDimNet2Wrap` (redimnet2/redimnet2.py) at small widths, one checkpoint per
mixture of options (the released recipes' GroupNorms, time strides, fractional expansions and
2-D head; dual outputs; a 1-D head), randomises and rounds the weights as
make_redimnet_reference.py does, saves `{"model_config": ..., "state_dict": ...}` as the release
files hold them (network tensors float16; the front end's float32 buffers in the first file only, to keep
the others small), and embeds the int16 inputs of `wespeaker_inputs.npz`
(scaled by 1/32768) with the model itself in eval mode, as its `hubconf.py` model is used.
With `--full` it instead prints, for the released recipes' B3 and B6 at random weights, the largest
difference between IDRnD's embeddings and those of our imported model (nothing is written).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from make_redimnet_reference import _inputs, _randomise  # noqa: E402

TF_FEATURES = {"feat_type": "tf", "causal": "none", "hop_length": 160, "compress_tconvs": True,
               "fm_weigthing_type": "NC", "pooling_func": "ASTP", "spec_in_channels": 1}  # fmt: skip
CONFIGS = {
    "maps_gnorm": {
        **TF_FEATURES, "F": 24, "C": 4, "block_1d_type": "conv+att", "block_2d_type": "basic_resnet",
        "stages_setup": [((1, 1), 1, 2, [(3, 3)], 4), ((2, 1), 1, 1, [(3, 3)], None), ((1, 2), 1, 1.5, [(3, 3)], 8),
                         ((3, 2), 1, 0.5, [(3, 3)], 4)],
        "group_divisor": 1, "agg_gnorm": True, "return_2d_output": True, "out_channels": 16, "embed_dim": 16,
        "global_context_att": True, "emb_bn": False,
        "spec_params": {"do_spec_aug": False, "do_preemph": True, "norm_signal": True},
    },
    "dual_fwse_att": {
        **TF_FEATURES, "F": 24, "C": 4, "block_1d_type": "att", "block_2d_type": "basic_resnet_fwse",
        "stages_setup": [((1, 1), 1, 1, [(3, 3)], 4), ((2, 2), 1, 2, [(3, 3)], 8), ((2, 1), 1, 1, [(3, 3)], None)],
        "group_divisor": 2, "agg_gnorm": True, "dual_agg": True, "return_2d_output": False, "embed_dim": 16,
        "global_context_att": False, "emb_bn": True,
        "spec_params": {"do_spec_aug": False, "norm_signal": False, "f_max": 7000},
    },
    "convnext_conv_1d_head": {
        **TF_FEATURES, "F": 24, "C": 4, "block_1d_type": "conv", "block_2d_type": "convnext_like_relu",
        "stages_setup": [((1, 2), 1, 1, [(3, 3)], 8), ((2, 1), 1, 2, [(3, 3)], 4)],
        "group_divisor": 4, "agg_gnorm": False, "return_2d_output": False, "out_channels": 32, "embed_dim": 16,
        "global_context_att": True, "spec_params": {"do_spec_aug": False, "do_preemph": False, "norm_signal": True},
    },
}  # fmt: skip
# The released recipes' model_args (applications/speaker_rec/examples/vox2/recipes/redimnet2/b3|b6/ptn.yaml).
RECIPE = {**TF_FEATURES, "F": 72, "agg_gnorm": True, "block_1d_type": "conv+att", "block_2d_type": "basic_resnet",
          "emb_bn": False, "embed_dim": 192, "global_context_att": True, "group_divisor": 1, "return_2d_output": True,
          "spec_params": {"do_preemph": True, "do_spec_aug": False, "norm_signal": True}}  # fmt: skip
FULL = {
    "b3": {**RECIPE, "C": 24},
    "b6": {**RECIPE, "C": 64, "out_channels": 224,
           "stages_setup": [[[1, 1], 3, 3, [[3, 3]], 64], [[2, 1], 4, 2, [[3, 3]], 64], [[1, 2], 5, 2, [[3, 3]], 48],
                            [[2, 1], 5, 1, [[3, 3]], 48], [[1, 2], 4, 0.75, [[3, 3]], 32],
                            [[2, 1], 3, 0.5, [[3, 3]], 24]]},
}  # fmt: skip


def main() -> None:
    from redimnet2 import ReDimNet2Wrap

    inputs = _inputs()
    for index, (name, config) in enumerate(CONFIGS.items()):
        torch.manual_seed(index)
        model = ReDimNet2Wrap(**config)
        _randomise(model, 200 + index)
        model.backbone.half().float()  # the network's weights on the float16 grid, stored as float16; the
        for part in (model.pool, model.bn, model.linear, model.bn2):  # front end's buffers stay float32
            if part is not None:
                part.half().float()
        model.eval()
        with torch.no_grad():
            embeddings = np.stack([model(x)[0].numpy() for x in inputs])
        state = {key: value.half() if value.is_floating_point() and not key.startswith("spec.") else value
                 for key, value in model.state_dict().items()}  # fmt: skip
        if index:  # the front end's buffers (0.8 MB, rebuilt by the importer) kept in the first file alone
            state = {key: value for key, value in state.items() if not key.startswith("spec.")}
        torch.save({"model_config": config, "state_dict": state}, HERE / f"redimnet2_{name}.pt")
        np.save(HERE / f"redimnet2_{name}_embeddings.npy", embeddings)
        print(name, sum(p.numel() for p in model.parameters()), embeddings.shape)


def full_sizes(sizes: list[str]) -> None:
    """The recipes' sizes at random weights: IDRnD's embeddings against our imported model's (max abs, unit length)."""
    import tempfile

    from redimnet2 import ReDimNet2Wrap

    sys.path.insert(0, str(ROOT))
    from spkverif.models.files import load_model
    from spkverif.stages.importers import import_checkpoint

    inputs = _inputs()
    for size in sizes:
        torch.manual_seed(0)
        model = ReDimNet2Wrap(**FULL[size])
        _randomise(model, 1)
        model.eval()
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = Path(folder) / f"{size}-random.pt"
            torch.save({"model_config": FULL[size], "state_dict": model.state_dict()}, checkpoint)
            import_checkpoint("redimnet2", checkpoint, None, Path(folder) / "ours.pt")
            ours = load_model(Path(folder) / "ours.pt")
        largest = 0.0
        with torch.no_grad():
            for x in inputs:
                expected = torch.nn.functional.normalize(model(x), dim=1)
                got = torch.nn.functional.normalize(ours(x), dim=1)
                largest = max(largest, float((got - expected).abs().max()))
        print(f"{size}: {sum(p.numel() for p in model.parameters())} parameters, largest difference {largest:.2e}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(sys.argv[1]).resolve()))
    if "--full" in sys.argv:
        full_sizes([size for size in FULL if size in sys.argv[2:]] or list(FULL))
    else:
        main()
