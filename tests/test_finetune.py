"""`train --init MODEL_FILE`: a published (imported) or trained network fine-tuned on one's own
speakers, with a new loss head, parts frozen for the first steps and learning-rate factors per part
(docs/finetuning.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from spkverif.cli import cli
from spkverif.config import load_train_config, parse_override
from spkverif.io.specifiers import load_vectors
from spkverif.models.files import read_checkpoint
from spkverif.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "data" / "wespeaker_resnet34.pt"  # WeSpeaker's own format, 16-d embeddings
SMALL_RUN = ["--speakers-per-batch", "4", "--chunk-seconds", "0.5", "--epochs", "2", "--batches-per-epoch", "1"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WeSpeaker's ResNet34 layout (4 base channels), through `spkverif import`: a published model's file."""
    out = tmp_path_factory.mktemp("imported") / "resnet34.pt"
    config = PEER.with_suffix(".yaml")
    result = CliRunner().invoke(cli, ["import", "-q", "wespeaker", str(PEER), "--config", str(config), str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_fine_tuning_starts_from_the_file_with_a_new_head_frozen_parts_and_scaled_rates(
    run_cli, tiny_corpus: Path, imported: Path, tmp_path: Path
) -> None:
    """The network starts as the file's (BatchNorm statistics too), the head is new for the 4 speakers
    of the data, the encoder stays exactly as it was for its frozen first step and moves after, its
    learning rate is a tenth of the rest's, and the fine-tuned model extracts."""
    exp = tmp_path / "ft"
    result = run_cli("train", "-q", "--data", tiny_corpus / "test", "--exp", exp, "--init", imported, *SMALL_RUN,
                     "--set", "training.freeze={encoder: 1}", "--set", "training.lr_scale={encoder: 0.1}")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    start = read_checkpoint(imported)["state_dict"]
    first, second = (read_checkpoint(exp / "models" / f"epoch_000{n}.pt") for n in (1, 2))
    assert first["model"]["name"] == "resnet34" and first["model"] == read_checkpoint(imported)["model"]
    assert yaml.safe_load((exp / "config.yaml").read_text())["model"]["name"] == "resnet34"
    # frozen for step 0: every weight and statistic as the file holds it, while the new head learned
    assert first["model_state"].keys() == start.keys()
    for key, value in start.items():
        assert torch.equal(first["model_state"][key], value), key
    assert first["head_state"]["weight"].shape == (4, 16)
    assert not torch.equal(first["head_state"]["weight"], second["head_state"]["weight"])
    moved = [key for key, value in start.items() if key.startswith("encoder.") and value.is_floating_point()
             and not torch.equal(second["model_state"][key], value)]  # fmt: skip
    assert any(key.endswith("weight") for key in moved) and any("running_mean" in key for key in moved)
    groups = [(group["lr"], group["lr_scale"], group["parts"]) for group in second["optimizer"]["param_groups"]]
    assert groups == [(0.01, 1.0, []), (pytest.approx(0.001), 0.1, ["encoder"])]
    encoder_params = sum(1 for key in start if key.startswith("encoder.") and "running" not in key
                         and "num_batches" not in key)  # fmt: skip
    assert len(second["optimizer"]["param_groups"][1]["params"]) == encoder_params
    out, scp = tmp_path / "emb", tmp_path / "wav.scp"
    scp.write_text("".join((tiny_corpus / "test" / "wav.scp").read_text().splitlines(keepends=True)[:2]))
    model = exp / "models" / "final.pt"
    result = run_cli("extract", "-q", "--model", model, f"scp:{scp}", f"ark,scp:{out}.ark,{out}.scp")
    assert result.exit_code == 0, result.stderr
    keys, vectors = load_vectors(f"scp:{out}.scp")
    assert len(keys) == 2 and vectors.shape == (2, 16)


def test_the_files_network_wins_over_the_configurations(
    tiny_corpus: Path, imported: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A config file's model section gives way to the file's network, with a warning naming both
    values; a flag setting an option wins over the file (the weights must fit); the trainer then
    starts from the file's weights exactly."""
    conf = tmp_path / "c.yaml"
    conf.write_text("model:\n  name: resnet34\n  embedding_dim: 256\ntraining:\n  speakers_per_batch: 4\n")
    with caplog.at_level(logging.WARNING, logger="spkverif.config"):
        config = load_train_config(conf, [parse_override(f"training.init={imported}")])
    stored = read_checkpoint(imported)["model"]
    assert (config.model.name, config.model.options, config.data.sample_rate) == ("resnet34", stored["options"], 16000)
    assert {"name": config.frontend.name, "options": config.frontend.options} == stored["frontend"]
    assert "model.embedding_dim 16 (the configuration's 256)" in caplog.text
    trainer = Trainer(config, tiny_corpus / "test", tmp_path / "exp")
    trainer.initialise(imported)
    for key, value in read_checkpoint(imported)["state_dict"].items():
        assert torch.equal(trainer.parts.model.state_dict()[key], value), key
    flagged = load_train_config(conf, [parse_override(f"training.init={imported}"),
                                       parse_override("model.unbiased_std=false")])  # fmt: skip
    assert flagged.model.options == {**stored["options"], "unbiased_std": False}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "ecapa_tdnn"], "{init}: training.init: the checkpoint holds another network: model.name "
         "'resnet34' there, 'ecapa_tdnn' on the command line"),
        (["--set", "data.sample_rate=8000"], "{init}: training.init: the checkpoint holds another network: "
         "data.sample_rate 16000 there, 8000 on the command line"),
        (["--set", "model.embedding_dim=32"], "{init}: training.init: the checkpoint holds another network: "
         "size mismatch for encoder.embedding"),
        (["--set", "training.freeze={decoder: 5}"], "training.freeze: the model has no part 'decoder'; its parts "
         "are frontend, encoder, head"),
        (["--set", "training.lr_scale={encoder.nope: 0.5}"], "training.lr_scale: the model has no part "
         "'encoder.nope'; encoder's parts are encoder.stem, encoder.stages, encoder.pooling, encoder.embedding"),
        (["--set", "training.freeze={encoder: -1}"], "training.freeze must be x>=0, not -1"),
    ],
)  # fmt: skip
def test_init_refuses_with_one_line(
    run_cli, tiny_corpus: Path, imported: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    """Bad input: a network other than the file's asked for on the command line, and a part the model lacks."""
    result = run_cli("train", "-q", "--data", tiny_corpus / "test", "--exp", tmp_path / "exp", "--init", imported,
                     *SMALL_RUN, *extra)  # fmt: skip
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"spkverif train: error: {message.format(init=imported)}")
    assert not (tmp_path / "exp" / "models").exists()


