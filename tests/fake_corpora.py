"""Small fake VoxCeleb1, VoxCeleb2, MUSAN and RIRS_NOISES trees with the real layouts.

Each builder writes a few short files of synthetic audio where the real corpus
keeps its files, with real-looking ids, plus the text files the preparers read
(trial lists in the official form, vox1_meta.csv, rir_list, noise_list,
ANNOTATIONS), and returns what it made so a test can check the output against
it. Speakers differ in pitch and timbre, so an end-to-end test can train on them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

RATE = 16000
_YOUTUBE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_REAL_LOOKING_VIDEOS = ("5r0dWxy17C8", "x6uYqmx31kE", "8jEAjG6SegY", "Yw8v8h5SFCM", "-0Ve_kBgE5I")


@dataclass
class FakeVoxCeleb:
    """A fake VoxCeleb tree: ROOT, each utterance id's file, and its trial lists (O/E/H)."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    speakers: dict[str, str] = field(default_factory=dict)
    test_speakers: list[str] = field(default_factory=list)
    trial_lists: dict[str, Path] = field(default_factory=dict)

    @property
    def utt2spk(self) -> dict[str, str]:
        return {utt: utt.split("-")[0] for utt in self.files}


def video_ids(rng: np.random.Generator, count: int, real_looking: bool = False) -> list[str]:
    """Eleven-character YouTube-style ids; with `real_looking`, the first few are taken from the real corpus."""
    ids = list(_REAL_LOOKING_VIDEOS[:count]) if real_looking else []
    while len(ids) < count:
        candidate = "".join(rng.choice(list(_YOUTUBE_ALPHABET), size=11))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def speaker_audio(rng: np.random.Generator, speaker_index: int, seconds: float) -> np.ndarray:
    """A buzzy voice-like signal: a speaker-specific pitch and formant pair, jittered, plus noise."""
    length = max(1, int(seconds * RATE))
    pitch = 90.0 + 17.0 * (speaker_index % 11) + rng.uniform(-3, 3)
    formants = (400.0 + 60.0 * (speaker_index % 7), 1400.0 + 150.0 * (speaker_index % 5))
    time = np.arange(length) / RATE
    phase = 2 * np.pi * np.cumsum(pitch * (1 + 0.03 * np.sin(2 * np.pi * 3 * time))) / RATE
    signal = np.zeros(length)
    for harmonic in range(1, 30):
        frequency = harmonic * pitch
        if frequency > RATE / 2 - 200:
            break
        gain = sum(np.exp(-(((frequency - f) / 150.0) ** 2)) for f in formants) + 0.05
        signal += gain * np.sin(harmonic * phase) / harmonic
    signal += 0.05 * rng.standard_normal(length)
    return (0.5 * signal / (np.max(np.abs(signal)) + 1e-9)).astype(np.float32)


