"""Training configuration: defaults, a YAML file, then flags, in that order of precedence.

The resolved configuration is saved in the experiment directory, so a run can be
repeated from `exp/NAME/config.yaml` alone.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from spkverif.base.errors import SpkverifError
from spkverif.base.ranges import AT_LEAST_ONE, NOT_NEGATIVE, POSITIVE, PROBABILITY, Range, check, describe, range_of
from spkverif.io.atomic import atomic_write


@dataclass(frozen=True)
class Flag:
    """A `spkverif train` flag and the setting it sets (`key`, dotted); the CLI makes its Click option from this.

    `kind` is int, float, str or bool (a bool flag takes no value and sets true); `valid`
    and `choices` are the values the setting takes, `registries` the registries whose
    names it takes (listed in `--help`), `path` whether the value is a file or directory.
    """

    key: str
    name: str
    kind: type
    help: str
    valid: Range | None = None
    choices: tuple[str, ...] = ()
    registries: tuple[str, ...] = ()
    path: bool = False


def about(
    help: str,
    *,
    valid: Range | None = None,
    flag: bool | str = False,
    choices: tuple[str, ...] = (),
    path: bool = False,
    values: type | None = None,
) -> dict[str, Any]:
    """The one description of a configuration field, as its metadata: the help text, the valid range
    (`valid`, what `spkverif.base.ranges.range_of` reads) or `choices`, whether `spkverif train` has a flag
    for it (`flag=True`: `--field-name`; a string: that flag name; False: reached by `--set
    SECTION.KEY=VALUE` only) and whether the value names a file or directory (`path`). A mapping of
    names to numbers (`training.freeze`) gives its values' type as `values`; `valid` is then theirs."""
    return {"help": help, "range": valid, "flag": flag, "choices": choices, "path": path, "values": values}


def setting(default: Any, help: str, **description: Any) -> Any:
    """A configuration field with an immutable default and its description (`about`'s arguments)."""
    return field(default=default, metadata=about(help, **description))


logger = logging.getLogger(__name__)


@dataclass
class DataOptions:
    chunk_seconds: float = setting(2.0, "Length of the random training chunks (seconds).", valid=POSITIVE, flag=True)
    chunk_seconds_max: float = setting(
        0.0,
        "Above chunk_seconds: each step's chunk length, drawn uniformly from chunk_seconds to this (10 ms steps).",
        valid=NOT_NEGATIVE,
        flag=True,
    )
    sample_rate: int = setting(16000, "Sample rate the model reads (Hz).", valid=AT_LEAST_ONE)
    num_workers: int = setting(0, "Data-loader worker processes.", valid=NOT_NEGATIVE, flag=True)
    resample: bool = setting(False, "Resample audio not at the model's rate.", flag=True)
    shuffle_buffer: int = setting(1000, "Chunks a reader stream shuffles when training from shards.")
    preload: bool = setting(
        False,
        "Decode the training audio into memory once (4 bytes a sample) and cut chunks from there.",
        flag=True,
    )
    precompute_features: bool = setting(
        False,
        "Compute each training utterance's fbank once (4 bytes a bin a frame) and cut chunks from it, as "
        "Kaldi cuts examples from feats.scp; no waveform augmentation.",
        flag=True,
    )

    @property
    def chunk_samples(self) -> int:
        """A training chunk's length in samples at `sample_rate`: `chunk_seconds` rounded to a sample."""
        return round(self.chunk_seconds * self.sample_rate)


