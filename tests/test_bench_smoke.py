"""Smoke test of the side-by-side benchmarks: each runs at a tiny size and bench/results.md's table is well formed.

The peers (SpeechBrain, kaldi-native-fbank, Resemblyzer) come from the `bench`
extra, which CI does not install, and WeSpeaker and 3D-Speaker from checkouts on
PYTHONPATH (bench/run.sh); their rows are checked where they are installed and
skipped with the reason otherwise. The operation counts and the peak are checked
without any peer. Nothing here times anything.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

from bench.__main__ import main
from bench.common import TABLE_HEADER, Row, limit_cells
from bench.flops import counted_flops, measure_peak
from bench.peers import peer_problem

FIGURES = ("training", "features", "extraction", "toolkit-extraction", "scoring", "metrics")
PEERS = {
    "speechbrain": (
        "SpeechBrain Xvector",
        "SpeechBrain ECAPA_TDNN",
        "SpeechBrain ResNet",
        "SpeechBrain EncoderClassifier",
        "SpeechBrain EER/minDCF",
    ),
    "kaldi_native_fbank": ("kaldi-native-fbank",),
    "resemblyzer": ("Resemblyzer VoiceEncoder",),
    "sklearn": ("scikit-learn roc_curve",),
}
TOOLKITS = {
    "WeSpeaker": (
        "WeSpeaker ResNet34",
        "WeSpeaker CAMPPlus",
        "WeSpeaker ReDimNetB2",
        "WeSpeaker CLI embedding_kaldi",
        "onnxruntime, WeSpeaker",
    ),
    "3D-Speaker": ("3D-Speaker CAMPPlus", "3D-Speaker bin/extract.py", "onnxruntime, 3D-Speaker"),
    "IDRnD": ("IDRnD ReDimNetWrap",),
}
ALWAYS = ("torchaudio.compliance.kaldi.fbank", "straightforward numpy", "floor: product + selection", "one np.argsort")
NUMBER = re.compile(r"^(?P<value>[0-9][0-9,]*(?:\.[0-9]+)?(?:e[-+][0-9]+)?) (?P<unit>.+)$")


def _value(cell: str) -> float | None:
    if cell == "—":
        return None
    match = NUMBER.match(cell)
    assert match, f"not a figure: {cell!r}"
    return float(match["value"].replace(",", ""))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, object]]]:
    out = tmp_path_factory.mktemp("bench") / "results.md"
    main(["--tiny", "--only", *FIGURES, "--out", str(out)])
    text = out.read_text()
    rows = []
    lines = text.splitlines()
    header = lines.index(TABLE_HEADER)
    assert lines[header + 1] == "|---|---:|---|---:|---:|---:|---:|---:|"
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 8, line
        figure, ours, peer, peer_value, ratio, flops, rate, fraction = cells
        rows.append(
            {"figure": figure, "ours": _value(ours), "peer": peer, "peer_value": _value(peer_value), "ratio": ratio,
             "flops": flops, "rate": rate, "fraction": fraction}
        )  # fmt: skip
    return text, rows


@pytest.mark.slow
def test_the_table_has_every_figure_with_positive_finite_values(results) -> None:
    text, rows = results
    assert text.startswith("# spkverif beside its peers")
    assert re.search(r"Machine: .+ CPUs, torch .+ threads.+BLAS: .+load average [0-9.]+", text)
    sections = {row["figure"].split(":")[0] for row in rows}
    assert sections >= {"training step", "features", "extraction", "scoring", "metrics"}
    assert re.search(r"measured peak on \d+ threads: float32 GEMM .+ GFLOP/s, float32 3 × 3 convolution", text)
    for row in rows:
        assert row["ours"] is not None and math.isfinite(row["ours"]) and row["ours"] > 0, row
        if row["peer_value"] is not None:
            assert math.isfinite(row["peer_value"]) and row["peer_value"] > 0, row
            assert re.fullmatch(r"[0-9.]+×", row["ratio"]), row
    for name in ALWAYS:
        assert any(row["peer"].startswith(name) and row["peer_value"] for row in rows), name


def test_values_are_compared_side_by_side(results) -> None:
    text, _ = results
    assert re.search(r"largest \|spkverif − torchaudio\| on log-mel: [0-9.e+-]+", text)
    assert "largest score difference from the straightforward numpy" in text
    assert re.search(r"spkverif \(2,000\): EER [0-9.]+%, minDCF\(p=0.01\)", text)


@pytest.mark.parametrize("package", sorted(PEERS))
def test_each_installed_peer_has_its_rows(results, package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install -r requirements-bench.txt); its rows are left out")
    _, rows = results
    for peer in PEERS[package]:
        found = [row for row in rows if row["peer"].startswith(peer)]
        assert found and all(row["peer_value"] for row in found), peer


def test_every_training_row_has_its_limit_columns(results) -> None:
    """Each training rate counts its operations a sample (forward + backward) and divides the rate by the peak."""
    _, rows = results
    training = [row for row in rows if row["figure"].startswith("training step") and "samples/s" in row["figure"]]
    assert {row["figure"].split(": ")[1].split(" batch")[0] for row in training} >= {"xvector", "resnet34", "campplus"}
    assert {re.search(r"batch (\d+)", row["figure"])[1] for row in training} == {"2", "3"}
    for row in training:
        ours = row["flops"].split(" / ")[0]
        assert float(ours) > 0, row
        assert re.fullmatch(r"[0-9.e+-]+%", row["fraction"].split(" / ")[0]), row
    memory = [row for row in rows if "peak step memory" in row["figure"]]
    assert memory and all(row["flops"] == "—" for row in memory)


@pytest.mark.parametrize("toolkit", sorted(TOOLKITS))
def test_each_toolkit_has_its_rows_or_says_why_not(results, toolkit: str) -> None:
    """WeSpeaker's, 3D-Speaker's and IDRnD's training and extraction rows where their checkout is on PYTHONPATH;
    otherwise the table says why each of their networks is left out."""
    text, rows = results
    problem = peer_problem(toolkit)
    if problem:
        assert f"left out: {problem}" in text or f"({toolkit}): {problem}" in text
        pytest.skip(f"{toolkit} is not on PYTHONPATH (bench/run.sh puts it there); {problem}")
    for peer in TOOLKITS[toolkit]:
        found = [row for row in rows if row["peer"].startswith(peer)]
        assert found and all(row["peer_value"] for row in found), peer
        assert all(float(row["flops"].split(" / ")[1]) > 0 for row in found), peer


def test_operations_are_counted_and_the_peak_measured_without_peers() -> None:
    """FlopCounterMode counts 2 FLOPs a multiply-add, forward and backward; the peak is two positive rates;
    the limit columns are the count, count × rate, and that over the peak."""
    layer = torch.nn.Linear(30, 20, bias=False)
    inputs = torch.randn(8, 30)
    assert counted_flops(lambda: layer(inputs)) == 2 * 8 * 30 * 20
    assert counted_flops(lambda: layer(inputs).sum().backward()) == 2 * 2 * 8 * 30 * 20  # the input needs no gradient
    peak = measure_peak(gemm_size=64, channels=4, image=8, batch=1, rounds=1)
    assert peak.gemm > 0 and peak.convolution > 0 and peak.best == max(peak.gemm, peak.convolution)
    assert peak.threads == torch.get_num_threads()
    row = Row("x", "samples/s", 10.0, "peer", 5.0, higher_is_better=True, flops=2e9, peer_flops=4e9)
    assert limit_cells(row, 40.0) == ["2 / 4", "20 / 20", "50.0% / 50.0%"]
    assert limit_cells(Row("y", "s", 1.0, "peer", 2.0), 40.0) == ["—", "—", "—"]


@pytest.mark.slow
def test_the_compiled_training_row() -> None:
    """spkverif compiled (torch.compile of the encoder, as training.compile) beside the eager peers."""
    from bench import peer_train

    section = peer_train.run(
        peer_train.TrainSize(
            batches=(2,),
            frames=30,
            classes=10,
            networks=("xvector",),
            compiled_batches=(2,),
            tiny=True,
            memory_networks=None,
        )
    )
    compiled = [row for row in section.rows if row.figure == "xvector batch 2, compiled samples/s"]
    assert compiled and all(row.ours > 0 and row.flops > 0 for row in compiled)
    assert any(line.startswith("xvector batch 2: compiling took") for line in section.lines)


def test_the_row_as_train_runs_it() -> None:
    """Ours timed in a fresh process that keeps freed memory (as `spkverif train`), at the largest batch only,
    beside each peer's eager figure of the same batch and run."""
    from bench import peer_train

    section = peer_train.run(
        peer_train.TrainSize(batches=(2, 3), frames=30, classes=10, networks=("xvector",), compiled_batches=(),
                             tiny=True, memory_networks=None)
    )  # fmt: skip
    kept = [row for row in section.rows if "as `train` runs it" in row.figure]
    assert [row.figure for row in kept] == ["xvector batch 3, as `train` runs it (freed memory kept) samples/s"] * len(
        kept
    )
    eager = {row.peer_name: row for row in section.rows if row.figure == "xvector batch 3 samples/s"}
    assert kept and {row.peer_name for row in kept} == set(eager)
    for row in kept:
        assert row.ours > 0 and row.flops == eager[row.peer_name].flops
        assert row.peer == eager[row.peer_name].peer
    assert any(line.startswith("as `train` runs it: ") for line in section.lines)


