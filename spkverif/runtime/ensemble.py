"""Several embedding networks run as one: equal-weight fusion of their cosine scores, as an embedding.

Given N networks (any kinds `open_model` reads), an utterance's embedding is the
concatenation of each network's embedding scaled to unit length, divided by sqrt(N),
then multiplied by the mean of the N embeddings' lengths:

    e = mean_i(|e_i|) * [e_1 / |e_1|, ..., e_N / |e_N|] / sqrt(N)      (D = D_1 + ... + D_N)

So the cosine of two such embeddings is the mean of the N networks' cosines (the
equal-weight score fusion of the N systems, e.g. Brümmer et al. 2007, "Fusion of
heterogeneous speaker recognition systems in the STBU submission for the NIST SRE 2006",
without trained weights), every back end (cosine, AS-norm, PLDA, calibration) reads it
as one embedding, and its length, a quality measure of `backends.calibration`, is the
members' mean length rather than a constant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from spkverif.backends.base import length_normalise
from spkverif.base.errors import SpkverifError
from spkverif.runtime.base import Embedder


class EnsembleEmbedder(Embedder):
    """N `Embedder`s at one sample rate as one: waveforms (B, T) in, embeddings (B, D_1 + ... + D_N) out.

    `metadata["model"]` is `{"name": "ensemble", "members": [each member's model spec]}`;
    `min_samples` is the largest member's (shorter audio is repeated up to it, for all
    members alike); the fingerprint hashes the members' fingerprints in order, so a
    calibration made for one ensemble is refused for another (or for a member alone).
    Raises `SpkverifError` for fewer than two members or members at different rates.
    """

    def __init__(self, members: Sequence[Embedder], names: Sequence[str]):
        if len(members) < 2:
            raise SpkverifError(f"an ensemble needs at least two models, not {len(members)}")
        rates = {member.sample_rate for member in members}
        if len(rates) > 1:
            listed = ", ".join(f"{name}: {member.sample_rate} Hz" for name, member in zip(names, members, strict=True))
            raise SpkverifError(f"the models of an ensemble must share a sample rate ({listed})")
        digest = hashlib.sha256(b"ensemble")
        for member in members:
            digest.update(member.fingerprint.encode())
        metadata = {
            "model": {"name": "ensemble", "members": [member.metadata["model"] for member in members]},
            "sample_rate": members[0].sample_rate,
            "embedding_dim": sum(member.embedding_dim for member in members),
            "min_samples": max(member.min_samples for member in members),
            "fingerprint": digest.hexdigest()[:16],
        }
        super().__init__(metadata, "ensemble")
        self.members = list(members)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        """Embeddings (B, D_1 + ... + D_N) float32 of waveforms (B, T) float32 (see the module)."""
        embeddings = [member(waveforms).astype(np.float64) for member in self.members]
        lengths = np.stack([np.linalg.norm(part, axis=1) for part in embeddings], axis=1)  # (B, N)
        scale = lengths.mean(axis=1, keepdims=True) / np.sqrt(len(self.members))
        return (np.concatenate([length_normalise(part) for part in embeddings], axis=1) * scale).astype(np.float32)
