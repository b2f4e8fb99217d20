"""An exported file whose metadata contradicts its network is refused when opened (issue #31, item 8).

The embedding size in `spkverif.json` must be the network's (declared in the ONNX graph,
or seen on half a second of silence), and a file's `spkverif.seal` must be the hash of
its metadata and the network it runs: metadata edited, or copied from another model, is
refused with one line, and with it the calibration tied to the fingerprint it names.
Files exported before the seal (none in their metadata) open and verify as before.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spkverif.models import build_model
from spkverif.models.files import load_model, model_fingerprint, model_payload, save_atomic
from spkverif.runtime import open_model
from spkverif.runtime.base import METADATA_NAME, SEAL_NAME, seal
from spkverif.runtime.onnx import graph_digest, top_level_fields
from spkverif.runtime.pytorch import torchscript_digest
from spkverif.stages.export import export_model
from tests.conftest import write_wav

TINY = {"channels": 16, "stats_channels": 32, "embedding_dim": 8}
ANOTHER_NETWORK = (
    "spkverif.json metadata does not belong to the network in this file (copied from another model, or edited): "
    "spkverif.seal does not match"
)
SAYS_512 = "spkverif.json metadata says embedding_dim 512, but the network in the file outputs"


def _model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_atomic(model_payload(build_model("xvector", TINY)), path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models A and B (same network, other weights), A's ONNX and TorchScript exports, B's TorchScript
    export, two recordings and a calibration made for A."""
    from click.testing import CliRunner

    from spkverif.cli import cli

    root = tmp_path_factory.mktemp("consistency")
    found = {"a": _model(root / "a.pt", 0), "b": _model(root / "b.pt", 1)}
    for name, source, out in (("a_onnx", "a", "a.onnx"), ("a_ts", "a", "a.ts"), ("b_ts", "b", "b.ts")):
        found[name] = root / out
        export_model(found[source], found[name])
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.5
    (root / "trials").write_text("".join(f"e{i} t{i} {'target' if x else 'nontarget'}\n"
                                         for i, x in enumerate(labels)))  # fmt: skip
    (root / "scores").write_text("".join(f"e{i} t{i} {0.5 * x + 0.1 + 0.15 * rng.normal():.6f}\n"
                                         for i, x in enumerate(labels)))  # fmt: skip
    found["cal"] = root / "cal.json"
    result = CliRunner().invoke(cli, [str(arg) for arg in (
        "report", "-q", "--trials", root / "trials", "--calibrate", root / "scores", "--calibrate-trials",
        root / "trials", "--bootstrap", "0", "--no-det", "--out-dir", root / "report", "--model", found["a"],
        "--save-calibration", found["cal"], root / "scores")])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    found["wav1"] = write_wav(root / "one.wav", 1.1, seed=1)
    found["wav2"] = write_wav(root / "two.wav", 2.3, seed=2)
    return found


def _one_line_refusal(result, path: Path, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"spkverif verify: error: {path}: "), lines[0]
    assert message in lines[0], lines[0]


def _onnx_with(source: Path, out: Path, metadata=None, seal_value=None, drop_seal=False, edit=None) -> Path:
    """`source` with its spkverif.json replaced by `metadata` (a dict), its seal by `seal_value`
    or dropped, and `edit(model)` applied, saved to `out`."""
    import onnx

    model = onnx.load(str(source))
    props = {prop.key: prop.value for prop in model.metadata_props}
    if metadata is not None:
        props[METADATA_NAME] = json.dumps(metadata)
    if seal_value is not None:
        props[SEAL_NAME] = seal_value
    if drop_seal:
        props.pop(SEAL_NAME)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    if edit is not None:
        edit(model)
    onnx.save(model, str(out))
    return out


