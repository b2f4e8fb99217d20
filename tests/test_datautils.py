"""spkverif data combine|subset|fix|copy, each on directories with and without segments."""

from __future__ import annotations

from pathlib import Path

import pytest

from spkverif.io.datadir import load_data_dir, validate_data_dir


def _write(path: Path, name: str, rows: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items(), key=lambda kv: kv[0].encode())))


def make_dir(path: Path, speakers: dict[str, int], segmented: bool, gender: bool = True) -> Path:
    """Speaker s has n utterances s-u<i>; with `segmented`, two per recording s-r<j>."""
    utt2spk = {f"{spk}-u{i}": spk for spk, count in speakers.items() for i in range(count)}
    _write(path, "utt2spk", utt2spk)
    spk2utt = {spk: " ".join(sorted(u for u, s in utt2spk.items() if s == spk)) for spk in speakers}
    _write(path, "spk2utt", spk2utt)
    _write(path, "utt2dur", {utt: "1.5000" for utt in utt2spk})
    if gender:
        _write(path, "spk2gender", {spk: "mf"[i % 2] for i, spk in enumerate(speakers)})
    if segmented:
        segments = {}
        for utt in utt2spk:
            speaker, index = utt.rsplit("-u", 1)
            start = int(index) % 2 * 1.5
            segments[utt] = f"{speaker}-r{int(index) // 2} {start:.3f} {start + 1.5:.3f}"
        _write(path, "segments", segments)
        _write(path, "wav.scp", {seg.split()[0]: f"/audio/{seg.split()[0]}.wav" for seg in segments.values()})
    else:
        _write(path, "wav.scp", {utt: f"/audio/{utt}.flac" for utt in utt2spk})
    assert validate_data_dir(path) == []
    return path


def _keys(path: Path, name: str) -> list[str]:
    return [line.split()[0] for line in (path / name).read_text().splitlines()]


@pytest.mark.parametrize("segmented", [False, True])
def test_combine_is_the_union(tmp_path: Path, run_cli, segmented: bool) -> None:
    a = make_dir(tmp_path / "a", {"s1": 2, "s2": 4}, segmented)
    b = make_dir(tmp_path / "b", {"t1": 3}, segmented=False)
    result = run_cli("data", "combine", tmp_path / "all", a, b)
    assert result.exit_code == 0, result.stderr
    assert validate_data_dir(tmp_path / "all") == []
    data = load_data_dir(tmp_path / "all")
    assert len(data.utterances) == 9 and data.speakers == ["s1", "s2", "t1"]
    assert (tmp_path / "all" / "segments").exists() == segmented
    if segmented:  # b had none: each of its utterances is the whole of its recording
        assert data.segments["t1-u0"].recording == "t1-u0" and data.segments["t1-u0"].end is None
        assert data.audio_spec("s2-u3") == ("/audio/s2-r1.wav", 1.5, 3.0)
    assert _keys(tmp_path / "all", "spk2gender") == ["s1", "s2", "t1"]


@pytest.mark.parametrize("segmented", [False, True])
def test_combine_refuses_clashing_ids_in_one_line_then_copy_prefixes_them(
    tmp_path: Path, run_cli, segmented: bool
) -> None:
    a = make_dir(tmp_path / "a", {"s1": 2}, segmented)
    b = make_dir(tmp_path / "b", {"s1": 3}, segmented)
    result = run_cli("data", "combine", tmp_path / "all", a, b)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "utterance id 's1-u0'" in lines[0] and f"both {a} and {b}" in lines[0] and "--utt-prefix" in lines[0]
    assert not (tmp_path / "all").exists()
    result = run_cli("data", "copy", b, tmp_path / "b2", "--spk-prefix", "b-", "--utt-prefix", "b-")
    assert result.exit_code == 0, result.stderr
    assert _keys(tmp_path / "b2", "utt2spk") == ["b-s1-u0", "b-s1-u1", "b-s1-u2"]
    assert (tmp_path / "b2" / "utt2spk").read_text().split()[1] == "b-s1"
    assert _keys(tmp_path / "b2", "spk2gender") == ["b-s1"]
    if segmented:
        assert (tmp_path / "b2" / "segments").read_text().split()[:2] == ["b-s1-u0", "b-s1-r0"]
        assert _keys(tmp_path / "b2", "wav.scp") == ["b-s1-r0", "b-s1-r1"]
    result = run_cli("data", "combine", tmp_path / "all", a, tmp_path / "b2")
    assert result.exit_code == 0, result.stderr
    assert load_data_dir(tmp_path / "all").speakers == ["b-s1", "s1"]


