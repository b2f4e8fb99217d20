"""Self-supervised front ends: WavLM, HuBERT and wav2vec 2.0 through Hugging Face `transformers`.

The network is read from a local directory the user downloaded (`config.json` and
`model.safetensors` or `pytorch_model.bin`, as `save_pretrained` writes them);
nothing is downloaded. Its hidden states (the CNN's projected output and each
transformer layer's) are mixed by a learned softmax-weighted sum, as SUPERB
(Yang et al., Interspeech 2021) and WavLM's speaker-verification setup (Chen et
al., IEEE JSTSP 2022) do, and handed to the model's encoder as features
(B, frames, hidden_size), one frame every 20 ms at 16 kHz.

Three modes: `frozen` (the transformer is fixed and kept in eval mode; only the
layer weights and the encoder learn), `finetune` (everything learns but, with
`freeze_feature_encoder`, the CNN) and `lora` (LoRA adapters, Hu et al. 2022,
through `peft` on the attention projections; the transformer's own weights stay
fixed). LayerDrop is off (a skipped layer would shift the weighted sum's layers).
The model file holds every weight and the transformers configuration (the
`config` option, filled in from the directory), so a model file rebuilds on a
machine without the directory. `transformers` and `peft` are imported only when
such a front end is built (`pip install spkverif[ssl]`).
"""

from __future__ import annotations

import contextlib
import json
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.base.registry import Count, OneOf, Positive, Range

MODES = ("frozen", "finetune", "lora")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
"""The attention projections LoRA adapts by default (the names in WavLM, HuBERT and wav2vec 2.0)."""
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
SSL_SAMPLE_RATE = 16000
_NORM_EPS = 1e-7  # transformers' Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


def _import(module: str) -> types.ModuleType:
    """`transformers` or `peft`, or one line naming the extra that installs them."""
    try:
        return __import__(module)
    except ImportError:
        raise SpkverifError(
            f"the self-supervised front ends need the {module} package: pip install spkverif[ssl]"
        ) from None


