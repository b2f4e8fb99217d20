"""The trainer's parts one by one: the checkpointer of named parts, the training log, the BatchNorm
step, the model's feature hook, validation through extract's code, and a data directory that
training leaves untouched."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spkverif.base.errors import SpkverifError
from spkverif.io.specifiers import load_vectors
from spkverif.losses import build_loss
from spkverif.models import build_model
from spkverif.stages.extract import extract
from spkverif.training.batchnorm import BatchNormStep
from spkverif.training.build import TrainingNetwork
from spkverif.training.checkpoint import Checkpointer, GlobalRng, Record, model_payload, read_checkpoint, save_atomic
from spkverif.training.held_out import Validator
from spkverif.training.log import Progress, RunningMean, TrainingLog
from tests.test_cli import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]
SMALL = {"channels": 32, "stats_channels": 64, "embedding_dim": 16}

# The keys of a training checkpoint, in order, as every release so far has written them.
STATE_KEYS = [
    "format", "model", "model_state", "head_state", "optimizer", "scheduler", "scaler",
    "epoch", "step", "best_eer", "epoch_means", "rng", "config", "speakers",
]  # fmt: skip


class Counter:
    """A small part of our own: anything with state_dict / load_state_dict."""

    def __init__(self, value: int = 0):
        self.value = value

    def state_dict(self) -> dict[str, int]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.value = state["value"]


def _checkpointer(directory: Path, layer: nn.Module, progress: Progress, counter: Counter) -> Checkpointer:
    checkpointer = Checkpointer(directory, steps_per_epoch=10)
    checkpointer.add("layer", layer)
    checkpointer.add("progress", progress, keys=Progress.KEYS)
    checkpointer.add("counter", counter)
    checkpointer.add("rng", GlobalRng())
    checkpointer.add("speakers", Record(lambda: ["a", "b"], "trained on other speakers"))
    return checkpointer


def test_checkpointer_round_trip_of_named_parts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    layer, progress, counter = nn.Linear(3, 2), Progress(10, epoch=2, step=4, best_eer=0.25), Counter(7)
    progress.loss_mean.add(1.5, 4)
    checkpointer = _checkpointer(tmp_path, layer, progress, counter)
    path = checkpointer.save("step_00000024.pt")
    expected = torch.rand(3)
    payload = read_checkpoint(path)
    assert list(payload) == [
        "format",
        "layer",
        "epoch",
        "step",
        "best_eer",
        "epoch_means",
        "counter",
        "rng",
        "speakers",
    ]
    assert payload["epoch_means"] == [{"total": 6.0, "count": 4}, {"total": 0.0, "count": 0}, 0]

    fresh_layer, fresh_progress, fresh_counter = nn.Linear(3, 2), Progress(10), Counter()
    fresh = _checkpointer(tmp_path, fresh_layer, fresh_progress, fresh_counter)
    assert fresh.latest() == path
    fresh.load(path)
    assert torch.equal(fresh_layer.weight, layer.weight) and torch.equal(fresh_layer.bias, layer.bias)
    assert (fresh_progress.epoch, fresh_progress.step, fresh_progress.best_eer) == (2, 4, 0.25)
    assert fresh_progress.loss_mean == RunningMean(6.0, 4) and fresh_progress.global_step == 24
    assert fresh_counter.value == 7
    assert torch.equal(torch.rand(3), expected)  # the generators continue where the checkpoint left them


def test_checkpointer_loads_only_the_parts_named(tmp_path: Path) -> None:
    layer, counter = nn.Linear(3, 2), Counter(7)
    path = _checkpointer(tmp_path, layer, Progress(10, epoch=2, step=4), counter).save("epoch_0002.pt")
    fresh_layer, fresh_progress, fresh_counter = nn.Linear(3, 2), Progress(10), Counter(1)
    fresh = _checkpointer(tmp_path, fresh_layer, fresh_progress, fresh_counter)
    fresh.load(path, only=("layer", "speakers"))
    assert torch.equal(fresh_layer.weight, layer.weight)
    assert (fresh_progress.epoch, fresh_progress.step, fresh_counter.value) == (0, 0, 1)  # the others kept
    fresh.load(path, only=(name for name in ("progress", "counter")))  # any iterable, read once
    assert (fresh_progress.epoch, fresh_progress.step, fresh_counter.value) == (2, 4, 7)
    with pytest.raises(ValueError, match="ema"):
        fresh.load(path, only=("layer", "ema"))


def test_checkpointer_keeps_only_the_newest_step_file(tmp_path: Path) -> None:
    checkpointer = _checkpointer(tmp_path, nn.Linear(2, 2), Progress(10), Counter())
    checkpointer.save("step_00000003.pt")
    checkpointer.save("step_00000006.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000006.pt"]
    checkpointer.save("epoch_0001.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0001.pt"]
    assert checkpointer.latest() == tmp_path / "epoch_0001.pt"


def test_a_part_added_later_is_an_error_or_keeps_its_state_when_optional(tmp_path: Path) -> None:
    old = Checkpointer(tmp_path, steps_per_epoch=10)
    old.add("counter", Counter(3))
    path = old.save("epoch_0001.pt")

    required = Checkpointer(tmp_path, steps_per_epoch=10)
    required.add("counter", Counter())
    required.add("ema", Counter())
    with pytest.raises(SpkverifError, match=r"the checkpoint has no ema \(part 'ema'\)") as caught:
        required.load(path)
    assert caught.value.path == str(path)

    counter, ema = Counter(), Counter(42)
    optional = Checkpointer(tmp_path, steps_per_epoch=10)
    optional.add("counter", counter)
    optional.add("ema", ema, required=False)
    optional.load(path)
    assert counter.value == 3 and ema.value == 42


def test_a_refused_checkpoint_changes_no_part(tmp_path: Path) -> None:
    saved = Checkpointer(tmp_path, steps_per_epoch=10)
    saved.add("counter", Counter(5))
    saved.add("speakers", Record(lambda: ["a", "b"]))
    path = saved.save("epoch_0001.pt")
    counter = Counter(1)
    other = Checkpointer(tmp_path, steps_per_epoch=10)
    other.add("counter", counter)
    other.add("speakers", Record(lambda: ["a", "c"], "trained on other speakers"))
    with pytest.raises(SpkverifError, match="trained on other speakers"):
        other.load(path)
    assert counter.value == 1  # every part is checked before any is loaded
    save_atomic(model_payload(build_model("xvector", SMALL)), tmp_path / "final.pt")
    with pytest.raises(SpkverifError, match="not a training checkpoint"):
        other.load(tmp_path / "final.pt")


def test_a_checkpoint_holds_the_keys_of_earlier_releases_in_order(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", tmp_path / "e", *TINY_MODEL)
    assert result.exit_code == 0, result.stderr
    payload = read_checkpoint(tmp_path / "e" / "models" / "epoch_0001.pt")
    assert list(payload) == STATE_KEYS
    assert payload["format"] == "spkverif-train-state" and (payload["epoch"], payload["step"]) == (1, 0)
    assert payload["best_eer"] == math.inf and payload["epoch_means"][2] == 0
    assert payload["speakers"] == sorted(payload["speakers"]) and len(payload["speakers"]) == 6


def test_the_log_appends_and_cuts_back_to_a_step(tmp_path: Path) -> None:
    log = TrainingLog(tmp_path / "train_log.jsonl")
    log.write({"event": "old", "global_step": 9})
    log.start({"event": "start", "global_step": 0})
    for step in (1, 2, 3):
        log.write({"event": "step", "global_step": step, "loss": 1.0 / step})
    assert [r["event"] for r in log.records()] == ["start", "step", "step", "step"]
    log.truncate(2)
    assert [r.get("loss") for r in log.records()] == [None, 1.0, 0.5]
    text = (tmp_path / "train_log.jsonl").read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    silent = TrainingLog(tmp_path / "other.jsonl", enabled=False)
    silent.start({"event": "start"})
    silent.write({"event": "step"})
    silent.truncate(0)
    assert not (tmp_path / "other.jsonl").exists()


def test_batchnorm_step_averages_micro_batches_and_rolls_back() -> None:
    torch.manual_seed(0)
    layer = nn.BatchNorm1d(3)
    first, second = torch.randn(8, 3) * 2 + 1, torch.randn(8, 3) - 1
    alone = []
    for inputs in (first, second):
        copy = nn.BatchNorm1d(3)
        copy(inputs)
        alone.append(copy.running_mean.clone())
    step = BatchNormStep(layer, average=True, keep=True)
    for inputs in (first, second):
        step.before_part()
        layer(inputs)
        step.after_part()
    step.finish(lambda tensor: tensor)
    torch.testing.assert_close(layer.running_mean, (alone[0] + alone[1]) / 2)
    assert int(layer.num_batches_tracked) == 1  # the step counts once, as one batch of both would

    before_mean, before_count = layer.running_mean.clone(), int(layer.num_batches_tracked)
    step = BatchNormStep(layer, average=False, keep=True)
    layer(first * 10)
    step.rollback()
    assert torch.equal(layer.running_mean, before_mean) and int(layer.num_batches_tracked) == before_count


def test_the_feature_hook_sits_between_front_end_and_encoder() -> None:
    torch.manual_seed(0)
    model = build_model("xvector", SMALL).eval()
    waveforms = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        plain = model(waveforms)
        assert torch.equal(plain, model.encoder(model.frontend(waveforms)))
        doubled = model(waveforms, lambda features: features * 2)
        assert torch.equal(doubled, model.encoder(model.frontend(waveforms) * 2))
        seen = []
        model(waveforms, lambda features: seen.append(features.shape) or features)
        assert seen == [model.frontend(waveforms).shape]


def test_spec_augment_masks_in_training_only() -> None:
    torch.manual_seed(0)
    model = build_model("xvector", SMALL, frontend={"options": {"dither": 0.0}})
    head = build_loss("softmax", model.embedding_dim, 3, {})
    calls = []
    network = TrainingNetwork(model, head, lambda features: calls.append(1) or features * 0)
    waveforms, labels = torch.randn(4, 16000) * 0.1, torch.tensor([0, 1, 2, 0])
    network.eval()
    with torch.no_grad():
        loss, _ = network(waveforms, labels)
        assert calls == [] and torch.equal(loss, head(model(waveforms), labels).loss)
    network.train()
    network(waveforms, labels)
    assert calls == [1]


@pytest.mark.parametrize("loss", ["softmax", "center", "coco", "aam", "am", "subcenter_aam", "contrastive", "triplet"])
def test_loss_heads_run_in_float32_outside_autocast(loss: str) -> None:
    """Under mixed precision the head gets the float32 embeddings with autocast off: CUDA's autocast
    once handed the AAM margin a bfloat16 cosine and a float32 target (a scatter() dtype error on an
    H200), and the pair losses came out in bfloat16."""
    torch.manual_seed(0)
    model = build_model("xvector", SMALL, frontend={"options": {"dither": 0.0}}).eval()
    head = build_loss(loss, model.embedding_dim, 3, {})
    network = TrainingNetwork(model, head).eval()
    waveforms, labels = torch.randn(6, 16000) * 0.1, torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)
        got, logits = network(waveforms, labels)
        embeddings = model(waveforms)
    assert embeddings.dtype == torch.bfloat16  # the network itself did run in bfloat16
    with torch.no_grad():
        torch.manual_seed(1)
        expected = head(embeddings.float(), labels)
    assert got.dtype == torch.float32 and torch.equal(got, expected.loss)
    assert logits is None or logits.dtype == torch.float32


def test_validation_embeds_as_extract_does(tiny_corpus: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("xvector", SMALL)
    model.train()
    save_atomic(model_payload(model), tmp_path / "model.pt")
    test = tiny_corpus / "test"
    validator = Validator(test, test / "trials", 16000, allow_resample=False)
    embeddings = validator.embed(model, torch.device("cpu"))
    assert model.training  # left in the mode it was in
    extract(tmp_path / "model.pt", str(test), f"ark:{tmp_path / 'e.ark'}", device="cpu", batch_size=1)
    keys, extracted = load_vectors(f"ark:{tmp_path / 'e.ark'}")
    wanted = [keys.index(key) for key in validator.keys]
    np.testing.assert_array_equal(embeddings, extracted[wanted])
    result = validator.evaluate(model, torch.device("cpu"))
    assert 0.0 <= result["eer"] <= 1.0 and 0.0 <= result["min_dcf_0.01"] <= 1.0


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


def test_training_never_writes_into_the_data_directory(run_cli, tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    import spkverif.training.build as build

    said: list[str] = []  # the log line, read where it is made: other tests leave logging configured their way
    monkeypatch.setattr(build.logger, "info", lambda message, *args: said.append(message % args))
    data = tmp_path / "train"
    shutil.copytree(tiny_corpus / "train", data)
    (data / "utt2dur").unlink()
    for path in [*data.iterdir(), data]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = _snapshot(data)
    try:
        result = run_cli("train", "--data", data, "--exp", tmp_path / "e", *TINY_MODEL)
        assert result.exit_code == 0, result.stderr
        assert _snapshot(data) == before
        assert any(f"spkverif data durations {data}" in line for line in said), said
        assert (tmp_path / "e" / "models" / "final.pt").is_file()
    finally:
        data.chmod(0o755)


@pytest.mark.parametrize(
    "module", ["spkverif.stages.extract", "spkverif.stages.export", "spkverif.stages.verify", "spkverif.stages.score",
               "spkverif.stages.report", "spkverif.runtime", "spkverif.runtime.pytorch", "spkverif.models.files",
               "spkverif.plots.filters"],
)  # fmt: skip
@pytest.mark.slow
def test_inference_imports_nothing_from_training(module: str) -> None:
    program = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('spkverif.training')))"
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_init_starts_from_a_checkpoints_network_and_head_with_a_fresh_schedule(
    run_cli, tiny_corpus: Path, tmp_path: Path
) -> None:
    """training.init (`--init`): the large-margin fine-tuning stage starts from another
    run's weights (network and loss head), not from its optimiser or position."""
    first = tmp_path / "first"
    result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", first, *TINY_MODEL, "--epochs", "2")
    assert result.exit_code == 0, result.stderr
    start = read_checkpoint(first / "models" / "epoch_0002.pt")
    assert (start["epoch"], start["step"]) == (2, 0)
    # lr so small that one step moves no weight measurably: the end's weights equal the
    # start's (BatchNorm's running statistics move with every batch, whatever the lr)
    tuned = [*TINY_MODEL, "--epochs", "1", "--batches-per-epoch", "1", "--lr", "1e-12", "--chunk-seconds", "0.8",
             "--set", "loss.margin=0.4"]  # fmt: skip
    result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", tmp_path / "lm",
                     "--init", first / "models" / "epoch_0002.pt", *tuned)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    # its own position: one epoch of its own from the start, not the first run's epoch 2
    assert sorted(p.name for p in (tmp_path / "lm" / "models").glob("epoch_*.pt")) == ["epoch_0001.pt"]
    end = read_checkpoint(tmp_path / "lm" / "models" / "epoch_0001.pt")
    assert (end["epoch"], end["step"]) == (1, 0)
    steps = [json.loads(line).get("global_step") for line in (tmp_path / "lm" / "train_log.jsonl").open()]
    assert max(step for step in steps if step is not None) == 1
    assert end["config"]["training"]["init"] == str(first / "models" / "epoch_0002.pt")
    for part in ("model_state", "head_state"):
        for key, value in start[part].items():
            if value.is_floating_point() and "running_" not in key:
                torch.testing.assert_close(end[part][key], value, rtol=0, atol=1e-6, msg=f"{part}.{key}")
    fresh = tmp_path / "fresh"
    assert run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", fresh, *tuned).exit_code == 0
    weight = next(key for key in start["model_state"] if key.endswith("weight"))
    assert not torch.allclose(read_checkpoint(fresh / "models" / "epoch_0001.pt")["model_state"][weight],
                              start["model_state"][weight])  # fmt: skip


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("epoch_0001.pt", ["--set", "model.channels=24"], "training.init: the checkpoint holds another network"),
        ("missing.pt", [], "training.init: no such model file"),
    ],
)
def test_init_refuses_what_it_cannot_start_from(
    run_cli, tiny_corpus: Path, tmp_path: Path, source: str, extra: list[str], message: str
) -> None:
    first = tmp_path / "first"
    assert run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", first, *TINY_MODEL).exit_code == 0
    result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", tmp_path / "lm",
                     "--init", first / "models" / source, *TINY_MODEL, *extra)  # fmt: skip
    assert result.exit_code == 1
    assert f"{first / 'models' / source}: {message}" in result.stderr
    assert not (tmp_path / "lm" / "models" / "final.pt").exists()