def write_m4a(path: Path, samples: np.ndarray, codec: str = "aac", rate: int = RATE) -> Path:
    """Encode mono float samples (T,) as an M4A file (aac, or lossless alac) with PyAV, no ffmpeg needed."""
    import av

    pcm = np.clip(np.rint(samples * 32768), -32768, 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_audio(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def write_voxceleb_trials(path: Path, utt2spk: dict[str, str], count: int, seed: int) -> Path:
    """`1|0 spk/video/clip.wav spk/video/clip.wav` lines in the official form, half target where there are enough."""
    rng = np.random.default_rng(seed)
    utts = sorted(utt2spk)
    pairs = list(itertools.combinations(utts, 2))
    targets = [p for p in pairs if utt2spk[p[0]] == utt2spk[p[1]]]
    nontargets = [p for p in pairs if utt2spk[p[0]] != utt2spk[p[1]]]
    num_targets = min(count // 2, len(targets))
    num_nontargets = min(count - num_targets, len(nontargets))
    chosen = [(1, targets[i]) for i in rng.choice(len(targets), num_targets, replace=False)]
    chosen += [(0, nontargets[i]) for i in rng.choice(len(nontargets), num_nontargets, replace=False)]
    rng.shuffle(chosen)

    def official(utt: str) -> str:
        speaker, rest = utt[:7], utt[8:]
        video, clip = rest[:-6], rest[-5:]
        return f"{speaker}/{video}/{clip}.wav"

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{label} {official(a)} {official(b)}\n" for label, (a, b) in chosen))
    return path


def make_fake_voxceleb1(
    root: Path,
    dev_speakers: int = 3,
    test_speakers: int = 2,
    videos: int = 2,
    utts: int = 2,
    seconds: float = 0.5,
    trials: int = 20,
    meta: bool = False,
    seed: int = 0,
) -> FakeVoxCeleb:
    """ROOT/wav/idXXXXX/<video>/NNNNN.wav: dev speakers from id10001, test speakers from id10270,
    with veri_test2.txt (test speakers), list_test_all2.txt and list_test_hard2.txt (all) in ROOT."""
    rng = np.random.default_rng(seed)
    fake = FakeVoxCeleb(root=Path(root))
    dev = [f"id{10001 + i}" for i in range(dev_speakers)]
    test = [f"id{10270 + i}" for i in range(test_speakers)]
    fake.test_speakers = test
    for index, speaker in enumerate(dev + test):
        for video in video_ids(rng, videos, real_looking=speaker == "id10270"):
            for clip in range(1, utts + 1):
                utt = f"{speaker}-{video}-{clip:05d}"
                path = root / "wav" / speaker / video / f"{clip:05d}.wav"
                length = seconds * rng.uniform(0.8, 1.2)
                fake.files[utt] = write_audio(path, speaker_audio(rng, index, length))
                fake.speakers[utt] = speaker
    test_utts = {u: s for u, s in fake.utt2spk.items() if s in test}
    fake.trial_lists["O"] = write_voxceleb_trials(root / "veri_test2.txt", test_utts, trials, seed)
    fake.trial_lists["E"] = write_voxceleb_trials(root / "list_test_all2.txt", fake.utt2spk, trials, seed + 1)
    fake.trial_lists["H"] = write_voxceleb_trials(root / "list_test_hard2.txt", fake.utt2spk, trials, seed + 2)
    if meta:
        lines = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
        lines += [
            f"{spk}\tPerson_{spk}\t{'mf'[i % 2]}\tNowhere\t{'test' if spk in test else 'dev'}"
            for i, spk in enumerate(dev + test)
        ]
        (root / "vox1_meta.csv").write_text("\n".join(lines) + "\n")
    return fake


def make_fake_voxceleb2(
    root: Path,
    speakers: int = 3,
    videos: int = 2,
    utts: int = 2,
    seconds: float = 0.5,
    subset: str = "dev",
    audio_ext: str = "m4a",
    codec: str = "aac",
    seed: int = 0,
) -> tuple[FakeVoxCeleb, dict[str, np.ndarray]]:
    """ROOT/<subset>/aac/idXXXXX/<video>/NNNNN.m4a (encoded with PyAV) or ROOT/<subset>/wav/.../NNNNN.wav.

    Returns the tree and the source samples of each utterance (what decoding should give back).
    """
    rng = np.random.default_rng(seed)
    fake = FakeVoxCeleb(root=Path(root))
    sources: dict[str, np.ndarray] = {}
    folder = "aac" if audio_ext == "m4a" else audio_ext
    for index in range(speakers):
        speaker = f"id{index * 37 + 12:05d}"
        for video in video_ids(rng, videos, real_looking=index == 0):
            for clip in range(1, utts + 1):
                utt = f"{speaker}-{video}-{clip:05d}"
                samples = speaker_audio(rng, index, seconds * rng.uniform(0.8, 1.2))
                path = root / subset / folder / speaker / video / f"{clip:05d}.{audio_ext}"
                wav = write_audio(path.with_suffix(".source.wav") if audio_ext == "m4a" else path, samples)
                sources[utt] = soundfile.read(wav, dtype="float32")[0]
                if audio_ext == "m4a":
                    write_m4a(path, sources[utt], codec)
                    wav.unlink()
                fake.files[utt] = path
                fake.speakers[utt] = speaker
    return fake, sources


@dataclass
class FakeCollection:
    """A fake MUSAN or RIRS_NOISES: its root, and the files of each output set by id."""

    root: Path
    sets: dict[str, dict[str, Path]] = field(default_factory=dict)


MUSAN_SOURCES = {
    "noise": ("free-sound", "sound-bible"),
    "music": ("fma", "fma-western-art", "hd-classical", "jamendo", "rfm"),
    "speech": ("librivox", "us-gov"),
}


def make_fake_musan(root: Path, per_source: int = 2, seconds: float = 0.3, seed: int = 0) -> FakeCollection:
    """ROOT/{noise,music,speech}/<source>/<subset>-<source>-NNNN.wav, with ANNOTATIONS and LICENSE files."""
    rng = np.random.default_rng(seed)
    fake = FakeCollection(Path(root))
    for subset, sources in MUSAN_SOURCES.items():
        files = fake.sets.setdefault(f"musan_{subset}", {})
        for source in sources:
            directory = root / subset / source
            names = [f"{subset}-{source}-{number:04d}" for number in range(per_source)]
            for name in names:
                samples = (0.1 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
                files[name] = write_audio(directory / f"{name}.wav", samples)
            (directory / "ANNOTATIONS").write_text("".join(f"{n} unknown N nobody\n" for n in names))
            (directory / "LICENSE").write_text("fake\n")
    fake.sets["musan"] = {k: v for files in list(fake.sets.values()) for k, v in files.items()}
    return fake


def _impulse_response(rng: np.random.Generator, seconds: float, channels: int = 1) -> np.ndarray:
    length = int(seconds * RATE)
    decay = np.exp(-np.arange(length) / (0.05 * RATE))
    response = rng.standard_normal((length, channels)) * decay[:, None] * 0.3
    response[0] = 0.9
    return response.astype(np.float32).squeeze()


def make_fake_rirs(
    root: Path,
    rooms: int = 2,
    rirs_per_room: int = 2,
    real: int = 2,
    isotropic: int = 1,
    pointsource: int = 2,
    seconds: float = 0.2,
    seed: int = 0,
) -> FakeCollection:
    """ROOT/RIRS_NOISES with simulated_rirs/{small,medium,large}room/RoomNNN/RoomNNN-NNNNN.wav and rir_list,
    real_rirs_isotropic_noises/ (RIRs, isotropic noises, rir_list, noise_list), pointsource_noises/ (noise_list).
    Returns ROOT/RIRS_NOISES as root."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "RIRS_NOISES"
    fake = FakeCollection(base)
    for size in ("small", "medium", "large"):
        files = fake.sets.setdefault(f"rirs_{size}room", {})
        lines = []
        for room in range(1, rooms + 1):
            for number in range(1, rirs_per_room + 1):
                relative = f"simulated_rirs/{size}room/Room{room:03d}/Room{room:03d}-{number:05d}.wav"
                utt = f"{size}-Room{room:03d}-{number:05d}"
                files[utt] = write_audio(base / relative, _impulse_response(rng, seconds))
                lines.append(f"--rir-id {utt} --room-id {size}-Room{room:03d} RIRS_NOISES/{relative}\n")
        (base / "simulated_rirs" / f"{size}room" / "rir_list").write_text("".join(lines))
    fake.sets["rirs"] = {k: v for name in list(fake.sets) for k, v in fake.sets[name].items()}
    real_dir = base / "real_rirs_isotropic_noises"
    rir_lines, noise_lines = [], []
    fake.sets["rirs_real"] = {}
    fake.sets["rirs_isotropic_noises"] = {}
    for number in range(1, real + 1):
        stem = f"RVB2014_type1_rir_largeroom{number}_near_anglb"
        channels = 2 if number % 2 == 0 else 1
        fake.sets["rirs_real"][stem] = write_audio(real_dir / f"{stem}.wav", _impulse_response(rng, seconds, channels))
        rir_lines.append(
            f"--rir-id {stem} --room-id RVB2014_type1_largeroom{number} RIRS_NOISES/{real_dir.name}/{stem}.wav\n"
        )
    for number in range(1, isotropic + 1):
        stem = f"RVB2014_type1_noise_largeroom{number}_{number}"
        noise = (0.05 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
        fake.sets["rirs_isotropic_noises"][stem] = write_audio(real_dir / f"{stem}.wav", noise)
        noise_lines.append(
            f"--noise-id {stem} --noise-type isotropic --bg-fg-type background "
            f"--room-linkage RVB2014_type1_largeroom{number} RIRS_NOISES/{real_dir.name}/{stem}.wav\n"
        )
    (real_dir / "rir_list").write_text("".join(rir_lines))
    (real_dir / "noise_list").write_text("".join(noise_lines))
    point_dir = base / "pointsource_noises"
    fake.sets["rirs_pointsource_noises"] = {}
    point_lines = []
    for number in range(pointsource):
        stem = f"noise-free-sound-{number:04d}"
        noise = (0.05 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
        fake.sets["rirs_pointsource_noises"][stem] = write_audio(point_dir / f"{stem}.wav", noise)
        point_lines.append(
            f"--noise-id {stem} --noise-type point-source --bg-fg-type foreground "
            f"RIRS_NOISES/pointsource_noises/{stem}.wav\n"
        )
    (point_dir / "noise_list").write_text("".join(point_lines))
    return fake


@dataclass
class FakeLibriSpeech:
    """A fake LibriSpeech: ROOT (holding LibriSpeech/), each subset's files by utterance id, genders."""

    root: Path
    subsets: dict[str, dict[str, Path]] = field(default_factory=dict)
    genders: dict[str, str] = field(default_factory=dict)


def make_fake_librispeech(
    root: Path,
    subsets: dict[str, int] | None = None,
    chapters: int = 2,
    utts: int = 2,
    seconds: float = 0.4,
    speakers_txt: bool = True,
    seed: int = 0,
) -> FakeLibriSpeech:
    """ROOT/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-NNNN.flac with a transcript per
    chapter and SPEAKERS.TXT (the corpus's header, `ID | SEX | SUBSET | MINUTES | NAME`); `subsets` maps
    a subset to its number of speakers. Speaker ids have 2 to 4 digits, as in the corpus."""
    rng = np.random.default_rng(seed)
    corpus = Path(root) / "LibriSpeech"
    fake = FakeLibriSpeech(Path(root))
    table = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    index = 0
    for subset, speakers in (subsets or {"train-clean-100": 3, "test-other": 3}).items():
        files = fake.subsets.setdefault(subset, {})
        for _ in range(speakers):
            speaker = str((19, 103, 1034, 250, 7, 4970, 61, 8842)[index % 8] + 10000 * (index // 8))
            fake.genders[speaker] = "mf"[index % 2]
            table.append(f"{speaker:<5}| {fake.genders[speaker].upper()} | {subset:<17}| 25.00 | reader{speaker}")
            for chapter_index in range(chapters):
                chapter = str(1240 + 1000 * chapter_index + index)
                folder = corpus / subset / speaker / chapter
                lines = []
                for number in range(utts):
                    utt = f"{speaker}-{chapter}-{number:04d}"
                    samples = speaker_audio(rng, index, seconds * rng.uniform(0.8, 1.2))
                    path = folder / f"{utt}.flac"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    soundfile.write(path, samples, RATE, format="FLAC", subtype="PCM_16")
                    files[utt] = path
                    lines.append(f"{utt} SOME WORDS")
                (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
            index += 1
    if speakers_txt:
        (corpus / "SPEAKERS.TXT").write_text("; a comment\n;\n" + "\n".join(table) + "\n")
    return fake


def listing_ids(path: Path) -> list[str]:
    """The utterance ids of a compact listing (tests/data/librispeech_listings): each line
    `<speaker>-<chapter> N` stands for `<speaker>-<chapter>-0000` .. `-<N-1>`; `#` lines are comments."""
    ids = []
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            chapter, count = line.split()
            ids += [f"{chapter}-{number:04d}" for number in range(int(count))]
    return ids


def make_librispeech_tree(root: Path, subsets: dict[str, list[str]], samples: int = 160) -> FakeLibriSpeech:
    """ROOT/LibriSpeech/<subset>/<speaker>/<chapter>/<id>.flac for the given utterance ids, made in
    the order given, each `samples` of quiet noise, and SPEAKERS.TXT: a listing's layout and file
    names, not its audio."""
    rng = np.random.default_rng(0)
    fake = FakeLibriSpeech(Path(root))
    table = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for subset, ids in subsets.items():
        files = fake.subsets.setdefault(subset, {})
        for utt in ids:
            speaker, chapter, _ = utt.split("-")
            if speaker not in fake.genders:
                fake.genders[speaker] = "mf"[len(fake.genders) % 2]
                table.append(f"{speaker:<5}| {fake.genders[speaker].upper()} | {subset:<17}| 25.00 | reader{speaker}")
            path = Path(root) / "LibriSpeech" / subset / speaker / chapter / f"{utt}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, rng.normal(0, 0.01, samples), RATE, format="FLAC", subtype="PCM_16")
            files[utt] = path
    (Path(root) / "LibriSpeech" / "SPEAKERS.TXT").write_text("\n".join(table) + "\n")
    return fake