def _torchscript_with(source: Path, out: Path, metadata: str | None = None, seal_value: str | None = None) -> Path:
    """`source`'s module saved again with extra files spkverif.json (`metadata`, default the
    source's own) and, if given, spkverif.seal."""
    extra = {METADATA_NAME: ""}
    module = torch.jit.load(str(source), _extra_files=extra)
    extra = {METADATA_NAME: metadata if metadata is not None else extra[METADATA_NAME].decode()}
    if seal_value is not None:
        extra[SEAL_NAME] = seal_value
    torch.jit.save(module, str(out), _extra_files=extra)
    return out


def _extras(path: Path) -> dict[str, str]:
    extra = {METADATA_NAME: "", SEAL_NAME: ""}
    torch.jit.load(str(path), _extra_files=extra)
    return {key: value.decode() for key, value in extra.items()}


@pytest.mark.slow
def test_exports_are_sealed_and_open_with_the_models_fingerprint(files) -> None:
    import onnx

    fingerprint = model_fingerprint(load_model(files["a"]))
    props = {prop.key: prop.value for prop in onnx.load(str(files["a_onnx"])).metadata_props}
    assert props[SEAL_NAME] == seal(props[METADATA_NAME], graph_digest(files["a_onnx"].read_bytes()))
    extras = _extras(files["a_ts"])
    assert extras[SEAL_NAME] == seal(extras[METADATA_NAME], torchscript_digest(files["a_ts"]))
    for kind in ("a_onnx", "a_ts"):
        embedder = open_model(files[kind], "cpu")
        assert embedder.fingerprint == fingerprint and embedder.embedding_dim == 8


def test_the_onnx_digest_leaves_out_only_the_metadata(files, tmp_path: Path) -> None:
    data = files["a_onnx"].read_bytes()
    assert b"".join(field for _, field in top_level_fields(data)) == data
    relabelled = _onnx_with(files["a_onnx"], tmp_path / "m.onnx", metadata={"anything": 1}, drop_seal=True)
    assert graph_digest(relabelled.read_bytes()) == graph_digest(data)
    with pytest.raises(ValueError):
        list(top_level_fields(b"\x0a\x7f" + b"short"))


def test_onnx_metadata_with_another_embedding_size_is_refused(run_cli, files, tmp_path: Path) -> None:
    """The metadata says 512, the graph declares (or onnxruntime infers) 8: refused, sealed or not."""
    metadata = dict(open_model(files["a_onnx"], "cpu").metadata)
    metadata["embedding_dim"] = 512
    message = f"{SAYS_512} 8 (its declared output shape"
    for name, options in (("sealed.onnx", {}), ("unsealed.onnx", {"drop_seal": True})):
        path = _onnx_with(files["a_onnx"], tmp_path / name, metadata=metadata, **options)
        _one_line_refusal(run_cli("verify", "-q", "--model", path, files["wav1"], files["wav2"]), path, message)


def test_an_onnx_graph_without_a_declared_size_is_run_on_silence(run_cli, files, tmp_path: Path) -> None:
    """Where the graph leaves the output's size open, one run on 0.5 s of silence tells it."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["waveforms"], ["embeddings"])],
        "open",
        [helper.make_tensor_value_info("waveforms", TensorProto.FLOAT, ["B", "T"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["B", "T"])],
    )
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)])
    metadata = {**open_model(files["a_onnx"], "cpu").metadata, "embedding_dim": 512}
    model.metadata_props.add(key=METADATA_NAME, value=json.dumps(metadata))
    onnx.save(model, tmp_path / "open.onnx")
    result = run_cli("verify", "-q", "--model", tmp_path / "open.onnx", files["wav1"], files["wav2"])
    message = f"{SAYS_512} 8000 (on 0.5 s of silence)"
    _one_line_refusal(result, tmp_path / "open.onnx", message)


def test_onnx_metadata_on_another_network_is_refused_with_its_calibration(run_cli, files, tmp_path: Path) -> None:
    """A's metadata and seal over a graph whose weights are not A's: the file, and so A's calibration, is refused."""
    from onnx import numpy_helper

    def other_weights(model) -> None:
        tensor = max(model.graph.initializer, key=lambda item: int(np.prod(item.dims)))
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.5, tensor.name))

    path = _onnx_with(files["a_onnx"], tmp_path / "copied.onnx", edit=other_weights)
    for extra in ([], ["--calibration", files["cal"]]):
        result = run_cli("verify", "-q", "--model", path, *extra, files["wav1"], files["wav2"])
        _one_line_refusal(result, path, ANOTHER_NETWORK)
    metadata = dict(open_model(files["a_onnx"], "cpu").metadata)
    metadata["min_samples"] += 1  # any edit of the metadata breaks the seal too
    path = _onnx_with(files["a_onnx"], tmp_path / "edited.onnx", metadata=metadata)
    _one_line_refusal(run_cli("verify", "-q", "--model", path, files["wav1"], files["wav2"]), path, ANOTHER_NETWORK)