@pytest.mark.parametrize("segmented", [False, True])
@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (["--first", "3"], ["s1-u0", "s1-u1", "s2-u0"]),
        (["--per-spk", "1"], ["s1-u0", "s2-u0", "s3-u0"]),
        (["--spk-list", "SPK"], ["s3-u0", "s3-u1", "s3-u2", "s3-u3"]),
        (["--utt-list", "UTT"], ["s1-u1", "s3-u2"]),
    ],
)
def test_subset(tmp_path: Path, run_cli, segmented: bool, how: list[str], expected: list[str]) -> None:
    source = make_dir(tmp_path / "src", {"s1": 2, "s2": 2, "s3": 4}, segmented)
    (tmp_path / "SPK").write_text("s3\nnobody\n")
    (tmp_path / "UTT").write_text("s3-u2\ns1-u1 extra fields are ignored\n")
    how = [str(tmp_path / arg) if arg in ("SPK", "UTT") else arg for arg in how]
    result = run_cli("data", "subset", source, tmp_path / "out", *how)
    assert result.exit_code == 0, result.stderr
    assert _keys(tmp_path / "out", "utt2spk") == expected
    assert validate_data_dir(tmp_path / "out") == []
    speakers = sorted({utt.split("-")[0] for utt in expected})
    assert _keys(tmp_path / "out", "spk2gender") == speakers
    if segmented:  # only the recordings the kept segments use
        recordings = sorted({line.split()[1] for line in (tmp_path / "out" / "segments").read_text().splitlines()})
        assert _keys(tmp_path / "out", "wav.scp") == recordings
    if "--spk-list" in how:
        assert "1 id(s) of the list are not in" in result.stderr


def test_subset_random_is_seeded_and_needs_one_way(tmp_path: Path, run_cli) -> None:
    source = make_dir(tmp_path / "src", {"s1": 5, "s2": 5}, segmented=False)
    for out, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert run_cli("data", "subset", source, tmp_path / out, "--random", "4", "--seed", seed).exit_code == 0
    assert _keys(tmp_path / "a", "utt2spk") == _keys(tmp_path / "b", "utt2spk")
    assert _keys(tmp_path / "a", "utt2spk") != _keys(tmp_path / "c", "utt2spk")
    assert len(_keys(tmp_path / "a", "utt2spk")) == 4
    result = run_cli("data", "subset", source, tmp_path / "d", "--first", "2", "--per-spk", "1")
    assert result.exit_code == 1 and "give exactly one of" in result.stderr and "--first, --per-spk" in result.stderr


