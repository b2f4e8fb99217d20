"""Audio behind wav.scp: files, pipes, segments, Kaldi wav arks, sample-rate checks."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile

from spkverif.base.errors import SpkverifError
from spkverif.io.audio import AudioReader, PreloadedAudio
from spkverif.io.datadir import Segment
from tests.conftest import write_wav


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "a.wav", seconds=2.0)


def _reference(path: Path) -> np.ndarray:
    return soundfile.read(path, dtype="float32")[0]


def test_file_pipe_and_flac_read_the_same(tmp_path: Path, wav: Path) -> None:
    soundfile.write(tmp_path / "a.flac", _reference(wav), 16000, subtype="PCM_16")
    reader = AudioReader({"f": str(wav), "p": f"cat {wav} |", "c": str(tmp_path / "a.flac")})
    for key in ("f", "p", "c"):
        np.testing.assert_array_equal(reader.read(key), _reference(wav))
    np.testing.assert_array_equal(reader.read("p", 100, 50), _reference(wav)[100:150])
    np.testing.assert_array_equal(reader.read("f", 100, 50), _reference(wav)[100:150])
    assert reader.num_samples("p") == reader.num_samples("f") == 32000


def test_streamed_wav_from_a_pipe(tmp_path: Path, wav: Path) -> None:
    data = bytearray(wav.read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    data[40:44] = b"\xff\xff\xff\xff"
    (tmp_path / "stream.bin").write_bytes(bytes(data))
    reader = AudioReader({"s": f"cat {tmp_path / 'stream.bin'} |"})
    np.testing.assert_array_equal(reader.read("s"), _reference(wav))


def test_segments_cut_the_recording(wav: Path) -> None:
    reader = AudioReader({"rec": str(wav)}, {"u1": Segment("rec", 0.5, 1.0), "u2": Segment("rec", 1.5, None)})
    np.testing.assert_array_equal(reader.read("u1"), _reference(wav)[8000:16000])
    np.testing.assert_array_equal(reader.read("u2"), _reference(wav)[24000:])
    assert reader.num_samples("u1") == 8000 and reader.num_samples("u2") == 8000


def test_kaldi_wav_ark_entries(tmp_path: Path, wav: Path) -> None:
    samples = (_reference(wav) * 32768).astype(np.int16)
    kaldiio.save_ark(
        str(tmp_path / "w.ark"), {"u": (16000, samples)}, scp=str(tmp_path / "w.scp"), write_function="soundfile"
    )
    entry = (tmp_path / "w.scp").read_text().split()[1]
    np.testing.assert_allclose(AudioReader({"u": entry}).read("u"), _reference(wav), atol=1e-6)


def test_wrong_rate_is_an_error_unless_resampling(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "b.wav", seconds=1.0, rate=8000)
    scp = tmp_path / "wav.scp"
    scp.write_text(f"x {tmp_path / 'a.wav'}\nb {path}\n")
    with pytest.raises(SpkverifError, match="8000 Hz, not 16000 Hz") as caught:
        AudioReader({"b": str(path)}, wav_scp_path=scp).read("b")
    assert caught.value.line == 2
    assert len(AudioReader({"b": str(path)}, allow_resample=True).read("b")) == 16000


def test_failing_command_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpkverifError, match="status 3"):
        AudioReader({"u": "exit 3 |"}).read("u")
    with pytest.raises(SpkverifError, match="cannot read audio"):
        AudioReader({"u": str(tmp_path / "missing.wav")}).read("u")


def test_preloaded_audio_cuts_what_the_reader_reads(tmp_path: Path, wav: Path) -> None:
    """FLAC, WAV, a pipe, segments and a resampled file: every chunk equal to the reader's own."""
    soundfile.write(tmp_path / "a.flac", _reference(wav), 16000, subtype="PCM_16")
    slow = write_wav(tmp_path / "slow.wav", seconds=1.0, rate=8000)
    scp = {"f": str(wav), "c": str(tmp_path / "a.flac"), "p": f"cat {wav} |", "r": str(slow)}
    segments = {
        "f": Segment("f", 0.0, None), "c1": Segment("c", 0.25, 1.5), "c2": Segment("c", 1.0, None),
        "p1": Segment("p", 0.5, 1.25), "r": Segment("r", 0.0, None),
    }  # fmt: skip
    reader = AudioReader(scp, segments, allow_resample=True)
    preloaded = PreloadedAudio(reader, list(segments))
    rng = np.random.default_rng(0)
    for utt in segments:
        length = reader.num_samples(utt)
        assert preloaded.num_samples(utt) == length
        np.testing.assert_array_equal(preloaded.read(utt), reader.read(utt))
        for _ in range(20):
            offset = int(rng.integers(0, length))
            count = int(rng.integers(1, length + 100))  # past the end too: both stop at it
            np.testing.assert_array_equal(preloaded.read(utt, offset, count), reader.read(utt, offset, count))
    chunk = preloaded.read("c1", 0, 100)
    chunk[:] = 1.0  # the caller's copy: augmentation may change it in place
    np.testing.assert_array_equal(preloaded.read("c1", 0, 100), reader.read("c1", 0, 100))
    with pytest.raises(SpkverifError, match="has no samples"):  # past the end of a file: the reader's error
        preloaded.read("c1", preloaded.num_samples("c1"), 10)
    past = preloaded.num_samples("p1") + 5  # ... and of a pipe, the reader's empty chunk
    np.testing.assert_array_equal(preloaded.read("p1", past, 10), reader.read("p1", past, 10))


def test_preloading_unreadable_audio_names_its_line(tmp_path: Path, wav: Path) -> None:
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a {wav}\nb {tmp_path / 'missing.flac'}\n")
    reader = AudioReader({"a": str(wav), "b": str(tmp_path / "missing.flac")}, wav_scp_path=scp)
    with pytest.raises(SpkverifError, match="cannot read audio of 'b'") as caught:
        PreloadedAudio(reader, ["a", "b"])
    assert (caught.value.line, Path(caught.value.path)) == (2, scp)