def test_resume_refuses_a_checkpoint_of_another_network(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    """The checkpoint's parts are the ones --init reads: a resumed run built otherwise stops
    with one line, not a traceback from load_state_dict, and leaves the checkpoint as it was."""
    exp = tmp_path / "exp"
    assert run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", exp, *TINY_MODEL).exit_code == 0
    checkpoint = exp / "models" / "epoch_0001.pt"
    before = {path: path.read_bytes() for path in exp.rglob("*") if path.is_file()}
    result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", exp, "--resume", *TINY_MODEL,
                     "--epochs", "2", "--set", "model.channels=24")  # fmt: skip
    assert result.exit_code == 1
    assert f"{checkpoint}: the checkpoint holds another network" in result.stderr
    assert "Traceback" not in result.stderr
    assert {path: path.read_bytes() for path in exp.rglob("*") if path.is_file()} == before


@pytest.mark.slow
def test_resume_takes_a_checkpoint_whose_network_an_older_release_described(
    run_cli, tiny_corpus: Path, tmp_path: Path
) -> None:
    """A checkpoint written before front ends were components holds the front end's options
    inside the model's; compared after `upgrade_spec`, it is the same network and resumes."""
    exp = tmp_path / "exp"
    assert run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", exp, *TINY_MODEL).exit_code == 0
    checkpoint = exp / "models" / "epoch_0001.pt"
    payload = read_checkpoint(checkpoint)
    spec = payload["model"]
    payload["model"] = {"name": spec["name"], "options": {**spec["options"], "sample_rate": spec["sample_rate"]}}
    torch.save(payload, checkpoint)
    result = run_cli("train", "-q", "--data", tiny_corpus / "train", "--exp", exp, "--resume", *TINY_MODEL,
                     "--epochs", "2")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert read_checkpoint(exp / "models" / "epoch_0002.pt")["model"] == spec