@pytest.mark.parametrize("segmented", [False, True])
def test_fix_keeps_what_every_file_knows_and_says_what_it_dropped(tmp_path: Path, run_cli, segmented: bool) -> None:
    path = make_dir(tmp_path / "d", {"s1": 2, "s2": 4}, segmented)
    # Break it as real work does: an utterance without a duration, a speaker with no
    # utterances left, an unsorted and repeated wav.scp, and spk2utt out of date.
    (path / "utt2dur").write_text((path / "utt2dur").read_text().replace("s2-u3 1.5000\n", ""))
    (path / "utt2spk").write_text(
        (path / "utt2spk").read_text().replace("s1-u0 s1\ns1-u1 s1\n", "") + "ghost-u0 ghost\n"
    )
    wav = (path / "wav.scp").read_text().splitlines()
    (path / "wav.scp").write_text("\n".join(reversed([*wav, wav[0]])) + "\n")
    assert validate_data_dir(path) != []
    result = run_cli("data", "fix", path)
    assert result.exit_code == 0, result.stderr
    assert validate_data_dir(path) == []
    assert _keys(path, "utt2spk") == ["s2-u0", "s2-u1", "s2-u2"]
    assert _keys(path, "spk2gender") == ["s2"]
    assert f"{path / 'utt2dur'}: 2 line(s) dropped (e.g. s1-u0, s1-u1)" in result.stderr
    assert f"{path / 'utt2spk'}: 2 line(s) dropped (e.g. s2-u3, ghost-u0)" in result.stderr
    assert "repeated key(s) dropped" in result.stderr
    assert "ghost-u0" in result.stderr
    if segmented:
        assert _keys(path, "wav.scp") == ["s2-r0", "s2-r1"]
        assert f"{path / 'segments'}: 3 line(s) dropped" in result.stderr
    else:
        assert f"{path / 'wav.scp'}: 3 line(s) dropped" in result.stderr


def test_a_failed_command_leaves_no_output(tmp_path: Path, run_cli) -> None:
    source = make_dir(tmp_path / "src", {"s1": 2}, segmented=False)
    (tmp_path / "list").write_text("nobody\n")
    result = run_cli("data", "subset", source, tmp_path / "out", "--spk-list", tmp_path / "list")
    assert result.exit_code == 1 and "no utterances left" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list", "src"]


def _audio_dir(path: Path, segmented: bool) -> Path:
    """Two speakers' recordings of known lengths (one at 8 kHz); with `segmented`, two segments of one."""
    from tests.conftest import write_data_dir, write_wav

    files = {
        "a-1": write_wav(path / "audio" / "a-1.wav", 1.0),
        "a-2": write_wav(path / "audio" / "a-2.wav", 0.5, seed=1),
        "b-1": write_wav(path / "audio" / "b-1.wav", 0.75, rate=8000, seed=2),
    }
    if not segmented:
        return write_data_dir(path / "d", {k: str(v) for k, v in files.items()}, {"a-1": "a", "a-2": "a", "b-1": "b"})
    utt2spk = {"a-1-x": "a", "a-1-y": "a", "b-1-x": "b"}
    out = write_data_dir(path / "d", {k: str(v) for k, v in files.items()}, utt2spk)
    (out / "segments").write_text("a-1-x a-1 0.00 0.40\na-1-y a-1 0.40 1.00\nb-1-x b-1 0.10 0.35\n")
    return out


@pytest.mark.parametrize("segmented", [False, True])
def test_durations_writes_utt2dur_as_get_utt2dur_does(tmp_path: Path, run_cli, segmented: bool) -> None:
    path = _audio_dir(tmp_path, segmented)
    result = run_cli("data", "durations", path)
    assert result.exit_code == 0, result.stderr
    expected = "a-1-x 0.4000\na-1-y 0.6000\nb-1-x 0.2500\n" if segmented else "a-1 1.0000\na-2 0.5000\nb-1 0.7500\n"
    assert (path / "utt2dur").read_text() == expected
    assert validate_data_dir(path) == []
    # present and complete: left alone, unless --force
    (path / "utt2dur").write_text(expected.replace("0.", "9."))
    assert run_cli("data", "durations", path).exit_code == 0
    assert (path / "utt2dur").read_text() == expected.replace("0.", "9.")
    assert run_cli("data", "durations", path, "--force").exit_code == 0
    assert (path / "utt2dur").read_text() == expected


def test_durations_of_unreadable_audio_is_one_line_and_writes_nothing(tmp_path: Path, run_cli) -> None:
    path = _audio_dir(tmp_path, segmented=False)
    (tmp_path / "audio" / "a-2.wav").write_bytes(b"not a wav")
    result = run_cli("data", "durations", path)
    assert result.exit_code == 1 and "cannot read audio of 'a-2'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (path / "utt2dur").exists()
