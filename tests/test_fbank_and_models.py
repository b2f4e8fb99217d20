"""The batched Kaldi fbank against torchaudio's, and the x-vector's shape and size."""

from __future__ import annotations

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from spkverif.base.errors import SpkverifError
from spkverif.frontends import KaldiFbank
from spkverif.models import build_model, count_parameters


@pytest.mark.parametrize("num_samples", [400, 16000, 16123])
def test_fbank_matches_torchaudio_kaldi(num_samples: int) -> None:
    torch.manual_seed(0)
    waveforms = torch.randn(3, num_samples) * 0.1
    ours = KaldiFbank(16000, num_mel_bins=80, mean_norm=False).eval()(waveforms)
    for row in range(3):
        reference = kaldi.fbank(waveforms[row : row + 1] * 32768, num_mel_bins=80, dither=0.0)
        assert ours[row].shape == reference.shape
        torch.testing.assert_close(ours[row], reference, atol=2e-3, rtol=1e-4)


def test_fbank_mean_normalisation_and_dither_only_in_training() -> None:
    waveforms = torch.randn(2, 8000) * 0.1
    fbank = KaldiFbank(16000)
    assert fbank.eval()(waveforms).mean(dim=1).abs().max() < 1e-4
    torch.testing.assert_close(fbank.eval()(waveforms), fbank.eval()(waveforms))
    assert not torch.equal(fbank.train()(waveforms), fbank.train()(waveforms))


def test_xvector_matches_the_published_size_and_shapes() -> None:
    model = build_model("xvector")
    assert count_parameters(model) == 4_610_524  # WeSpeaker lists XVEC-TSTP-emb512 at 4.61M
    model.eval()
    with torch.no_grad():
        short = model(torch.randn(2, model.min_samples))
        long = model(torch.randn(1, 16000 * 5))
    assert short.shape == (2, 512) and long.shape == (1, 512)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, model.min_samples - 200))


def test_unknown_model_and_option_are_user_errors() -> None:
    with pytest.raises(SpkverifError, match=r"unknown model .resnet9.; choose one of: .*xvector"):
        build_model("resnet9")
    with pytest.raises(SpkverifError, match="has no option 'chanels'"):
        build_model("xvector", {"chanels": 3})
