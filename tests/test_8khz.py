"""8 kHz end to end: `data.sample_rate: 8000` trains an 8 kHz model (fbank at 8 kHz), which extracts
8 kHz audio directly and 16 kHz audio with --resample; trials are scored and reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import yaml

from spkverif.io.audio import AudioReader
from spkverif.io.datadir import load_data_dir
from spkverif.io.specifiers import load_vectors
from spkverif.training.checkpoint import load_model

TINY = [
    "--epochs", "1", "--batches-per-epoch", "3", "--speakers-per-batch", "4", "--chunk-seconds", "0.5",
    "--set", "model.channels=32", "--set", "model.stats_channels=64", "--set", "model.embedding_dim=16",
]  # fmt: skip


def _narrowband_copy(source: Path, out: Path) -> Path:
    """The data directory with every utterance written again at 8 kHz."""
    data = load_data_dir(source)
    reader = AudioReader.from_data_dir(data, 8000, allow_resample=True)
    out.mkdir(parents=True)
    lines = []
    for utt in data.utterances:
        path = out / "audio" / f"{utt}.wav"
        path.parent.mkdir(exist_ok=True)
        soundfile.write(path, reader.read(utt), 8000, subtype="PCM_16")
        lines.append(f"{utt} {path}\n")
    (out / "wav.scp").write_text("".join(lines))
    for name in ("utt2spk", "spk2utt", "trials"):
        if (source / name).exists():
            (out / name).write_text((source / name).read_text())
    return out


def test_training_extraction_and_scoring_at_8khz(run_cli, tiny_corpus: Path, tmp_path: Path) -> None:
    train = _narrowband_copy(tiny_corpus / "train", tmp_path / "train8k")
    test = _narrowband_copy(tiny_corpus / "test", tmp_path / "test8k")
    exp = tmp_path / "exp"
    result = run_cli(
        "train", "-q", "--data", train, "--exp", exp, "--set", "data.sample_rate=8000",
        "--set", "augment.channel_prob=0.5", "--set", "augment.channels=[telephone,bandlimit]", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["data"]["sample_rate"] == 8000 and "sample_rate" not in config["model"]
    model = exp / "models" / "final.pt"
    network = load_model(model)
    assert network.sample_rate == 8000 and network.frontend.sample_rate == 8000 and network.spec["sample_rate"] == 8000

    embeddings = f"ark,scp:{tmp_path / 'e8.ark'},{tmp_path / 'e8.scp'}"
    assert run_cli("extract", "-q", "--model", model, f"scp:{test / 'wav.scp'}", embeddings).exit_code == 0
    result = run_cli("extract", "-q", "--model", model, f"scp:{tiny_corpus / 'test' / 'wav.scp'}", embeddings)
    assert result.exit_code == 1 and "--resample" in result.stderr and "8000" in result.stderr
    wideband = f"ark,scp:{tmp_path / 'e16.ark'},{tmp_path / 'e16.scp'}"
    result = run_cli(
        "extract", "-q", "--resample", "--model", model, f"scp:{tiny_corpus / 'test' / 'wav.scp'}", wideband
    )
    assert result.exit_code == 0, result.stderr
    # 16 kHz audio resampled to 8 kHz gives (nearly) the embeddings of the 8 kHz copies.
    keys, narrow = load_vectors(f"scp:{tmp_path / 'e8.scp'}")
    keys16, wide = load_vectors(f"scp:{tmp_path / 'e16.scp'}")
    assert keys == keys16
    cosine = np.sum(narrow * wide, axis=1) / np.linalg.norm(narrow, axis=1) / np.linalg.norm(wide, axis=1)
    assert np.min(cosine) > 0.9

    scores = tmp_path / "test.cosine"
    result = run_cli(
        "score", "-q", "--method", "cosine", "--trials", test / "trials", f"scp:{tmp_path / 'e8.scp'}", scores
    )
    assert result.exit_code == 0, result.stderr
    assert len(scores.read_text().splitlines()) == len((test / "trials").read_text().splitlines())
    result = run_cli("report", "--no-det", "--bootstrap", "0", "--trials", test / "trials", scores)
    assert result.exit_code == 0 and "EER" in result.stdout
    assert np.isfinite([float(line.split()[2]) for line in scores.read_text().splitlines()]).all()
