"""ReDimNet (`spkverif.models.redimnet`) and its front end: the sizes, training with every loss, the
features against torchaudio's, and one-line errors for stage tables it cannot build. Exports, length
buckets and `spkverif list` are tests/test_zoo.py's; IDRnD parity is tests/test_import_redimnet.py's."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from spkverif.base.errors import SpkverifError
from spkverif.frontends import build_frontend
from spkverif.losses import LOSSES, build_loss
from spkverif.models import MODELS, build_model, count_parameters
from spkverif.models.cost import model_cost

TINY = {"channels": 2, "stages": [[1, 1, 2, 4], [2, 1, 1, 0]], "block_2d": "convnext_like", "group_divisor": 2,
        "embedding_dim": 8}  # fmt: skip
# IDRnD's ReDimNetWrap at the same configurations counts one parameter more (stage 0's constant mixing weight).
IDRND_COUNTS = {"b0": 1004251, "b1": 1905753, "b2": 4892849, "b3": 3225021, "b4": 6441521, "b5": 7659761,
                "b6": 15015473}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("size", sorted(IDRND_COUNTS))
def test_sizes_count_what_idrnds_code_counts(size: str) -> None:
    """Counted with IDRnD's code (redimnet/model.py at dd9f519) on the configurations of `SIZES`; B0 on 60 bins."""
    frontend = build_frontend("redimnet_mel", {"num_mel_bins": 60 if size == "b0" else 72}, 16000)
    with torch.device("meta"):
        model = MODELS.build("redimnet", frontend, size=size)
    assert count_parameters(model) == IDRND_COUNTS[size] - 1


def test_the_default_is_b2_and_its_cost() -> None:
    cost = model_cost("redimnet")
    assert cost.parameters == IDRND_COUNTS["b2"] - 1
    assert 1.3e9 < cost.multiply_adds < 1.6e9  # 1.37G on 2 s (the paper's table: 0.90 GMACs)


@pytest.mark.parametrize("loss", LOSSES.names())
@pytest.mark.parametrize("network", ["redimnet", "redimnet2"])
def test_one_training_step_with_every_loss(network: str, loss: str) -> None:
    """ReDimNet and ReDimNet2 (time strides, fractional expansion, dual outputs, the 2-D head)."""
    from tests.test_redimnet2 import TINY as TINY_REDIMNET2

    torch.manual_seed(0)
    model = build_model(network, TINY if network == "redimnet" else TINY_REDIMNET2).train()
    head = build_loss(loss, 8, 4)
    optimizer = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.05)
    labels = torch.arange(4).repeat_interleave(2)
    waveforms = 0.1 * torch.randn(8, 16000, generator=torch.Generator().manual_seed(1))
    output = head(model(waveforms), labels)
    assert torch.isfinite(output.loss)
    optimizer.zero_grad()
    output.loss.backward()
    gradients = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients)
    assert sum(bool(g.abs().sum() > 0) for g in gradients) > 0.9 * len(gradients)


@pytest.mark.parametrize("options", [{}, {"spec_norm": "mvn", "f_max": 7000.0, "num_mel_bins": 60}])
def test_features_match_torchaudios_mel_spectrogram(options: dict) -> None:
    """IDRnD's MelBanks spelled with torchaudio: reflected pre-emphasis, MelSpectrogram, log(x + 1e-6), normalised."""
    waveforms = 0.1 * torch.randn(2, 16000 * 2 + 123, generator=torch.Generator().manual_seed(0))
    frontend = build_frontend("redimnet_mel", options, 16000).eval()
    padded = torch.nn.functional.pad(waveforms[:, None], (1, 0), mode="reflect")[:, 0]
    emphasised = padded[:, 1:] - 0.97 * padded[:, :-1]
    bins, top = options.get("num_mel_bins", 72), options.get("f_max", 7600.0)
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=400, hop_length=160, f_min=20, f_max=top,
                                               n_mels=bins, window_fn=torch.hamming_window)  # fmt: skip
    expected = (mel(emphasised) + 1e-6).log()
    expected = expected - expected.mean(dim=-1, keepdim=True)
    if options.get("spec_norm") == "mvn":
        expected = expected / (expected.std(dim=-1, keepdim=True) + 1e-8)
    got = frontend(waveforms)
    assert got.shape == (2, frontend.num_frames(waveforms.shape[1]), frontend.output_dim)
    torch.testing.assert_close(got, expected.transpose(1, 2), rtol=0, atol=1e-4)


def test_user_errors_in_redimnet_options() -> None:
    for options, message in (
        ({"stages": [[4, 1, 1, 0]]}, "needs stride 1, 2 or 3"),
        ({"stages": [[3, 1, 1, 0], [3, 1, 1, 0], [3, 1, 1, 0]]}, "8 frequency bins do not divide by stride 3"),
        ({"stages": [[1, 1, 1]]}, "is not [stride, blocks, expansion, reduction]"),
        ({"stages": []}, "at least one stage"),
        ({"channels": 2, "group_divisor": 4, "stages": [[1, 1, 1, 0]]}, "cannot be split into groups"),
        ({"channels": 2, "group_divisor": 1, "stages": [[1, 1, 1, 16]]}, "not a multiple of 4 attention heads"),
        ({"size": "b9"}, "unknown redimnet size 'b9'"),
        ({"block_2d": "dense"}, "unknown redimnet 2-D block 'dense'"),
    ):
        with pytest.raises(SpkverifError, match=message.replace("[", r"\[")):
            build_model("redimnet", options)