def test_init_refuses_a_peers_checkpoint_not_imported(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    """A file that is not a spkverif model file (here WeSpeaker's own): the model files' one-line error."""
    result = run_cli("train", "-q", "--data", tiny_corpus / "test", "--exp", tmp_path / "exp", "--init", PEER)
    assert result.exit_code == 1
    message = "training.init: not a spkverif model or training checkpoint"
    assert result.stderr == f"spkverif train: error: {PEER}: {message}\n"


def test_a_training_checkpoints_head_is_taken_on_the_same_speakers_only(
    tiny_corpus: Path, imported: Path, tmp_path: Path
) -> None:
    """From a training checkpoint (epoch_NNNN.pt) on the same speakers the loss head comes too (the
    large-margin stage); on other speakers the network comes and the head is new, for their count."""
    settings = [parse_override(f"training.init={imported}"), parse_override("training.speakers_per_batch=4")]
    source = Trainer(load_train_config(None, settings), tiny_corpus / "train", tmp_path / "source")
    (tmp_path / "source" / "models").mkdir(parents=True)
    with torch.no_grad():
        source.parts.head.weight.normal_()
    checkpoint = source.checkpointer.save("epoch_0001.pt")
    settings[0] = parse_override(f"training.init={checkpoint}")
    for data, classes, head_taken in (("train", 6, True), ("test", 4, False)):
        trainer = Trainer(load_train_config(None, settings), tiny_corpus / data, tmp_path / data)
        trainer.initialise(checkpoint)
        for key, value in source.parts.model.state_dict().items():
            assert torch.equal(trainer.parts.model.state_dict()[key], value), key
        assert trainer.parts.head.weight.shape == (classes, 16)
        assert torch.equal(trainer.parts.head.weight, source.parts.head.weight) is head_taken


def test_parts_nest_keep_their_factor_under_a_schedule_and_freeze_under_ddp() -> None:
    """The mechanism by itself: the longest name wins, a factor holds under the exponential schedule,
    a parameter built frozen stays frozen, and without toggling `requires_grad` (DDP) the frozen
    parameters' gradients are dropped before the step."""
    from spkverif.training.optim import SCHEDULERS
    from spkverif.training.parts import PartFreezer, base_lr, parameter_groups, scale_learning_rates

    encoder = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    frontend, head = torch.nn.Linear(3, 3), torch.nn.Linear(2, 2)
    frontend.bias.requires_grad_(False)  # as a front end may build part of itself frozen
    parts = {"frontend": frontend, "encoder": encoder, "head": head}
    network = torch.nn.ModuleDict(parts)
    groups = parameter_groups(network, parts, {"encoder": 0.1, "encoder.2": 0.5, "frontend": 0.1})
    assert [(group["lr_scale"], group["parts"], len(group["params"])) for group in groups] == [
        (1.0, [], 2), (0.1, ["frontend", "encoder"], 6), (0.5, ["encoder.2"], 2)]  # fmt: skip
    optimizer = torch.optim.SGD(groups, lr=0.1)
    scale_learning_rates(optimizer)
    scheduler = SCHEDULERS.build("exponential", optimizer, total_steps=10, steps_per_epoch=10, final_lr=0.001)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    rates = [group["lr"] for group in optimizer.param_groups]
    assert rates[1] == pytest.approx(0.1 * rates[0]) and rates[2] == pytest.approx(0.5 * rates[0])
    assert base_lr(optimizer) == rates[0] == pytest.approx(0.1 * 0.01**0.5)

    freezer = PartFreezer(parts, {"encoder": 2, "encoder.1": 0, "frontend": 1}, toggle_grad=False)
    network.train()
    for step in range(3):
        freezer.before_step(step)
        assert (encoder[0].training, encoder[1].training, frontend.training) == (step >= 2, True, step >= 1)
        optimizer.zero_grad(set_to_none=True)
        head(encoder(frontend(torch.randn(4, 3)))).sum().backward()
        freezer.after_backward()
        assert (encoder[0].weight.grad is None, encoder[1].weight.grad is None) == (step < 2, False)
        assert frontend.weight.grad is None if step < 1 else frontend.weight.grad is not None
    toggling = PartFreezer(parts, {"frontend": 1}, toggle_grad=True)
    toggling.before_step(0)
    assert not frontend.weight.requires_grad and not frontend.bias.requires_grad
    toggling.before_step(1)
    assert frontend.weight.requires_grad and not frontend.bias.requires_grad