@dataclass
class TrainingOptions:
    epochs: int = setting(10, "Number of epochs.", valid=AT_LEAST_ONE, flag=True)
    batches_per_epoch: int = setting(
        100, "Batches in an epoch (an epoch is a number of batches).", valid=AT_LEAST_ONE, flag=True
    )
    speakers_per_batch: int = setting(128, "P: distinct speakers in a batch.", valid=AT_LEAST_ONE, flag=True)
    utts_per_speaker: int = setting(1, "K: chunks per speaker in a batch.", valid=AT_LEAST_ONE, flag=True)
    device: str = setting("auto", "cpu, cuda, cuda:N or auto.", flag=True)
    log_every: int = setting(10, "Steps between training-log records.", valid=AT_LEAST_ONE)
    max_grad_norm: float = setting(0.0, "Clip the gradient norm to this (0: no clipping).", valid=NOT_NEGATIVE)
    grad_accum: int = setting(
        1, "Micro-batches a step; N here equals N torchrun processes.", valid=AT_LEAST_ONE, flag=True
    )
    amp: str = setting(
        "none",
        "Mixed precision (fp16 uses a grad scaler; bf16 also speeds up CPUs with AVX512-BF16 or AMX).",
        choices=("none", "bf16", "fp16"),
        flag=True,
    )
    compile: bool = setting(
        False,
        "Compile the encoder with torch.compile (the front end and loss head stay eager): faster steps "
        "after a first one that compiles; needs a C++ compiler and Python's headers on a CPU, Triton on a GPU.",
        flag=True,
    )
    checkpoint_every: int = setting(
        0, "Also checkpoint every N steps within an epoch (0: at epoch ends only).", valid=NOT_NEGATIVE, flag=True
    )
    average_last: int = setting(
        1, "Final model = mean of the last N epoch checkpoints.", valid=AT_LEAST_ONE, flag="--average"
    )
    skip_nonfinite: bool = setting(False, "Skip steps with a NaN/inf loss instead of stopping.", flag=True)
    valid_data: str = setting("", "Data dir holding the validation trials' audio.", flag=True, path=True)
    valid_trials: str = setting("", "Trials scored after each epoch; the best model is kept.", flag=True, path=True)
    init: str = setting(
        "",
        "Start from this model file's network (train's final.pt, import's output) with a new loss head, or from "
        "a training checkpoint's network and, on the same speakers, its loss head (docs/finetuning.md).",
        flag=True,
        path=True,
    )
    freeze: dict = field(
        default_factory=dict,
        metadata=about(
            "Steps each named part (frontend, encoder, head, or a module below one: encoder.pooling) stays frozen "
            "for, from the start: {encoder: 200}.",
            valid=NOT_NEGATIVE,
            values=int,
        ),
    )
    lr_scale: dict = field(
        default_factory=dict,
        metadata=about(
            "Learning-rate factor of each named part (as training.freeze names them), under every schedule: "
            "{frontend: 0.1}.",
            valid=POSITIVE,
            values=float,
        ),
    )


@dataclass
class AugmentOptions:
    noise: str = setting("", "Noise data dir, or a MUSAN dir with musan_{noise,music,speech}.", flag=True, path=True)
    noise_prob: float = setting(0.6, "Share of chunks that get additive noise.", valid=PROBABILITY)
    noise_snr: list = field(default_factory=lambda: [10.0, 20.0], metadata=about("[low, high] SNR of noise (dB)."))
    music_snr: list = field(default_factory=lambda: [5.0, 15.0], metadata=about("[low, high] SNR of music (dB)."))
    babble_snr: list = field(default_factory=lambda: [13.0, 20.0], metadata=about("[low, high] SNR of babble (dB)."))
    babble_speakers: list = field(default_factory=lambda: [3, 7], metadata=about("[low, high] speakers in babble."))
    rir: str = setting("", "Room impulse responses data dir, for reverberation.", flag=True, path=True)
    rir_prob: float = setting(0.2, "Share of chunks that get reverberation.", valid=PROBABILITY)
    speed_perturb: bool = setting(False, "Speeds 0.9/1.0/1.1, each speed a new speaker.", flag=True)
    spec_augment: bool = setting(False, "Frequency and time masking of features.", flag=True)
    cache_size: int = setting(256, "Noise and RIR recordings kept in memory.", valid=NOT_NEGATIVE)
    channel_prob: float = setting(0.0, "Share of chunks passed through a simulated channel.", valid=PROBABILITY)
    channels: list = field(
        default_factory=lambda: ["bandlimit", "telephone", "gain", "room"],
        metadata=about("Channels drawn from (spkverif list channels)."),
    )