def test_metrics_agree_with_scikit_learn(results) -> None:
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed")
    text, _ = results
    ours = re.search(r"- spkverif \(2,000\): (.+)", text)[1]
    theirs = re.search(r"- scikit-learn roc_curve \(2,000\): (.+)", text)[1]
    assert ours == theirs


def test_results_are_written_whole(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    main(["--tiny", "--only", "metrics", "--out", str(out)])
    assert out.read_text().count("| metrics:") >= 2
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_the_gpu_estimate_counts_operations_and_times_the_augmentation(tmp_path: Path) -> None:
    """bench/gpu_estimate.py on a small configuration: the operation count grows with the
    chunk length, and every channel gets a positive rate."""
    import subprocess
    import sys

    base = tmp_path / "gpu.yaml"
    base.write_text(
        "model: {name: xvector, channels: 16, stats_channels: 32, embedding_dim: 8}\n"
        "training: {epochs: 2, batches_per_epoch: 3, speakers_per_batch: 4}\n"
        "augment: {channel_prob: 0.6}\n"
    )
    longer = tmp_path / "longer.yaml"
    longer.write_text("defaults: gpu.yaml\ndata: {chunk_seconds: 4.0}\n")
    outputs = []
    for config in (base, longer):
        result = subprocess.run(
            [sys.executable, "bench/gpu_estimate.py", "--config", str(config), "--seconds", "0.2"],
            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    flops = [float(re.search(r"([0-9.]+) GFLOP a", output).group(1)) for output in outputs]
    assert 1.5 * flops[0] < flops[1] < 2.5 * flops[0]  # twice the frames, about twice the work
    assert "24 chunks: " in outputs[0]  # 2 epochs x 3 batches x 4 speakers x 1 chunk
    rates = re.findall(r"(\w+) alone, every chunk: ([0-9]+) chunks/s", outputs[0])
    assert [name for name, _ in rates] == ["bandlimit", "telephone", "gain", "room"]
    assert all(int(rate) > 0 for _, rate in rates)


@pytest.mark.slow
def test_the_gpu_estimate_prices_a_schedule_at_a_logs_measured_rates(tmp_path: Path) -> None:
    """bench/gpu_estimate.py --measured: the steady rate is the median of the step windows after the
    first epoch, the whole-epoch rate counts every later epoch's chunks over its seconds, and the
    schedule's hours are its chunks over each rate."""
    import json
    import subprocess
    import sys

    from bench.gpu_estimate import measured_rates

    records = [{"event": "start", "global_step": 0, "chunks_per_step": 10}]
    for epoch, (rates, seconds) in enumerate((((5.0, 7.0), 100.0), ((40.0, 60.0), 5.0), ((50.0, 70.0), 3.0)), 1):
        for index, rate in enumerate(rates, 1):
            step = (epoch - 1) * 20 + 10 * index
            records.append({"event": "step", "epoch": epoch, "global_step": step, "samples_per_s": rate,
                            "data_wait_fraction": rate / 100})  # fmt: skip
        records.append({"event": "epoch", "epoch": epoch, "global_step": 20 * epoch, "seconds": seconds})
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps(record) + "\n" for record in records))
    rates = measured_rates(log)
    assert rates["steady"] == 55.0  # median of 40, 60, 50, 70: epoch 1's 5 and 7 left out
    assert rates["data_wait"] == 0.55
    assert rates["epochs"] == 2 * 20 * 10 / (5.0 + 3.0)  # 400 chunks in 8 s
    config = tmp_path / "c.yaml"
    config.write_text("training: {epochs: 2, batches_per_epoch: 90, speakers_per_batch: 11, utts_per_speaker: 2}\n")
    result = subprocess.run(
        [sys.executable, "bench/gpu_estimate.py", "--measured", f"{config}={log}", "--measured", f"{config}={log}"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3,960 chunks of 2 s; measured 55 chunks/s steady (data wait 55%), 50 chunks/s" in result.stdout
    assert f"at the steady rate: {3960 / 55 / 3600:.2f} h" in result.stdout
    assert f"all: {2 * 3960 / 55 / 3600:.2f} h steady, {2 * 3960 / 50 / 3600:.2f} h" in result.stdout
    log.write_text(json.dumps(records[0]) + "\n")
    with pytest.raises(ValueError, match="no start, step and epoch records"):
        measured_rates(log)
    missing = subprocess.run(
        [sys.executable, "bench/gpu_estimate.py", "--measured", f"{config}={tmp_path / 'none.jsonl'}"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300,
    )  # fmt: skip
    assert missing.returncode == 1 and missing.stderr.startswith("gpu_estimate.py: error: [Errno 2]")
    assert len(missing.stderr.strip().splitlines()) == 1
    for pair, message in ((f"{tmp_path / 'none.yaml'}={log}", "no such config file"), (str(config), "CONFIG=LOG")):
        wrong = subprocess.run(
            [sys.executable, "bench/gpu_estimate.py", "--measured", pair],
            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300,
        )  # fmt: skip
        assert wrong.returncode == 1 and message in wrong.stderr
        assert wrong.stderr.strip().splitlines() == [wrong.stderr.strip()]  # one line, no traceback


def test_the_extraction_speed_table_covers_every_registered_network(capsys, monkeypatch) -> None:
    from bench import extract_rtf
    from spkverif.models import MODELS

    listed = extract_rtf.networks(None)
    assert sorted({name for name, _ in listed}) == sorted(MODELS.names())
    assert ("ecapa_tdnn", {"channels": 1024}) in listed and ("ecapa_tdnn", {}) in listed
    assert extract_rtf.networks(["redimnet2"]) == [("redimnet2", {})]
    # a network whose front end needs an outside directory is left out with the reason; the others get a row
    args = ["extract_rtf", "--seconds", "1", "--repeats", "1", "--runtimes", "pytorch", "--models", "mhfa", "xvector"]
    monkeypatch.setattr("sys.argv", args)
    monkeypatch.setattr("spkverif.base.progress._quiet", False)  # main() sets it; put back after the test
    extract_rtf.main()
    out = capsys.readouterr().out
    assert "# mhfa: left out: frontend wavlm needs path" in out
    row = next(line for line in out.splitlines() if line.startswith("| xvector"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "4.61M" and cells[2] == "pytorch" and float(cells[4]) > 0