def test_bf16_on_a_cpu_that_emulates_it_warns(monkeypatch, caplog) -> None:
    from spkverif.training import build

    assert build.cpu_lacks_bf16() in (True, False)  # this machine's answer, whichever it is
    for lacks, amp, device, warned in (
        (True, "bf16", "cpu", True),
        (False, "bf16", "cpu", False),
        (True, "none", "cpu", False),
        (True, "bf16", "meta", False),  # not a CPU: no warning whatever the CPU has
    ):
        monkeypatch.setattr(build, "cpu_lacks_bf16", lambda lacks=lacks: lacks)
        caplog.clear()
        with caplog.at_level("WARNING", logger="spkverif.training.build"):
            build.warn_if_amp_is_emulated(amp, torch.device(device))
        assert ("bfloat16 is emulated" in caplog.text) == warned, (lacks, amp, device)


def test_compiling_on_a_cpu_skips_only_the_first_vector_isa_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._inductor import config as inductor_config

    from spkverif.training.build import skip_vector_isa_probe

    # inductor's own patch, which puts the setting back (pytest's monkeypatch would delete it from the module)
    before = inductor_config.cpp.vec_isa_ok
    with inductor_config.patch({"cpp.vec_isa_ok": None}):  # inductor's default: probe each set
        monkeypatch.setenv("TORCHINDUCTOR_VEC_ISA_OK", "0")  # the user's word wins: here, no vector code at all
        skip_vector_isa_probe()
        assert inductor_config.cpp.vec_isa_ok is None
        monkeypatch.delenv("TORCHINDUCTOR_VEC_ISA_OK")
        skip_vector_isa_probe()
        assert inductor_config.cpp.vec_isa_ok is True
    assert inductor_config.cpp.vec_isa_ok == before