def check_directory(path: str | Path) -> Path:
    """The directory `path` if it holds a transformers model (`config.json` and weights).

    Raises `SpkverifError` naming the directory and the missing file.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise SpkverifError("no such front-end directory (frontend.path: a local transformers model)", directory)
    if not (directory / "config.json").is_file():
        raise SpkverifError("front-end directory has no config.json (the transformers configuration)", directory)
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise SpkverifError(
            "front-end directory has no model.safetensors or pytorch_model.bin (the network's weights)", directory
        )
    return directory


def _load_pretrained(directory: Path, model_type: str) -> tuple[nn.Module, dict[str, Any]]:
    """The network saved in `directory` with its weights, float32, and its configuration as plain values."""
    transformers = _import("transformers")
    config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    _check_type(config.model_type, model_type, directory)
    config.layerdrop = 0.0  # a skipped layer would shift the weighted sum's layers
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        network = transformers.AutoModel.from_pretrained(
            directory, config=config, local_files_only=True, dtype=torch.float32
        )
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    stored = json.loads(config.to_json_string(use_diff=False))
    stored.pop("_name_or_path", None)
    return network, stored


def _from_config(stored: dict[str, Any], model_type: str) -> nn.Module:
    """The network `stored` (a model file's `config` option) describes, randomly initialised (the file's
    weights are loaded after)."""
    transformers = _import("transformers")
    _check_type(stored.get("model_type"), model_type, None)
    config = transformers.CONFIG_MAPPING[model_type].from_dict({**stored, "layerdrop": 0.0})
    return transformers.AutoModel.from_config(config, dtype=torch.float32)


def _check_type(found: Any, expected: str, where: Path | None) -> None:
    if found != expected:
        raise SpkverifError(
            f"the transformers configuration is of a {found} model, not {expected}: use frontend: {found}", where
        )


def _attention_through_projections(
    self: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, position_bias: torch.Tensor
) -> tuple[torch.Tensor, None]:
    """WavLM's attention (`WavLMAttention.torch_multi_head_self_attention`) computed through its projection
    modules rather than their weights, so LoRA adapters on them take part; the same function otherwise
    (scaled dot products plus the gated relative position bias, softmax, dropout in training)."""
    batch, length, width = hidden_states.shape
    heads = self.num_heads

    def split(values: torch.Tensor) -> torch.Tensor:
        return values.view(batch, length, heads, width // heads).transpose(1, 2)

    query = split(self.q_proj(hidden_states)) * self.scaling
    key, value = split(self.k_proj(hidden_states)), split(self.v_proj(hidden_states))
    scores = query @ key.transpose(-1, -2) + position_bias.view(batch, heads, length, length)
    if attention_mask is not None:
        scores = scores.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
    weights = F.dropout(scores.softmax(dim=-1), self.dropout, self.training)
    mixed = (weights @ value).transpose(1, 2).reshape(batch, length, width)
    return self.out_proj(mixed), None


class SelfSupervisedFrontend(nn.Module):
    """A transformers speech model and a learned softmax-weighted sum of its hidden states.

    Waveforms (B, T) at 16 kHz in [-1, 1] -> features (B, frames, weighted_sums x
    hidden_size), frames = the CNN's output length (`num_frames`: 1 + (T - 400) //
    320 for the usual 7-layer CNN). `path` is the local directory the network was
    saved to; `config` (filled in by the model file, `spec_options`) rebuilds it
    without the directory, randomly initialised before the file's weights load.
    `weighted_sums` learns that many independent sums, concatenated on the last
    axis (MHFA's keys and values take 2). `normalize_waveform` scales each
    utterance to zero mean and unit variance (the model's feature extractor's
    `do_normalize`; null reads it from `preprocessor_config.json`, false without
    one). `lora_rank`, `lora_alpha`, `lora_dropout` and `lora_targets` (module names
    inside the attention, a list or a comma-separated string) apply in `mode: lora`; `freeze_feature_encoder` keeps the
    CNN fixed in `finetune` and `lora`.

    Raises `SpkverifError` for a directory without `config.json` or weights, a
    configuration of another model type, a sample rate other than 16 kHz, neither
    or both of `path` and `config`, and a missing `transformers` or `peft`.
    """

    model_type = ""

    def __init__(
        self,
        sample_rate: int,
        /,
        path: str = "",
        mode: Annotated[str, OneOf(MODES, "self-supervised front-end mode")] = "frozen",
        weighted_sums: Count = 1,
        normalize_waveform: bool | None = None,
        freeze_feature_encoder: bool = True,
        lora_rank: Count = 8,
        lora_alpha: Positive = 16.0,
        lora_dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0,
        lora_targets: Sequence[str] = LORA_TARGETS,
        config: dict[str, Any] | None = None,
    ):
        super().__init__()
        if sample_rate != SSL_SAMPLE_RATE:
            raise SpkverifError(
                f"frontend {self.model_type} runs at {SSL_SAMPLE_RATE} Hz, not {sample_rate}: set data.sample_rate "
                f"{SSL_SAMPLE_RATE} (and data.resample)"
            )
        if path and config is not None:
            raise SpkverifError(f"frontend {self.model_type} takes path or config, not both")
        if not path and config is None:
            raise SpkverifError(f"frontend {self.model_type} needs path: the local directory of a transformers model")
        targets = lora_targets.split(",") if isinstance(lora_targets, str) else list(lora_targets)
        if path:
            directory = check_directory(path)
            self.upstream, config = _load_pretrained(directory, self.model_type)
            if normalize_waveform is None:
                normalize_waveform = _reads_normalised(directory)
        else:
            self.upstream = _from_config(config, self.model_type)
        self.sample_rate = sample_rate
        self.mode = mode
        self.normalize_waveform = bool(normalize_waveform)
        self.hidden_size = int(self.upstream.config.hidden_size)
        self.weighted_sums = weighted_sums
        self.num_layers = int(self.upstream.config.num_hidden_layers) + 1
        self.layer_weights = nn.Parameter(torch.zeros(weighted_sums, self.num_layers))
        self._conv = list(zip(self.upstream.config.conv_kernel, self.upstream.config.conv_stride, strict=True))
        self.upstream.requires_grad_(mode == "finetune")
        if mode == "lora":
            self._add_lora(lora_rank, lora_alpha, lora_dropout, targets)
        if mode != "frozen" and freeze_feature_encoder:
            self.upstream.feature_extractor.requires_grad_(False)
        self.spec_options = {
            "mode": mode, "weighted_sums": weighted_sums, "normalize_waveform": self.normalize_waveform,
            "freeze_feature_encoder": freeze_feature_encoder, "lora_rank": lora_rank, "lora_alpha": lora_alpha,
            "lora_dropout": lora_dropout, "lora_targets": targets, "config": config,
        }  # fmt: skip
        """The options that rebuild this front end from a model file alone: `path` replaced by `config`."""

    def _add_lora(self, rank: int, alpha: float, dropout: float, targets: list[str]) -> None:
        """LoRA adapters (`peft.inject_adapter_in_model`) on the modules named `targets`; only they learn."""
        peft = _import("peft")
        found = {name.rsplit(".", 1)[-1] for name, _ in self.upstream.named_modules()}
        missing = sorted(set(targets) - found)
        if missing:
            raise SpkverifError(
                f"frontend {self.model_type} has no module {', '.join(missing)} for LoRA (frontend.lora_targets)"
            )
        lora = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
        peft.inject_adapter_in_model(lora, self.upstream)
        for name, parameter in self.upstream.named_parameters():
            parameter.requires_grad_("lora_" in name)
        for module in self.upstream.modules():  # WavLM's attention reads its projections' weights directly
            if hasattr(module, "torch_multi_head_self_attention"):
                module.torch_multi_head_self_attention = types.MethodType(_attention_through_projections, module)

    @property
    def output_dim(self) -> int:
        return self.weighted_sums * self.hidden_size

    def num_frames(self, num_samples: int) -> int:
        """Frames of the CNN for `num_samples` samples (0 if too short)."""
        length = num_samples
        for kernel, stride in self._conv:
            if length < kernel:
                return 0
            length = (length - kernel) // stride + 1
        return length

    def samples_for_frames(self, num_frames: int) -> int:
        """The shortest input giving `num_frames` frames."""
        length = max(1, num_frames)
        for kernel, stride in reversed(self._conv):
            length = (length - 1) * stride + kernel
        return length

    def train(self, mode: bool = True) -> SelfSupervisedFrontend:
        """Training mode for the layer weights; a frozen transformer stays in eval mode (no dropout)."""
        super().train(mode)
        if self.mode == "frozen":
            self.upstream.eval()
        return self

    def hidden_states(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, T) -> every hidden state stacked, (layers, B, frames, hidden_size)."""
        if self.normalize_waveform:
            mean = waveforms.mean(dim=1, keepdim=True)
            variance = waveforms.var(dim=1, unbiased=False, keepdim=True)
            waveforms = (waveforms - mean) / torch.sqrt(variance + _NORM_EPS)
        frozen = self.mode == "frozen" and torch.is_grad_enabled()
        with torch.no_grad() if frozen else contextlib.nullcontext():
            outputs = self.upstream(waveforms, output_hidden_states=True)
        return torch.stack(outputs.hidden_states, dim=0)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, T) -> features (B, frames, weighted_sums x hidden_size): the weighted sums."""
        stacked = self.hidden_states(waveforms)
        weights = self.layer_weights.softmax(dim=-1).to(stacked.dtype)
        mixed = torch.einsum("sl,lbtd->btsd", weights, stacked)
        return mixed.flatten(start_dim=2)


def _reads_normalised(directory: Path) -> bool:
    """`do_normalize` of the directory's `preprocessor_config.json`; false without one."""
    settings = directory / "preprocessor_config.json"
    if not settings.is_file():
        return False
    try:
        return bool(json.loads(settings.read_text()).get("do_normalize", False))
    except (OSError, ValueError, AttributeError) as error:
        raise SpkverifError(f"unreadable preprocessor_config.json: {error}", settings) from None


class WavLM(SelfSupervisedFrontend):
    """WavLM (Chen et al. 2022) from a local transformers directory, a learned weighted sum of its layers."""

    model_type = "wavlm"


class Hubert(SelfSupervisedFrontend):
    """HuBERT (Hsu et al. 2021) from a local transformers directory, a learned weighted sum of its layers."""

    model_type = "hubert"


class Wav2Vec2(SelfSupervisedFrontend):
    """wav2vec 2.0 (Baevski et al. 2020) from a local transformers directory, a learned weighted sum of its layers."""

    model_type = "wav2vec2"


__all__ = ["LORA_TARGETS", "MODES", "Hubert", "SelfSupervisedFrontend", "Wav2Vec2", "WavLM", "check_directory"]
