"""SincNet: mel-initialised band-pass filters that stay valid whatever the optimiser does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spkverif.frontends.sinc import SincFilterbank, SincNet, hz_to_mel
from spkverif.models import build_model

NYQUIST = 8000.0


def _responses(bank: SincFilterbank, fft_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        taps = bank.filters().squeeze(1).double().numpy()
    return np.fft.rfftfreq(fft_size, 1 / 16000), np.abs(np.fft.rfft(taps, n=fft_size, axis=1))


def test_initial_filters_are_mel_spaced_band_passes() -> None:
    bank = SincFilterbank(num_filters=80, kernel_size=251)
    with torch.no_grad():
        low, high = (value.double().numpy() for value in bank.cutoffs())
    assert low[0] == pytest.approx(80.0, abs=0.01) and high[-1] < NYQUIST
    mel_steps = np.diff(hz_to_mel(torch.from_numpy(low)).numpy())
    np.testing.assert_allclose(mel_steps, mel_steps.mean(), rtol=1e-3)
    widths = high - low - bank.min_band_hz
    assert (np.diff(widths) > 0).all()

    frequencies, responses = _responses(bank)
    for index in (10, 40, 60, 70, 79):
        peak = frequencies[responses[index].argmax()]
        assert low[index] - 100 < peak < high[index] + 100
        far = (frequencies < low[index] - 500) | (frequencies > high[index] + 500)
        assert responses[index, far].max() < 0.05

    wide = SincFilterbank(num_filters=8, kernel_size=251)  # bands far wider than the window's main lobe
    frequencies, responses = _responses(wide)
    with torch.no_grad():
        low, high = (value.double().numpy() for value in wide.cutoffs())
    assert (high - low > 300).all()
    for index in range(8):
        inside = (frequencies > low[index] + 150) & (frequencies < high[index] - 150)
        np.testing.assert_allclose(responses[index, inside], 1.0, atol=0.05)


@pytest.mark.parametrize("direction", ["widen", "squeeze", "shift up"])
def test_cutoffs_stay_ordered_and_inside_nyquist_under_a_huge_learning_rate(direction: str) -> None:
    torch.manual_seed(0)
    bank = SincFilterbank(num_filters=80, kernel_size=251, stride=5)
    optimizer = torch.optim.Adam(bank.parameters(), lr=50.0)
    start_low, start_high = (value.detach().clone() for value in bank.cutoffs())
    waveforms = 0.1 * torch.randn(2, 1, 2000)
    for _ in range(10):
        low, high = bank.cutoffs()
        objective = {
            "widen": low.sum() - high.sum(),
            "squeeze": high.sum() - low.sum(),
            "shift up": -(low + high).sum(),
        }[direction]
        loss = objective / 1000 + bank(waveforms).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            low, high = bank.cutoffs()
            assert (low > 0).all() and (high > low).all() and (high < NYQUIST).all()
            assert (high - low >= bank.min_band_hz - 1e-2).all()
            assert torch.isfinite(bank.filters()).all()
    moved = torch.maximum((low - start_low).abs(), (high - start_high).abs())
    assert moved.max() > 1000, "the optimiser should have moved the cut-offs far"


def test_frame_arithmetic_stride_and_waveform_normalisation() -> None:
    torch.manual_seed(0)
    frontend = SincNet(16000, num_filters=8, channels=(6, 6)).eval()
    for samples in (frontend.samples_for_frames(2), frontend.samples_for_frames(7), 16000, 16123):
        assert frontend(torch.randn(1, samples)).shape[1] == frontend.num_frames(samples)
    assert frontend.num_frames(frontend.samples_for_frames(3) - 1) == 2
    dense = SincNet(16000, num_filters=8, channels=(6, 6), stride=(1, 1, 1))
    assert dense.num_frames(48000) == pytest.approx(5 * frontend.num_frames(48000), rel=0.02)

    waveforms = 0.1 * torch.randn(2, 8000)
    with torch.no_grad():
        torch.testing.assert_close(frontend(3 * waveforms), frontend(waveforms), rtol=1e-3, atol=1e-4)
        raw = SincNet(16000, num_filters=8, channels=(6, 6), waveform_norm=False, instance_norm=False).eval()
        assert not torch.allclose(raw(3 * waveforms), raw(waveforms), rtol=1e-2)


def test_sinc_tdnn_is_the_paper_layout() -> None:
    model = build_model("sinc_tdnn")
    assert model.embedding_dim == 512 and model.frontend.filterbank.num_filters == 80
    assert model.frontend.filterbank.kernel_size == 251 and model.frontend.filterbank.stride == 5
    frames = model.frontend.num_frames(48000)
    assert frames == ((((48000 - 251) // 5 + 1) // 3 - 4) // 3 - 4) // 3
    assert model.min_samples == model.frontend.samples_for_frames(15)


def test_waveform_normalisation_equals_an_affine_instance_norm_before_the_filters() -> None:
    torch.manual_seed(0)
    frontend = SincNet(16000, num_filters=8, channels=(6, 6)).eval()
    reference_norm = torch.nn.InstanceNorm1d(1, affine=True)
    with torch.no_grad():
        for parameter, value in ((frontend.waveform_gain, 1.7), (frontend.waveform_bias, 0.3)):
            parameter.fill_(value)
        reference_norm.weight.fill_(1.7)
        reference_norm.bias.fill_(0.3)
        waveforms = 0.1 * torch.randn(2, 8000) + 0.05
        features = frontend.filterbank(reference_norm(waveforms.unsqueeze(1))).abs()
        features = frontend.activation(frontend.norms[0](frontend.pool(features)))
        for convolution, norm in zip(frontend.convolutions, frontend.norms[1:], strict=True):
            features = frontend.activation(norm(frontend.pool(convolution(features))))
        torch.testing.assert_close(frontend(waveforms), features.transpose(1, 2), rtol=1e-4, atol=1e-5)