@dataclass
class Component:
    """A registered component by name, with the options its builder takes."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    seed: int = setting(0, "Seed for every random choice.", valid=NOT_NEGATIVE, flag=True)
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
LEARNING_RATE_RANGE = POSITIVE
# The flags that set a component (a registered name) or one of its options; a component's other
# options are its builder's arguments (`spkverif list`), reached by `--set SECTION.KEY=VALUE`.
COMPONENT_FLAGS = (
    Flag("loss.name", "--loss", str, "Loss by name; replaces the config's loss and its options "
         "(spkverif list losses):", registries=("losses",)),
    Flag("model.name", "--model", str, "Model by name; replaces the config's model and its options "
         "(spkverif list models):", registries=("models",)),
    Flag("loss.mining", "--mining", str, "Triplet mining, loss triplet only:", registries=("minings",)),
    Flag("margin_scheduler.name", "--margin-scheduler", str, "Margin schedule for aam, am, subcenter_aam "
         "(options by --set margin_scheduler.KEY=VALUE):", registries=("margin-schedulers",)),
    Flag("optimizer.lr", "--lr", float, "Learning rate.", valid=LEARNING_RATE_RANGE),
)  # fmt: skip


def _field_flag(key: str, item: Any) -> Flag:
    kind = type(item.default) if item.default is not MISSING else list
    name = item.metadata["flag"] if isinstance(item.metadata["flag"], str) else f"--{item.name.replace('_', '-')}"
    meta = item.metadata
    return Flag(key, name, kind, meta["help"], meta["range"], meta["choices"], path=meta["path"])


def train_flags() -> list[Flag]:
    """Every `spkverif train` flag: the components' (COMPONENT_FLAGS), then each configuration
    field declared with `flag` (`seed`, then the sections in order)."""
    flags = list(COMPONENT_FLAGS)
    for prefix, kind in (("", TrainConfig), *((f"{name}.", options) for name, options in _SECTIONS.items())):
        for item in fields(kind):
            if item.metadata.get("flag"):
                flags.append(_field_flag(prefix + item.name, item))
    return flags


def settings() -> list[tuple[str, Any]]:
    """(dotted key, dataclass field) of every setting outside the components, in file order."""
    found = [("seed", next(item for item in fields(TrainConfig) if item.name == "seed"))]
    for name, kind in _SECTIONS.items():
        found += [(f"{name}.{item.name}", item) for item in fields(kind)]
    return found


def settings_markdown() -> str:
    """The table of every setting (key, default, valid values, flag, meaning) that docs/configuration.md holds."""
    flags = {flag.key: flag.name for flag in train_flags()}
    rows = ["| setting | default | valid values | flag | meaning |", "|---|---|---|---|---|"]
    for key, item in settings():
        default = item.default if item.default is not MISSING else item.default_factory()
        valid = describe(item.metadata["range"]) if item.metadata.get("range") else ", ".join(item.metadata["choices"])
        if item.metadata.get("values"):
            valid = f"PART: {valid}"
        flag = f"`{flags[key]}`" if key in flags else ""
        rows.append(f"| `{key}` | `{default!r}` | {valid} | {flag} | {item.metadata['help']} |")
    defaults = TrainConfig().to_dict()
    for flag in COMPONENT_FLAGS:
        section, _, option = flag.key.partition(".")
        default = defaults[section].get(option)
        shown = f"`{default!r}`" if default is not None else ""
        valid = describe(flag.valid) if flag.valid else f"`spkverif list {' '.join(flag.registries)}`"
        rows.append(f"| `{flag.key}` | {shown} | {valid} | `{flag.name}` | {flag.help.rstrip(':')} |")
    return "\n".join(rows) + "\n"


def option_range(dotted: str) -> Range | None:
    """The valid range of a setting by its dotted name (`training.epochs`, `seed`, `optimizer.lr`)."""
    if dotted == "optimizer.lr":
        return LEARNING_RATE_RANGE
    section, _, key = dotted.rpartition(".")
    return range_of(_SECTIONS[section] if section else TrainConfig, key)


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
    """Defaults, then the file (after the base files it names by `defaults:`, base first), then
    overrides. Naming another model or loss (in a file, or by flag) drops the options given
    before for the old one, which the new one would not take.

    With `training.init`, the network is then that file's (`apply_init`).

    Raises `SpkverifError` naming the file (and line) for a missing or unreadable file, a
    `defaults:` cycle or missing base, an unknown section or option, or a value out of range.
    """
    raw = TrainConfig().to_dict()
    source = Path(path) if path is not None else None
    for file, values in resolve_defaults(source) if source is not None else []:
        _merge_file(raw, values, file)
    explicit = set()
    for keys, value in overrides or []:
        explicit.add(".".join(keys))
        explicit |= {f"{keys[0]}.{key}" for key in value} if len(keys) == 1 and isinstance(value, dict) else set()
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
    config = _from_dict(raw, source)
    if config.training.init:
        apply_init(config, explicit)
    return config


# With training.init, these are the file's whatever the command line says; its network's other
# settings (the model's and front end's options) yield to a flag, as long as the weights fit.
INIT_IDENTITY = ("model.name", "frontend.name", "data.sample_rate")


def read_init(path: str | Path) -> dict[str, Any]:
    """The payload of `training.init`'s file (a model file or a training checkpoint, read by
    `spkverif.models.files.read_checkpoint`, nothing in it run), its `model` entry in today's
    shape (`upgrade_spec`). Raises `SpkverifError` naming the file, its message starting
    `training.init: `, for a file that is missing, not a model file, or holds no network's description."""
    from spkverif.models.files import read_checkpoint
    from spkverif.models.legacy import upgrade_spec

    try:
        payload = read_checkpoint(path)
    except SpkverifError as error:
        raise SpkverifError(f"training.init: {error.message}", error.path, error.line) from None
    stored = payload.get("model")
    if not isinstance(stored, dict) or not isinstance(stored.get("name"), str):
        raise SpkverifError("training.init: the file's `model` entry is not a network's name and options", path)
    payload["model"] = upgrade_spec(stored, payload.get("sample_rate"))
    return payload


