"""What every importer shares: reading a peer's YAML, loading renamed weights strictly, writing the model file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import yaml

from spkverif.base.errors import SpkverifError
from spkverif.models import SpeakerEmbeddingModel, build_model
from spkverif.models.files import load_safely, model_fingerprint, model_payload, save_atomic

# The tensors of a BatchNorm layer, as a regex group for the importers' key-renaming rules.
BATCH_NORM_KEYS = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


class _TaggedLoader(yaml.SafeLoader):
    """A YAML loader that keeps HyperPyYAML tags (`!new:module.Class`, `!ref <key>`) as plain data."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return {"__tag__": suffix, **loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.SequenceNode):
        return {"__tag__": suffix, "__args__": loader.construct_sequence(node, deep=True)}
    return {"__tag__": suffix, "__value__": loader.construct_scalar(node)}


_TaggedLoader.add_multi_constructor("!", _tagged)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file as data; HyperPyYAML tags become `{"__tag__": ...}` dicts, `!ref <key>` is resolved."""
    if not path.is_file():
        raise SpkverifError("no such configuration file", path)
    try:
        data = yaml.load(path.read_text(), Loader=_TaggedLoader)
    except yaml.YAMLError as error:
        raise SpkverifError(f"not YAML: {str(error).splitlines()[0]}", path) from None
    if not isinstance(data, dict):
        raise SpkverifError("expected a mapping at the top of the file", path)
    return _resolve(data, data, path)


def _resolve(value: Any, root: dict[str, Any], path: Path) -> Any:
    if isinstance(value, dict):
        if value.get("__tag__") == "ref":
            match = re.fullmatch(r"<([^<>]+)>", str(value.get("__value__", "")).strip())
            key = match.group(1) if match else None
            if key is None or key not in root:
                raise SpkverifError(f"cannot resolve !ref {value.get('__value__')!r}", path)
            return _resolve(root[key], root, path)
        return {key: _resolve(item, root, path) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, root, path) for item in value]
    return value


def read_state_dict(path: Path, nested: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors: the file's dict itself, or the first of `nested` keys holding one.

    Read with `weights_only=True` and nothing allowed beyond torch's defaults (`load_safely`):
    a file that names a function or class of its own is refused with one line, unrun.
    Raises `SpkverifError` for a missing, unreadable or refused file, or one without a state_dict.
    """
    if not path.is_file():
        raise SpkverifError("no such checkpoint", path)
    payload = load_safely(path, "not a PyTorch checkpoint of weights", "not a readable PyTorch checkpoint")
    for key in nested:
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise SpkverifError("expected a dictionary of tensors (a state_dict)", path)
    return payload


def load_renamed(
    model: SpeakerEmbeddingModel, state: dict[str, torch.Tensor], rename: list[tuple[str, str]], path: Path
) -> None:
    """Rename peer keys by the first matching (regex, replacement), reshape to ours, load strictly.

    Raises `SpkverifError` with one line naming the first few keys that do not fit: peer keys
    no rule renames or ours lacks, and keys of ours the checkpoint lacks (both, when both
    occur); else the first key whose shape differs.
    """
    ours = model.state_dict()
    sources: dict[str, str] = {}  # our key -> the peer's
    unexpected: list[str] = []
    for key in state:
        target = next((re.sub(p, r, key) for p, r in rename if re.fullmatch(p, key)), None)
        if target is None or target not in ours:
            unexpected.append(key)
        else:
            sources[target] = key
    missing = [key for key in ours if key not in sources]
    problems = []
    if unexpected:
        problems.append(f"unexpected {_first_keys(unexpected)}: not part of the architecture the configuration names")
    if missing:
        problems.append(f"missing {_first_keys(missing, 'for ')}")
    if problems:
        raise SpkverifError("; ".join(problems), path)
    renamed: dict[str, torch.Tensor] = {}
    for target, key in sources.items():
        value, expected = state[key], ours[target].shape
        if value.numel() != ours[target].numel():
            raise SpkverifError(
                f"key {key!r} has shape {tuple(value.shape)}, the configuration implies {tuple(expected)}", path
            )
        renamed[target] = value.reshape(expected).to(ours[target].dtype)
    model.load_state_dict(renamed, strict=True)


def _first_keys(keys: list[str], preposition: str = "", shown: int = 3) -> str:
    """One line's worth: "key 'a'" or "keys 'a', 'b', 'c' (and 5 more)", the first `shown` of `keys`."""
    named = ", ".join(repr(key) for key in keys[:shown])
    more = f" (and {len(keys) - shown} more)" if len(keys) > shown else ""
    return f"key {preposition}{named}" if len(keys) == 1 else f"keys {preposition}{named}{more}"


def write_model(name: str, arguments: dict[str, Any], state: dict[str, torch.Tensor], rename: list[tuple[str, str]],
                checkpoint: Path, out: Path, origin: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Build our model `name` (`arguments`: `build_model`'s options, frontend and sample_rate), load the
    peer's renamed weights, write it as a model file."""
    model = build_model(name, **arguments)
    load_renamed(model, state, rename, checkpoint)
    model.eval()
    save_atomic(model_payload(model, {"imported_from": origin}), out)
    return {"model": model.spec, "fingerprint": model_fingerprint(model), "path": str(out)}
