"""Figure 2: Kaldi fbank, spkverif's batched module beside torchaudio per utterance and kaldi-native-fbank.

All three compute 80-bin log-mel filterbanks with Kaldi's defaults (povey window,
DC removal, pre-emphasis 0.97, snip_edges, low_freq 20), dither off and no mean
normalisation so the values can be compared. The largest absolute differences
are printed against torchaudio's (which follows `compute-fbank-feats`) and
against the exact values: torchaudio's fbank run in float64. All three compute in
float32, whose rounding in the FFT is about 1e-7 of a frame's energy: in the
few bins some 100 dB below their frame's loudest (the lowest mel bin of a
high-passed recording) that rounding is a large share of the bin's energy, so
there every float32 implementation is some 1e-2 off the exact log-mel and off
the others. The figure that says whether we agree with Kaldi's computation is
therefore the difference from the exact values, over every bin and over the
bins within 60 dB of their frame's loudest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from bench.audio import utterances
from bench.common import Row, Section, interleaved
from spkverif.frontends.fbank import KaldiFbank

INT16 = 32768.0
WITHIN_DB = 60.0  # bins this far below their frame's loudest, at most, are compared separately


def differences(values: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """Largest |values - exact| over every bin, and over bins within WITHIN_DB of their frame's loudest bin."""
    difference = np.abs(values.astype(np.float64) - exact)
    loud = exact > exact.max(axis=-1, keepdims=True) - WITHIN_DB / 10 * np.log(10)
    return float(difference.max()), float(difference[loud].max())


@dataclass
class FeatureSize:
    utterances: int = 64
    seconds: float = 4.0
    rounds: int = 7


def kaldi_native(waves: list[np.ndarray]) -> list[np.ndarray]:
    """kaldi-native-fbank, one utterance at a time, as its users call it."""
    import kaldi_native_fbank as knf

    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.mel_opts.num_bins = 80
    options.mel_opts.low_freq = 20.0
    out = []
    for wave in waves:
        fbank = knf.OnlineFbank(options)
        fbank.accept_waveform(16000, (wave * INT16).tolist())
        fbank.input_finished()
        out.append(np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]))
    return out


def run(size: FeatureSize) -> Section:
    section = Section("features")
    waves, source = utterances(size.utterances, size.seconds, size.seconds, seed=1)
    batch = torch.from_numpy(np.stack(waves))
    ours_module = KaldiFbank(16000, num_mel_bins=80, dither=0.0, mean_norm=False).eval()
    seconds_of_audio = size.utterances * size.seconds

    def ours() -> torch.Tensor:
        with torch.no_grad():
            return ours_module(batch)

    def torchaudio_each(dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [
            kaldi.fbank(
                row.to(dtype).unsqueeze(0) * INT16, num_mel_bins=80, dither=0.0, energy_floor=0.0, low_freq=20.0
            )
            for row in batch
        ]

    contestants = {"ours": ours, "torchaudio": torchaudio_each}
    reference = torch.stack(torchaudio_each()).numpy()
    ours_values = ours().numpy()
    section.lines.append(
        f"{size.utterances} utterances × {size.seconds:g} s ({source}), 80 bins, dither 0, median of {size.rounds} "
        f"interleaved rounds; spkverif computes the batch at once, the peers one utterance at a time"
    )
    exact = torch.stack(torchaudio_each(torch.float64)).numpy()
    loud_share = (exact > exact.max(axis=-1, keepdims=True) - WITHIN_DB / 10 * np.log(10)).mean()
    computed = {"spkverif": ours_values, "torchaudio": reference}
    try:
        computed["kaldi-native-fbank"] = np.stack(kaldi_native(waves))
    except ImportError as error:
        message = f"kaldi-native-fbank not installed ({error}); its row is left out"
        section.lines.append(message)
        print(message)
    else:
        contestants["kaldi-native-fbank"] = lambda: kaldi_native(waves)
    section.lines.append(
        f"largest |spkverif − torchaudio| on log-mel: {np.abs(ours_values - reference).max():.2e} (both float32)"
    )
    if "kaldi-native-fbank" in computed:
        for name in ("spkverif", "torchaudio"):
            difference = np.abs(computed[name] - computed["kaldi-native-fbank"]).max()
            section.lines.append(f"largest |{name} − kaldi-native-fbank| on log-mel: {difference:.2e}")
    for name, values in computed.items():
        everywhere, loud = differences(values, exact)
        section.lines.append(
            f"largest |{name} − exact| on log-mel (exact: torchaudio's fbank in float64): {everywhere:.2e} over "
            f"every bin, {loud:.2e} over the bins within {WITHIN_DB:.0f} dB of their frame's loudest "
            f"({100 * loud_share:.2f}% of the bins)"
        )
    seconds = interleaved(contestants, size.rounds)
    for peer, peer_name in (("torchaudio", "torchaudio.compliance.kaldi.fbank"), ("kaldi-native-fbank",) * 2):
        if peer in seconds:
            section.rows.append(
                Row(
                    "fbank, seconds of audio per second",
                    "× real time",
                    seconds_of_audio / seconds["ours"],
                    peer_name,
                    seconds_of_audio / seconds[peer],
                    higher_is_better=True,
                )
            )
    for line in section.lines[1:]:
        print(line, flush=True)
    return section