def _network_settings(model: Component, frontend: Component, sample_rate: int) -> dict[str, Any]:
    """A network's settings by dotted key (model.name, model.OPTION, frontend.name, ..., data.sample_rate)."""
    return {
        "model.name": model.name, **{f"model.{key}": value for key, value in model.options.items()},
        "frontend.name": frontend.name, **{f"frontend.{key}": value for key, value in frontend.options.items()},
        "data.sample_rate": sample_rate,
    }  # fmt: skip


def apply_init(config: TrainConfig, explicit: set[str]) -> None:
    """Make `config`'s network (model, frontend, data.sample_rate) the one `training.init`'s file holds.

    The file wins over the configuration's files and defaults (a warning lists the values a file
    gave that it replaces); a key in `explicit` (set by a flag or `--set`) that differs wins over
    the file for a model's or front end's option (the weights must still fit, `Trainer.initialise`),
    and is refused for `INIT_IDENTITY`. Raises `SpkverifError` naming the file: its reading's
    errors (`read_init`), and `training.init: the checkpoint holds another network: KEY 'A' there,
    'B' on the command line`.
    """
    path = config.training.init
    spec = read_init(path)["model"]
    stored = _network_settings(
        Component(spec["name"], dict(spec.get("options") or {})),
        Component(spec["frontend"]["name"], dict(spec["frontend"].get("options") or {})),
        spec["sample_rate"],
    )
    current = _network_settings(config.model, config.frontend, config.data.sample_rate)
    default = TrainConfig()
    defaults = _network_settings(default.model, default.frontend, default.data.sample_rate)
    chosen, replaced = dict(stored), []
    for key in [*INIT_IDENTITY, *sorted((set(stored) | set(current)) - set(INIT_IDENTITY))]:
        if key not in current or current[key] == stored.get(key):
            continue
        if key in explicit and key in INIT_IDENTITY:
            raise SpkverifError(
                f"training.init: the checkpoint holds another network: {key} {stored[key]!r} there, "
                f"{current[key]!r} on the command line",
                path,
            )
        if key in explicit:
            chosen[key] = current[key]
            logger.warning("%s: %s=%r on the command line replaces the file's %r", path, key, current[key],
                           stored.get(key))  # fmt: skip
        elif current[key] != defaults.get(key):
            replaced.append(f"{key} {stored.get(key)!r} (the configuration's {current[key]!r})")
    if replaced:
        logger.warning("%s: training.init's network wins over the configuration's: %s", path, ", ".join(replaced))
    options = {section: {key.partition(".")[2]: value for key, value in chosen.items()
                         if key.startswith(f"{section}.") and key != f"{section}.name"}
               for section in ("model", "frontend")}  # fmt: skip
    config.model = Component(chosen["model.name"], options["model"])
    config.frontend = Component(chosen["frontend.name"], options["frontend"])
    config.data.sample_rate = chosen["data.sample_rate"]


