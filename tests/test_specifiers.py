"""Archives through r/wspecifiers: kaldiio round trips, an independent reader, pipes, atomicity."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kaldi_io
import numpy as np
import pytest

from spkverif.base.errors import SpkverifError
from spkverif.io.specifiers import ArchiveWriter, load_vectors, parse_specifier, read_vectors


@pytest.fixture
def vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"utt{i}": rng.standard_normal(8).astype(np.float32) for i in range(5)}


def _write(spec: str, vectors: dict[str, np.ndarray]) -> None:
    with ArchiveWriter(spec) as writer:
        for key, value in vectors.items():
            writer.write(key, value)


def test_ark_scp_round_trip_via_kaldiio_and_kaldi_io(tmp_path: Path, vectors) -> None:
    ark, scp = tmp_path / "e.ark", tmp_path / "e.scp"
    _write(f"ark,scp:{ark},{scp}", vectors)
    for source in (f"scp:{scp}", f"ark:{ark}"):
        read = dict(read_vectors(source))
        assert list(read) == list(vectors)
        for key in vectors:
            np.testing.assert_array_equal(read[key], vectors[key])
    independent = dict(kaldi_io.read_vec_flt_scp(str(scp)))
    assert list(independent) == list(vectors)
    for key in vectors:
        np.testing.assert_array_equal(independent[key], vectors[key])
    independent_ark = dict(kaldi_io.read_vec_flt_ark(str(ark)))
    np.testing.assert_array_equal(independent_ark["utt3"], vectors["utt3"])


def test_scp_ark_order_and_text_mode(tmp_path: Path, vectors) -> None:
    _write(f"scp,ark,t:{tmp_path / 'e.scp'},{tmp_path / 'e.ark'}", vectors)
    assert (tmp_path / "e.ark").read_text().startswith("utt0  [")
    keys, matrix = load_vectors(f"scp:{tmp_path / 'e.scp'}")
    assert keys == list(vectors)
    np.testing.assert_allclose(matrix, np.stack(list(vectors.values())), rtol=1e-6)


def test_ark_to_stdout_pipes_into_a_reader(tmp_path: Path, vectors) -> None:
    np.save(tmp_path / "v.npy", np.stack(list(vectors.values())))
    writer = (
        "import numpy as np, sys; from spkverif.io.specifiers import ArchiveWriter\n"
        f"m = np.load({str(tmp_path / 'v.npy')!r})\n"
        "with ArchiveWriter('ark:-') as w:\n"
        "    [w.write(f'utt{i}', r) for i, r in enumerate(m)]\n"
    )
    produced = subprocess.run([sys.executable, "-c", writer], capture_output=True, check=True).stdout
    (tmp_path / "piped.ark").write_bytes(produced)
    read = dict(kaldi_io.read_vec_flt_ark(str(tmp_path / "piped.ark")))
    np.testing.assert_array_equal(read["utt4"], vectors["utt4"])
    from_pipe = dict(read_vectors(f"ark:cat {tmp_path / 'piped.ark'} |"))
    np.testing.assert_array_equal(from_pipe["utt2"], vectors["utt2"])


def test_ark_into_a_command(tmp_path: Path, vectors) -> None:
    _write(f"ark:| gzip -c > {tmp_path / 'e.ark.gz'}", vectors)
    read = dict(read_vectors(f"ark:gunzip -c {tmp_path / 'e.ark.gz'} |"))
    np.testing.assert_array_equal(read["utt1"], vectors["utt1"])


def test_interrupted_writer_leaves_no_archive(tmp_path: Path, vectors) -> None:
    ark, scp = tmp_path / "e.ark", tmp_path / "e.scp"
    with pytest.raises(KeyboardInterrupt), ArchiveWriter(f"ark,scp:{ark},{scp}") as writer:
        writer.write("utt0", vectors["utt0"])
        raise KeyboardInterrupt
    assert not ark.exists() and not scp.exists()
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_old_outputs_whole(tmp_path: Path, vectors) -> None:
    ark, scp = tmp_path / "e.ark", tmp_path / "e.scp"
    _write(f"ark,scp:{ark},{scp}", vectors)
    _write(f"ark,scp:{ark},{scp}", {"only": vectors["utt0"]})
    assert [key for key, _ in read_vectors(f"scp:{scp}")] == ["only"]


@pytest.mark.parametrize(
    ("spec", "writing", "match"),
    [
        ("emb.ark", True, "not a Kaldi wspecifier"),
        ("foo:emb.ark", False, "not a Kaldi rspecifier"),
        ("ark,scp:emb.ark", True, "gives 1 paths"),
        ("scp:emb.scp", True, "needs an ark"),
        ("ark,scp:a.ark,a.scp", False, "either an ark or an scp"),
    ],
)
def test_bad_specifiers(spec: str, writing: bool, match: str) -> None:
    with pytest.raises(SpkverifError, match=match):
        parse_specifier(spec, writing)


def test_missing_and_corrupt_archives(tmp_path: Path) -> None:
    with pytest.raises(SpkverifError, match="no such file"):
        list(read_vectors(f"scp:{tmp_path / 'none.scp'}"))
    (tmp_path / "bad.ark").write_bytes(b"utt0 \x00Bgarbage")
    with pytest.raises(SpkverifError, match="cannot read archive"):
        list(read_vectors(f"ark:{tmp_path / 'bad.ark'}"))


def test_duplicate_keys_refused(tmp_path: Path, vectors) -> None:
    with pytest.raises(SpkverifError, match="written twice"), ArchiveWriter(f"ark:{tmp_path / 'e.ark'}") as writer:
        writer.write("a", vectors["utt0"])
        writer.write("a", vectors["utt1"])
    assert not (tmp_path / "e.ark").exists()
