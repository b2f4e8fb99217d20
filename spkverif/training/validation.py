"""Validation during training: EER of the current network on a held-out trial list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spkverif.backends.cosine import length_normalise, paired_dot
from spkverif.errors import SpkverifError
from spkverif.io.audio import AudioReader
from spkverif.io.datadir import load_data_dir
from spkverif.io.trials import read_trials, validate_trials
from spkverif.metrics import compute_eer, compute_min_dcf
from spkverif.models import SpeakerEmbeddingModel
from spkverif.training.dataset import fit_length


class Validator:
    """Reads the trial utterances once, then scores them with cosine after each epoch."""

    def __init__(self, data_dir: str | Path, trials_path: str | Path, sample_rate: int, allow_resample: bool):
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

    @torch.no_grad()
    def evaluate(self, model: SpeakerEmbeddingModel, device: torch.device) -> dict[str, float]:
        was_training = model.training
        model.eval()
        embeddings = []
        for samples in self.audio:
            samples = fit_length(samples, max(len(samples), model.min_samples))
            embeddings.append(model(torch.from_numpy(samples)[None].to(device)).float().cpu().numpy()[0])
        model.train(was_training)
        matrix = length_normalise(np.stack(embeddings))
        scores = paired_dot(matrix, matrix, self.enroll_index, self.test_index)
        return {"eer": compute_eer(scores, self.labels), "min_dcf_0.01": compute_min_dcf(scores, self.labels, 0.01)}
