"""Training configuration: defaults, a YAML file, then flags, in that order of precedence.

The resolved configuration is saved in the experiment directory, so a run can be
repeated from `exp/NAME/config.yaml` alone.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from spkverif.errors import SpkverifError
from spkverif.io.atomic import atomic_write
from spkverif.ranges import AT_LEAST_ONE, NOT_NEGATIVE, POSITIVE, PROBABILITY, Range, check, range_of, ranged

logger = logging.getLogger(__name__)


@dataclass
class DataOptions:
    chunk_seconds: float = ranged(2.0, POSITIVE)
    sample_rate: int = ranged(16000, AT_LEAST_ONE)
    num_workers: int = ranged(0, NOT_NEGATIVE)
    resample: bool = False
    shuffle_buffer: int = 1000  # chunks a reader stream shuffles when training from shards


@dataclass
class TrainingOptions:
    epochs: int = ranged(10, AT_LEAST_ONE)
    batches_per_epoch: int = ranged(100, AT_LEAST_ONE)
    speakers_per_batch: int = ranged(128, AT_LEAST_ONE)
    utts_per_speaker: int = ranged(1, AT_LEAST_ONE)
    device: str = "auto"
    log_every: int = ranged(10, AT_LEAST_ONE)
    max_grad_norm: float = ranged(0.0, NOT_NEGATIVE)
    grad_accum: int = ranged(1, AT_LEAST_ONE)
    amp: str = "none"
    checkpoint_every: int = ranged(0, NOT_NEGATIVE)
    average_last: int = ranged(1, AT_LEAST_ONE)
    skip_nonfinite: bool = False
    valid_data: str = ""
    valid_trials: str = ""


@dataclass
class AugmentOptions:
    noise: str = ""
    noise_prob: float = ranged(0.6, PROBABILITY)
    noise_snr: list = field(default_factory=lambda: [10.0, 20.0])
    music_snr: list = field(default_factory=lambda: [5.0, 15.0])
    babble_snr: list = field(default_factory=lambda: [13.0, 20.0])
    babble_speakers: list = field(default_factory=lambda: [3, 7])
    rir: str = ""
    rir_prob: float = ranged(0.2, PROBABILITY)
    speed_perturb: bool = False
    spec_augment: bool = False
    cache_size: int = ranged(256, NOT_NEGATIVE)
    channel_prob: float = ranged(0.0, PROBABILITY)
    channels: list = field(default_factory=lambda: ["bandlimit", "telephone", "gain", "room"])


@dataclass
class Component:
    """A registered component by name, with the options its builder takes."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    seed: int = 0
    data: DataOptions = field(default_factory=DataOptions)
    training: TrainingOptions = field(default_factory=TrainingOptions)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    model: Component = field(default_factory=lambda: Component("xvector"))
    # the model's front end (spkverif.frontends); an empty name is the model's own default
    frontend: Component = field(default_factory=lambda: Component(""))
    loss: Component = field(default_factory=lambda: Component("aam"))
    optimizer: Component = field(
        default_factory=lambda: Component("sgd", {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4})
    )
    scheduler: Component = field(default_factory=lambda: Component("constant"))
    margin_scheduler: Component = field(default_factory=lambda: Component("constant"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed}
        for section in _SECTIONS:
            out[section] = asdict(getattr(self, section))
        for name in _COMPONENTS:
            component: Component = getattr(self, name)
            out[name] = {"name": component.name, **component.options}
        return out

    def save(self, path: str | Path) -> None:
        with atomic_write(path) as handle:
            yaml.safe_dump(self.to_dict(), handle, sort_keys=False)


_COMPONENTS = ("model", "frontend", "loss", "optimizer", "scheduler", "margin_scheduler")
_UNNAMED_ALLOWED = ("frontend",)
_SECTIONS = {"data": DataOptions, "training": TrainingOptions, "augment": AugmentOptions}
SEED_RANGE = NOT_NEGATIVE
LEARNING_RATE_RANGE = POSITIVE


def option_range(dotted: str) -> Range | None:
    """The valid range of a setting by its dotted name (`training.epochs`, `seed`, `optimizer.lr`)."""
    if dotted == "seed":
        return SEED_RANGE
    if dotted == "optimizer.lr":
        return LEARNING_RATE_RANGE
    section, _, key = dotted.partition(".")
    return range_of(_SECTIONS[section], key)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error, not the last one winning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpkverifError("no such config file", path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise SpkverifError(f"not UTF-8 text (byte 0x{error.object[error.start]:02x})", path, line) from None
    try:
        loaded = yaml.load(text, Loader=_StrictLoader) or {}  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise SpkverifError(
            f"not valid YAML: {getattr(error, 'problem', error)}", path, mark.line + 1 if mark else None
        ) from None
    if not isinstance(loaded, dict):
        raise SpkverifError("a config file must be a mapping of sections", path)
    return loaded


def parse_override(text: str) -> tuple[list[str], Any]:
    """`training.epochs=5` -> (['training', 'epochs'], 5); the value is read as YAML."""
    if "=" not in text:
        raise SpkverifError(f"--set {text!r}: expected SECTION.KEY=VALUE")
    key, value = text.split("=", 1)
    try:
        return key.strip().split("."), yaml.safe_load(value)
    except yaml.YAMLError:
        raise SpkverifError(f"--set {text!r}: the value is not valid YAML") from None


def load_train_config(
    path: str | Path | None = None, overrides: list[tuple[list[str], Any]] | None = None
) -> TrainConfig:
    """Defaults, then the file, then overrides. Naming another model or loss by flag
    drops the file's options for the old one, which the new one would not take."""
    raw = TrainConfig().to_dict()
    source = Path(path) if path is not None else None
    if source is not None:
        from_file = _read_yaml(source)
        for section, value in from_file.items():
            if section not in raw:
                raise SpkverifError(f"unknown section {section!r}; sections are: {', '.join(raw)}", source)
            if isinstance(raw[section], dict):
                if not isinstance(value, dict):
                    raise SpkverifError(f"section {section!r} must be a mapping", source)
                if section in _COMPONENTS and "name" in value and value["name"] != raw[section]["name"]:
                    raw[section] = {}
                raw[section].update(value)
            else:
                raw[section] = value
    for keys, value in overrides or []:
        section = keys[0]
        if section not in raw:
            raise SpkverifError(f"unknown section {section!r}; sections are: {', '.join(raw)}")
        if len(keys) == 1:
            raw[section] = value
            continue
        if len(keys) != 2 or not isinstance(raw[section], dict):
            raise SpkverifError(f"cannot set {'.'.join(keys)!r}")
        if section in _COMPONENTS and keys[1] == "name" and value != raw[section].get("name"):
            raw[section] = {}
        raw[section][keys[1]] = value
    return _from_dict(raw, source)


def _from_dict(raw: dict[str, Any], source: Path | None) -> TrainConfig:
    config = TrainConfig()
    config.seed = check(SEED_RANGE, _coerce(raw["seed"], int, "seed", source), "seed", source)
    for section, kind in _SECTIONS.items():
        known = {f.name: f for f in fields(kind)}
        values = {}
        for key, value in raw[section].items():
            if key not in known:
                raise SpkverifError(f"unknown option {section}.{key}; options are: {', '.join(known)}", source)
            default = getattr(kind(), key)
            values[key] = _coerce(value, type(default), f"{section}.{key}", source)
            valid = known[key].metadata.get("range")
            if valid is not None:
                check(valid, values[key], f"{section}.{key}", source)
            if isinstance(values[key], list) and _is_interval(default):
                _check_interval(values[key], f"{section}.{key}", source)
        setattr(config, section, kind(**values))
    learning_rate = raw["optimizer"].get("lr")
    if isinstance(learning_rate, (int, float)) and not isinstance(learning_rate, bool):
        check(LEARNING_RATE_RANGE, learning_rate, "optimizer.lr", source)
    _move_frontend_options(raw, source)
    for name in _COMPONENTS:
        section = copy.deepcopy(raw[name])
        if not isinstance(section, dict) or not (section.get("name") or name in _UNNAMED_ALLOWED):
            raise SpkverifError(f"section {name!r} needs a name", source)
        component_name = section.pop("name", "") or ""
        for key, value in section.items():
            _require_finite(value, f"{name}.{key}", source)
        setattr(config, name, Component(str(component_name), section))
    return config


def _move_frontend_options(raw: dict[str, Any], source: Path | None) -> None:
    """Front-end options an old configuration holds under `model:` (`num_mel_bins`, `dither`,
    SincNet's; `frontend` naming a filterbank) move to `frontend:`, with a deprecation note;
    `model.sample_rate` must equal `data.sample_rate` (the front end runs at the data's rate)
    and is dropped. Raises `SpkverifError` where the old and the new place disagree."""
    from spkverif.models import legacy

    model, frontend = raw["model"], raw["frontend"]
    if not isinstance(model, dict) or not isinstance(frontend, dict):
        return
    kept, moved, rate = legacy.split_options(str(model.get("name")), {k: v for k, v in model.items() if k != "name"})
    moves = {**legacy.FRONTEND_OPTIONS.get(str(model.get("name")), {}), "frontend": "name"}
    for key in sorted(set(model) - set(kept) - {"name"}):
        target = moves.get(key)
        logger.warning(
            "%s: model.%s is a front-end option now; write it as %s",
            source or "--set",
            key,
            f"frontend.{target}" if target else "data.sample_rate (model.sample_rate is dropped)",
        )
    if rate is not None and rate != raw["data"].get("sample_rate"):
        raise SpkverifError(
            f"model.sample_rate {rate} is not data.sample_rate {raw['data'].get('sample_rate')}: "
            "the front end runs at data.sample_rate; set that alone",
            source,
        )
    if moved["name"] and frontend.get("name") not in ("", None, moved["name"]):
        raise SpkverifError(f"model.frontend {moved['name']!r} and frontend.name {frontend['name']!r} disagree", source)
    for key, value in moved["options"].items():
        if key in frontend and frontend[key] != value:
            raise SpkverifError(f"frontend.{key} is given twice (also in model:) with different values", source)
    raw["model"] = {"name": model.get("name"), **kept}
    raw["frontend"] = {**frontend, **moved["options"], "name": moved["name"] or frontend.get("name", "")}


def _is_interval(default: list) -> bool:
    """Whether a list option is a [low, high] pair (its default holds numbers), not a list of names."""
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in default)


def _check_interval(value: list, name: str, source: Path | None) -> None:
    """A [low, high] option (SNRs in dB, babble speakers): two finite numbers, low <= high."""
    _require_finite(value, name, source)
    if len(value) != 2 or not all(isinstance(v, int | float) for v in value) or value[0] > value[1]:
        raise SpkverifError(f"{name} must be [low, high] with low <= high, not {value!r}", source)


def _require_finite(value: Any, name: str, source: Path | None) -> None:
    """NaN and inf are no value of any option (a component's own builder checks its ranges)."""
    values = value if isinstance(value, list | tuple) else [value]
    if any(isinstance(item, float) and not math.isfinite(item) for item in values):
        raise SpkverifError(f"{name} must be a finite number, not {value!r}", source)


def _coerce(value: Any, kind: type, name: str, source: Path | None) -> Any:
    if kind is str and value is None:
        return ""
    if kind is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise SpkverifError(f"{name} must be a list such as [10, 20], not {value!r}", source)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise SpkverifError(f"{name} must be true or false, not {value!r}", source)
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise SpkverifError(f"{name} must be {kind.__name__}, not {value!r}", source) from None
