"""A picture of what a SincNet front end learned: its filters' pass bands and frequency responses.

Three panels against the mel-spaced bands the filters started from: each
filter's pass band [low, high] by filter index; the magnitude responses of a
few filters; and the cumulative frequency response (the sum of all normalised
responses), the view Ravanelli & Bengio use to show which bands a network
chose to resolve finely.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from spkverif.base.errors import SpkverifError
from spkverif.frontends.sinc import SincFilterbank
from spkverif.models.files import load_model
from spkverif.plots import save_figure

_FFT_SIZE = 4096


def find_filterbank(module: torch.nn.Module) -> SincFilterbank | None:
    for child in module.modules():
        if isinstance(child, SincFilterbank):
            return child
    return None


def magnitude_responses(bank: SincFilterbank) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and each filter's magnitude response, (num_filters, bins), peak 1."""
    with torch.no_grad():
        taps = bank.filters().squeeze(1).double()
        response = torch.fft.rfft(taps, n=_FFT_SIZE).abs()
    response = response / response.amax(dim=1, keepdim=True).clamp_min(1e-12)
    frequencies = np.fft.rfftfreq(_FFT_SIZE, 1.0 / bank.sample_rate)
    return frequencies, response.numpy()


def plot_filters(model_path: str | Path, out_path: str | Path) -> Path:
    """Write a PNG of the model's learned sinc filters beside their initial values."""
    model = load_model(model_path)
    learned = find_filterbank(model)
    if learned is None:
        name = model.spec.get("name", "this model")
        raise SpkverifError(f"{name} has no SincNet front end, so no learned filters to plot", model_path)
    initial = SincFilterbank(
        learned.num_filters,
        learned.kernel_size,
        learned.sample_rate,
        learned.stride,
        learned.min_low_hz,
        learned.min_band_hz,
    )
    figure, (bands, responses, cumulative) = plt.subplots(3, 1, figsize=(8, 10))
    for bank, label, style in ((initial, "initial (mel)", "--"), (learned, "learned", "-")):
        with torch.no_grad():
            low, high = (value.numpy() for value in bank.cutoffs())
        index = np.arange(bank.num_filters)
        bands.plot(index, low / 1000, style, color="tab:blue" if bank is learned else "grey", label=f"{label} low")
        bands.plot(index, high / 1000, style, color="tab:red" if bank is learned else "grey", label=f"{label} high")
        frequencies, response = magnitude_responses(bank)
        total = response.sum(axis=0)
        cumulative.plot(frequencies / 1000, total / total.max(), style, label=label)
    frequencies, response = magnitude_responses(learned)
    for row in np.linspace(0, learned.num_filters - 1, 6).round().astype(int):
        responses.plot(frequencies / 1000, 20 * np.log10(response[row] + 1e-6), label=f"filter {row}")
    bands.set(xlabel="filter", ylabel="cut-off (kHz)", title="pass bands")
    bands.legend(fontsize="small")
    responses.set(xlabel="frequency (kHz)", ylabel="gain (dB)", ylim=(-60, 3), title="learned responses (6 filters)")
    responses.legend(fontsize="small", ncol=3)
    cumulative.set(xlabel="frequency (kHz)", ylabel="normalised sum", title="cumulative frequency response")
    cumulative.legend(fontsize="small")
    figure.suptitle(f"SincNet filters of {model_path}")
    figure.tight_layout()
    return save_figure(figure, out_path)