DEFAULTS_KEY = "defaults"


def resolve_defaults(path: Path, including: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """The chain of files a configuration names by `defaults: BASE.yaml` (a path relative to the
    file that names it), base first, each with its own values (the `defaults` key removed).

    Raises `SpkverifError` for a cycle (naming every file in it) and, at the `defaults:` line,
    for a base that does not exist or a value that is not one file name.
    """
    if path.resolve() in including:
        cycle = " -> ".join(str(file) for file in (*including, path.resolve()))
        raise SpkverifError(f"defaults: files include each other: {cycle}", path)
    values = _read_yaml(path)
    if DEFAULTS_KEY not in values:
        return [(path, values)]
    base = values.pop(DEFAULTS_KEY)
    line = _key_line(path, DEFAULTS_KEY)
    if not isinstance(base, str) or not base.strip():
        raise SpkverifError(f"defaults: must name one base file (relative to this one), not {base!r}", path, line)
    base_path = path.parent / base
    if not base_path.is_file():
        raise SpkverifError(f"defaults: no such base file {base!r} ({base_path})", path, line)
    return [*resolve_defaults(base_path, (*including, path.resolve())), (path, values)]


def _key_line(path: Path, key: str) -> int | None:
    """The line of a top-level key of a YAML file already read once (so known to parse)."""
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    lines = [name.start_mark.line + 1 for name, _ in getattr(root, "value", []) if name.value == key]
    return lines[0] if lines else None


def _merge_file(raw: dict[str, Any], from_file: dict[str, Any], source: Path) -> None:
    """Put one file's values over `raw`, section by section; a component named anew starts empty."""
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


def _from_dict(raw: dict[str, Any], source: Path | None) -> TrainConfig:
    config = TrainConfig()
    config.seed = check(option_range("seed"), _coerce(raw["seed"], int, "seed", source), "seed", source)
    for section, kind in _SECTIONS.items():
        known = {f.name: f for f in fields(kind)}
        values = {}
        for key, value in raw[section].items():
            if key not in known:
                raise SpkverifError(f"unknown option {section}.{key}; options are: {', '.join(known)}", source)
            default = getattr(kind(), key)
            values[key] = _coerce(value, type(default), f"{section}.{key}", source, known[key].metadata.get("values"))
            valid = known[key].metadata.get("range")
            for item in values[key].values() if isinstance(values[key], dict) else [values[key]]:
                if valid is not None:
                    check(valid, item, f"{section}.{key}", source)
            _check_choice(known[key].metadata.get("choices"), values[key], f"{section}.{key}", source)
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


def _check_choice(choices: tuple[str, ...] | None, value: Any, name: str, source: Path | None) -> None:
    """A setting declared with `choices` takes one of them (the CLI's flag offers the same)."""
    if choices and value not in choices:
        raise SpkverifError(f"{name} must be {', '.join(choices[:-1])} or {choices[-1]}, not {value!r}", source)


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


def _coerce(value: Any, kind: type, name: str, source: Path | None, values: type | None = None) -> Any:
    if kind is str and value is None:
        return ""
    if kind is dict:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(key, str) and key for key in value):
            raise SpkverifError(f"{name} must map names to {(values or str).__name__}s, such as "
                                f"{{encoder: 2}}, not {value!r}", source)  # fmt: skip
        return {key: _coerce(item, values or str, f"{name}.{key}", source) for key, item in value.items()}
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
