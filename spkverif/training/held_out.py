"""Validation during training: EER of the current network on a held-out trial list.

The embeddings come from the code `spkverif extract` runs (`PytorchEmbedder`,
`fit_length` for short utterances, `embed_block`) and the scores from the cosine
back end `spkverif score --method cosine` uses, so a validation EER is the EER
those stages would report for the same network (up to the ordering of batches).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spkverif.backends import BACKENDS
from spkverif.base.errors import SpkverifError
from spkverif.io.audio import AudioReader
from spkverif.io.datadir import load_data_dir
from spkverif.io.trials import read_trials, validate_trials
from spkverif.metrics import P_TARGET, compute_eer, compute_min_dcf
from spkverif.models import SpeakerEmbeddingModel
from spkverif.runtime import embed_block, fit_length
from spkverif.runtime.pytorch import PytorchEmbedder


class Validator:
    """Reads the trial utterances once, then embeds and scores them after each epoch.

    `batch_size`: utterances of equal length a forward pass; 1 (the default) embeds
    each alone, as earlier releases did, so the figures repeat to the bit.
    Raises `SpkverifError` for trials naming utterances `data_dir` lacks, or none at all.
    """

    def __init__(
        self, data_dir: str | Path, trials_path: str | Path, sample_rate: int, allow_resample: bool, batch_size: int = 1
    ):
        data = load_data_dir(data_dir)
        self.trials = read_trials(trials_path)
        self.labels = self.trials.require_labels()
        problems = validate_trials(self.trials, set(data.utterances), str(data_dir))
        if problems:
            raise problems[0]
        self.keys = sorted(self.trials.keys())
        index = {key: i for i, key in enumerate(self.keys)}
        self.enroll_index = np.array([index[k] for k in self.trials.enroll])
        self.test_index = np.array([index[k] for k in self.trials.test])
        reader = AudioReader.from_data_dir(data, sample_rate, allow_resample)
        self.audio = [reader.read(key) for key in self.keys]
        if not self.audio:
            raise SpkverifError("no validation utterances", trials_path)
        self.batch_size = batch_size
        self.scorer = BACKENDS.build("cosine")

    def embed(self, model: SpeakerEmbeddingModel, device: torch.device) -> np.ndarray:
        """Embeddings (N, D) of the trial utterances in key order; `model` is left in the mode it was in."""
        was_training = model.training
        embedder = PytorchEmbedder(model, device)  # puts the model in eval mode
        audio = [fit_length(samples, max(len(samples), embedder.min_samples)) for samples in self.audio]
        embeddings = embed_block(embedder, audio, self.batch_size)
        model.train(was_training)
        return np.stack(embeddings)

    def evaluate(self, model: SpeakerEmbeddingModel, device: torch.device) -> dict[str, float]:
        """EER and minDCF (at the evaluations' `P_TARGET`) of cosine scores, as fractions."""
        matrix = self.embed(model, device)
        scores = self.scorer.bind(matrix, matrix)(self.enroll_index, self.test_index)
        min_dcf = compute_min_dcf(scores, self.labels, P_TARGET)
        return {"eer": compute_eer(scores, self.labels), f"min_dcf_{P_TARGET:g}": min_dcf}
