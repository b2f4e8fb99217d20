"""Training features computed once an utterance, chunks cut from them in frames (`data.precompute_features`).

Kaldi's x-vector recipe computes each utterance's features once (`compute-fbank-feats`)
and cuts its training examples from them (`nnet3-xvector-get-egs`). Training here
computes the front end on every chunk of every batch instead, which on a CPU is a
quarter of a step of the LibriSpeech recipe's network (64 chunks of 2 s, 40 mel bins:
about 65 ms of a 260 ms step on 2 cores). Where the front end's features of a chunk
are frames of the utterance's (Kaldi's fbank with `snip_edges`: `cuts_frames`), the
chunk's features are the same numbers, cut from the utterance's at the chunk's first
frame, save the dither (drawn once an utterance here, as in Kaldi, rather than once a
batch) and the start, rounded down to a frame (10 ms).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from spkverif.base.progress import ProgressBar
from spkverif.io.audio import AudioReader
from spkverif.runtime.base import fit_length

logger = logging.getLogger(__name__)


class PrecomputedFeatures:
    """Each utterance's features before mean normalisation, computed once by `frontend.unnormalised`.

    `frontend` is the model's front end, in training mode (Kaldi's dither is applied once, to
    the utterance); it must offer `unnormalised`, `num_frames`, `window_shift` and
    `cuts_frames` (checked by `checks.check_setup`). Chunks are at most `chunk_samples` long; an
    utterance shorter than that is repeated up to it before its features are computed, as the
    waveform path repeats it (`fit_length`), so its chunk is the same. Held as float32
    (frames, dims): at 16 kHz with 40 mel bins 16 kB a second of audio, a quarter of what
    `data.preload` holds. The reader's errors (unreadable audio, no samples, a wrong rate) are
    raised here, with the file and line. Utterances are computed one at a time (a long one
    holds its waveform and frames of 25 ms in memory while it is computed).
    """

    def __init__(self, reader: AudioReader, utterances: Sequence[str], frontend: torch.nn.Module, chunk_samples: int):
        self.frame_shift = int(frontend.window_shift)
        self.num_frames = frontend.num_frames
        self.features: dict[str, np.ndarray] = {}
        with torch.no_grad(), ProgressBar(len(utterances), "precompute features", unit="utt") as bar:
            for utt in utterances:
                samples = reader.read(utt)
                if len(samples) < chunk_samples:  # repeated, as the waveform path's fit_length repeats it
                    samples = fit_length(samples, chunk_samples)
                self.features[utt] = frontend.unnormalised(torch.from_numpy(samples)[None])[0].numpy()
                bar.advance(1)
        megabytes = sum(features.nbytes for features in self.features.values()) / 1e6
        logger.info("precomputed the features of %d utterances: %.0f MB", len(self.features), megabytes)

    def chunk(self, utt: str, offset: int, samples: int) -> np.ndarray:
        """The features (frames, dims) of the chunk of `utt` `samples` long that starts at sample
        `offset`, rounded down to a frame, float32, a copy. A chunk reaching past the end (a length in
        utt2dur a frame longer than the audio) ends at the last frame instead."""
        frames = int(self.num_frames(samples))
        features = self.features[utt]
        start = min(offset // self.frame_shift, len(features) - frames)
        return features[start : start + frames].copy()