def test_torchscript_metadata_with_another_embedding_size_is_refused(run_cli, files, tmp_path: Path) -> None:
    extras = _extras(files["a_ts"])
    metadata = json.loads(extras[METADATA_NAME])
    metadata["embedding_dim"] = 512
    message = f"{SAYS_512} 8 (on 0.5 s of silence)"
    for name, seal_value in (("unsealed.ts", None), ("sealed.ts", extras[SEAL_NAME])):
        path = _torchscript_with(files["a_ts"], tmp_path / name, json.dumps(metadata), seal_value)
        _one_line_refusal(run_cli("verify", "-q", "--model", path, files["wav1"], files["wav2"]), path, message)


def test_torchscript_metadata_copied_from_another_model_is_refused_with_its_calibration(
    run_cli, files, tmp_path: Path
) -> None:
    """B's network under A's spkverif.json and seal: A's fingerprint, and A's calibration, would have
    been accepted for B's embeddings."""
    extras = _extras(files["a_ts"])
    path = _torchscript_with(files["b_ts"], tmp_path / "copied.ts", extras[METADATA_NAME], extras[SEAL_NAME])
    for extra in ([], ["--calibration", files["cal"]]):
        result = run_cli("verify", "-q", "--model", path, *extra, files["wav1"], files["wav2"])
        _one_line_refusal(result, path, ANOTHER_NETWORK)


def test_files_exported_before_the_seal_open_and_take_their_calibration(run_cli, files, tmp_path: Path) -> None:
    """No spkverif.seal: nothing to check it against; the model's calibration is taken as before."""
    unsealed = {
        "onnx": _onnx_with(files["a_onnx"], tmp_path / "old.onnx", drop_seal=True),
        "torchscript": _torchscript_with(files["a_ts"], tmp_path / "old.ts"),
        "pytorch": files["a"],
    }
    assert SEAL_NAME not in _onnx_props(unsealed["onnx"])
    assert _extras(unsealed["torchscript"])[SEAL_NAME] == ""
    lines = {}
    for kind, path in unsealed.items():
        result = run_cli("verify", "-q", "--model", path, "--calibration", files["cal"], files["wav1"], files["wav2"])
        assert result.exit_code == 0, result.stderr
        lines[kind] = result.output.splitlines()[-1].split()  # the pair under the header line
    for kind in ("onnx", "torchscript"):
        assert float(lines[kind][2]) == pytest.approx(float(lines["pytorch"][2]), abs=1e-5)
        assert lines[kind][4] == lines["pytorch"][4]


def _onnx_props(path: Path) -> list[str]:
    import onnx

    return [prop.key for prop in onnx.load(str(path)).metadata_props]


def test_a_torchscript_archive_digest_ignores_its_extra_files(files) -> None:
    module = torch.jit.load(str(files["a_ts"]))
    buffer, again = io.BytesIO(), io.BytesIO()
    torch.jit.save(module, buffer, _extra_files={METADATA_NAME: "{}", "other": "x"})
    torch.jit.save(module, again, _extra_files={METADATA_NAME: "[]"})
    assert torchscript_digest(buffer.getvalue()) == torchscript_digest(again.getvalue())
    assert torchscript_digest(files["a_ts"]) != torchscript_digest(files["b_ts"])
