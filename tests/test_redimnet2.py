"""ReDimNet2 (`spkverif.models.redimnet2`) and its front end (`redimnet2_mel`): the sizes against IDRnD's
counts, training with every loss, the features against a direct DFT, time pooling, and one-line errors.
Exports and length buckets are tests/test_models.py's; IDRnD parity is tests/test_import_redimnet2.py's."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from spkverif.base.errors import SpkverifError
from spkverif.frontends import build_frontend
from spkverif.models import MODELS, build_model, count_parameters
from spkverif.models.cost import model_cost
from spkverif.models.redimnet2 import TimeUpsample

TINY = {"channels": 2, "stages": [[1, 1, 1, 2, 4], [2, 2, 1, 0.5, 0], [3, 2, 1, 1, 3]], "out_channels": 4,
        "embedding_dim": 8}  # fmt: skip
# IDRnD's ReDimNet2Wrap at the released recipes' configurations (vox2/recipes/redimnet2/b3|b6/ptn.yaml), counted
# with its code (PalabraAI/redimnet2 as forked at entn-at/redimnet2 2a8d15f): ours + stage 0's constant mixing weight.
IDRND_COUNTS = {"b3": 4_205_768, "b6": 12_459_296}
CONSTANT_MIX = {"b3": 24 * 72, "b6": 64 * 72}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("size", sorted(IDRND_COUNTS))
def test_sizes_count_what_idrnds_code_counts(size: str) -> None:
    frontend = build_frontend("redimnet2_mel", {}, 16000)
    with torch.device("meta"):
        model = MODELS.build("redimnet2", frontend, size=size)
    assert count_parameters(model) == IDRND_COUNTS[size] - CONSTANT_MIX[size]
    assert model.encoder.time_stride == 4 and model.min_samples == 1360  # 8 frames: 2 at a quarter of the rate


def test_the_default_is_b3_and_its_cost() -> None:
    cost = model_cost("redimnet2")
    assert cost.parameters == IDRND_COUNTS["b3"] - CONSTANT_MIX["b3"]
    assert 2.0e9 < cost.multiply_adds < 3.5e9  # IDRnD's README: 2.70 GMACs for B3


def _reference_features(waveform: np.ndarray, bins: int, f_max: float, normalize: bool) -> np.ndarray:
    """TFMelBanks spelled out in float64 with numpy: a loop over frames and DFT bins by their definition."""
    x = waveform.astype(np.float64)
    if normalize:
        x = (x - x.mean()) / (x.std() + 1e-8)
    x = x - 0.97 * np.concatenate([[x[1]], x[:-1]])
    x = np.pad(x, 80)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(400) / 399)
    frames = np.stack([x[start : start + 400] * window for start in range(0, len(x) - 400 + 1, 160)])
    phases = np.exp(-2j * np.pi * np.outer(np.arange(400), np.arange(256)) / 512)
    power = np.clip(np.abs(frames @ phases) ** 2, 1e-8, 1e8)

    def mel(hertz):
        return 2595 * np.log10(1 + np.asarray(hertz) / 700)

    edges = np.linspace(mel(20), mel(f_max), bins + 2)
    filters = np.zeros((256, bins))
    for k in range(1, 256):
        point = mel(k * 8000 / 255)
        for m in range(bins):
            rising = (point - edges[m]) / (edges[m + 1] - edges[m])
            falling = (edges[m + 2] - point) / (edges[m + 2] - edges[m + 1])
            filters[k, m] = max(0.0, min(rising, falling))
    features = np.log(np.clip(power @ filters, 1e-8, 1e8) + 1e-8)
    return features - features.mean(axis=0)


@pytest.mark.parametrize("options", [{}, {"normalize_signal": False, "f_max": 7000.0, "num_mel_bins": 24}])
def test_features_match_the_dft_by_its_definition(options: dict) -> None:
    waveform = 0.1 * np.random.default_rng(0).standard_normal(16000 + 123)
    frontend = build_frontend("redimnet2_mel", options, 16000).eval()
    got = frontend(torch.from_numpy(waveform).float()[None])[0].numpy()
    expected = _reference_features(waveform, options.get("num_mel_bins", 72), options.get("f_max", 7600.0),
                                   options.get("normalize_signal", True))  # fmt: skip
    assert got.shape == (frontend.num_frames(len(waveform)), frontend.output_dim) == (100, frontend.output_dim)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-3)
    assert frontend.num_frames(frontend.samples_for_frames(8)) == 8
    assert frontend.num_frames(frontend.samples_for_frames(8) - 1) == 7


def test_time_pooling_cuts_to_the_stride_and_upsamples_by_repetition() -> None:
    x = torch.arange(6.0).view(1, 2, 3)
    assert torch.equal(TimeUpsample(2)(x), torch.tensor([[[0.0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5]]]))
    torch.manual_seed(0)
    model = build_model("redimnet2", TINY).eval()
    assert model.encoder.time_stride == 4
    features = torch.randn(2, 43, model.frontend.output_dim)
    with torch.no_grad():  # 43 frames are cut to 40, a multiple of the time stride: the last 3 never count
        torch.testing.assert_close(model.encoder(features), model.encoder(features[:, :40]), rtol=0, atol=0)
        assert not torch.allclose(model.encoder(features[:, :36]), model.encoder(features[:, :40]))


def test_user_errors_in_redimnet2_options() -> None:
    for options, message in (
        ({"stages": [[4, 1, 1, 1, 0]]}, "needs frequency stride 1, 2 or 3"),
        ({"stages": [[1, 0, 1, 1, 0]]}, "time stride >= 1"),
        ({"stages": [[1, 1, 1, 0]]}, "is not [frequency stride, time stride, blocks, expansion, reduction]"),
        ({"stages": [[3, 1, 1, 1, 0]] * 3}, "8 frequency bins do not divide by stride 3"),
        ({"stages": []}, "at least one stage"),
        ({"channels": 2, "group_divisor": 4, "stages": [[1, 1, 1, 1, 0]]}, "cannot be split into groups"),
        ({"channels": 2, "stages": [[1, 1, 1, 1, 16]]}, "not a multiple of 4 attention heads"),
        ({"size": "b0"}, "unknown redimnet2 size 'b0'"),
        ({"block_1d": "v2_conv+att"}, "unknown redimnet2 1-D block 'v2_conv+att'"),
    ):
        with pytest.raises(SpkverifError, match=re.escape(message)):
            build_model("redimnet2", options)
    with pytest.raises(SpkverifError, match="win_length 600 is longer than n_fft 512"):
        build_frontend("redimnet2_mel", {"win_length": 600}, 16000)
