"""MHFA: multi-head factorized attentive pooling (Peng, Stafylakis, Gu, Plchot & Černocký, "An
attention-based backend allowing efficient fine-tuning of transformer models for speaker
verification", SLT 2022), a light back end for self-supervised front ends.

Two weighted sums of the transformer's layers play keys and values: each is compressed by
a linear layer; the compressed keys give, for each of `heads` heads, attention weights
over time (a linear layer, then a softmax over frames); each head pools the compressed
values with its weights; the heads' outputs, concatenated, go through one linear layer to
the embedding. The two sums are the front end's (`frontend.weighted_sums: 2`, keys
first), so their layer weights learn with the front end's.
"""

from __future__ import annotations

import torch
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count
from spkverif.models.base import SpeakerEmbeddingModel
from spkverif.models.registry import MODELS, uses_frontend


class MultiHeadFactorizedAttentivePooling(nn.Module):
    """Features (B, frames, 2 x input_dim), keys then values, -> embeddings (B, embedding_dim).

    >>> pooling = MultiHeadFactorizedAttentivePooling(32, heads=4, compression_dim=8, embedding_dim=16)
    >>> pooling(torch.randn(2, 50, 64)).shape
    torch.Size([2, 16])
    """

    def __init__(self, input_dim: int, heads: int = 64, compression_dim: int = 128, embedding_dim: int = 256):
        super().__init__()
        self.input_dim = input_dim
        self.compress_keys = nn.Linear(input_dim, compression_dim)
        self.compress_values = nn.Linear(input_dim, compression_dim)
        self.attention = nn.Linear(compression_dim, heads)
        self.embedding = nn.Linear(heads * compression_dim, embedding_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        keys, values = features.split(self.input_dim, dim=-1)
        weights = self.attention(self.compress_keys(keys)).softmax(dim=1)  # (B, frames, heads), over time
        pooled = weights.transpose(1, 2) @ self.compress_values(values)  # (B, heads, compression_dim)
        return self.embedding(pooled.flatten(start_dim=1))


@MODELS.register("mhfa")
@uses_frontend("wavlm")
def build_mhfa(
    frontend: nn.Module, /, heads: Count = 64, compression_dim: Count = 128, embedding_dim: Count = 256
) -> SpeakerEmbeddingModel:
    """MHFA (Peng et al. 2022): attentive pooling of a self-supervised front end's layers, 64 heads, 256-d.

    Needs a front end of two weighted sums (`frontend: {name: wavlm, weighted_sums: 2, ...}`;
    `SpkverifError` otherwise); 2.30M parameters at WavLM Base's width (768), 2.37M at Large's (1024),
    besides the front end.
    """
    sums = getattr(frontend, "weighted_sums", None)
    if sums != 2:
        raise SpkverifError(
            "mhfa needs a self-supervised front end of two weighted sums, its keys and values "
            f"(frontend: wavlm, hubert or wav2vec2 with weighted_sums: 2), not {type(frontend).__name__}"
            + ("" if sums is None else f" with weighted_sums: {sums}")
        )
    encoder = MultiHeadFactorizedAttentivePooling(frontend.output_dim // 2, heads, compression_dim, embedding_dim)
    return SpeakerEmbeddingModel(frontend, encoder, embedding_dim, 1, frontend.sample_rate)
