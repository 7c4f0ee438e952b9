"""Shared test helpers: small generated audio files, GTZAN-style trees, corrupt inputs.

The plain functions (``tone``, ``write_audio``, ``make_gtzan_tree``, ``make_bad_files``) are also
available as fixtures of the same name, so a test can take them as arguments without importing
this module.  Everything is deterministic and a few seconds long at most.
"""

from __future__ import annotations

import io
import os
import pathlib
import socket
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_AUDIO = REPO_ROOT.parent / "shared" / "audio"

#: soundfile format name and a subtype that it can write, per file extension.
SOUNDFILE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "au": ("AU", "PCM_16"),
    "aiff": ("AIFF", "PCM_16"),
}


def tone(*, seconds: float, sample_rate: int = 22050, channels: int = 1, freq: float = 440.0,
         seed: int = 0) -> np.ndarray:
    """A sine at ``freq`` Hz with a little noise, float32 in [-0.5, 0.5].

    Returns
    -------
    np.ndarray, float32, shape (n_samples,) for one channel, (n_samples, channels) otherwise
        (soundfile's layout).
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    y = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n)
    y = y.astype(np.float32)
    if channels == 1:
        return y
    return np.stack([y * (1.0 - 0.1 * c) for c in range(channels)], axis=1)


def audio_bytes(y: np.ndarray, *, sample_rate: int, fmt: str = "wav", subtype: str | None = None) -> bytes:
    """Encode ``y`` (as :func:`tone` returns) in the format of extension ``fmt``."""
    major, default_subtype = SOUNDFILE_FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, y, sample_rate, format=major, subtype=subtype or default_subtype)
    return buf.getvalue()


def write_audio(path: str | os.PathLike, *, seconds: float = 1.0, sample_rate: int = 22050, channels: int = 1,
                freq: float = 440.0, seed: int = 0, subtype: str | None = None) -> pathlib.Path:
    """Write a generated clip; the format follows the file extension (wav, flac, ogg, mp3, au, aiff)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower()
    y = tone(seconds=seconds, sample_rate=sample_rate, channels=channels, freq=freq, seed=seed)
    path.write_bytes(audio_bytes(y, sample_rate=sample_rate, fmt=fmt, subtype=subtype))
    return path


def make_gtzan_tree(root: str | os.PathLike, *, genres: tuple[str, ...] = ("blues", "jazz", "rock"),
                    per_genre: int = 2, seconds: float = 1.0, formats: tuple[str, ...] = ("wav",),
                    sample_rate: int = 22050, channels: int = 1) -> dict[str, str]:
    """Write ``root/<genre>/<genre>.0000i.<ext>`` clips, cycling through ``formats``.

    Each genre has its own tone frequency.  Returns ``{path: genre}`` for every file written.
    """
    root = pathlib.Path(root)
    written = {}
    for g, genre in enumerate(genres):
        for i in range(per_genre):
            ext = formats[(g * per_genre + i) % len(formats)]
            path = root / genre / f"{genre}.{i:05d}.{ext}"
            write_audio(path, seconds=seconds, sample_rate=sample_rate, channels=channels,
                        freq=220.0 * (g + 1), seed=g * 100 + i)
            written[str(path)] = genre
    return written


def _float_wav_with(values: np.ndarray, sample_rate: int = 22050) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, values.astype(np.float32), sample_rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def make_bad_files(root: str | os.PathLike, *, sample_rate: int = 22050) -> dict[str, str]:
    """Write one file per kind of bad input under ``root/bad/``; returns ``{path: expected reason}``.

    Kinds: random bytes named .wav, a truncated flac, a zero-length wav, a header-only wav, a float
    wav with NaN and one with Inf, an unsupported extension, a directory named like audio
    (unreadable as a file) and a 0.2 s clip (shorter than half a 3 s segment).
    """
    bad = pathlib.Path(root) / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    expected = {}

    p = bad / "random.wav"
    p.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    expected[str(p)] = "decode_error"

    p = bad / "truncated.flac"
    full = audio_bytes(tone(seconds=2.0, sample_rate=sample_rate), sample_rate=sample_rate, fmt="flac")
    p.write_bytes(full[:60])  # inside the STREAMINFO block: no audio frames at all
    expected[str(p)] = "decode_error"

    p = bad / "empty.wav"
    p.write_bytes(b"")
    expected[str(p)] = "empty"

    p = bad / "header_only.wav"
    header = audio_bytes(np.zeros(0, np.float32), sample_rate=sample_rate, fmt="wav")
    p.write_bytes(header)
    expected[str(p)] = "no_samples"

    y = tone(seconds=2.0, sample_rate=sample_rate)
    y_nan = y.copy()
    y_nan[1000] = np.nan
    p = bad / "nan.wav"
    p.write_bytes(_float_wav_with(y_nan, sample_rate))
    expected[str(p)] = "non_finite"

    y_inf = y.copy()
    y_inf[5] = np.inf
    p = bad / "inf.wav"
    p.write_bytes(_float_wav_with(y_inf, sample_rate))
    expected[str(p)] = "non_finite"

    p = bad / "notes.txt"
    p.write_text("not audio\n")
    expected[str(p)] = "unsupported_format"

    p = bad / "short.wav"
    write_audio(p, seconds=0.2, sample_rate=sample_rate)
    expected[str(p)] = "too_short"
    return expected


def unreadable_path(root: str | os.PathLike) -> str:
    """A path with an audio extension that exists but cannot be read as a file (a directory)."""
    p = pathlib.Path(root) / "bad" / "folder.wav"
    p.mkdir(parents=True, exist_ok=True)
    return str(p)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for local servers in tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_audio_dir() -> pathlib.Path:
    """``../shared/audio`` next to the repository (real recordings; absent in some checkouts)."""
    return SHARED_AUDIO


@pytest.fixture
def shared_audio() -> pathlib.Path:
    """The real recordings folder; skips the test when it is absent."""
    if not SHARED_AUDIO.is_dir():
        pytest.skip(f"{SHARED_AUDIO} not present")
    return SHARED_AUDIO


# The helpers as fixtures, for tests that prefer not to import conftest.
@pytest.fixture(name="write_audio")
def _write_audio_fixture() -> Callable[..., pathlib.Path]:
    return write_audio


@pytest.fixture(name="make_gtzan_tree")
def _make_gtzan_tree_fixture() -> Callable[..., dict[str, str]]:
    return make_gtzan_tree


@pytest.fixture(name="make_bad_files")
def _make_bad_files_fixture() -> Callable[..., dict[str, str]]:
    return make_bad_files


@pytest.fixture(name="tone")
def _tone_fixture() -> Callable[..., np.ndarray]:
    return tone


@pytest.fixture
def gtzan_tree(tmp_path: pathlib.Path) -> tuple[pathlib.Path, dict[str, str]]:
    """A small GTZAN-layout tree (3 genres x 2 clips of 2.5 s, wav/flac/ogg/au/mp3/aiff)."""
    root = tmp_path / "gtzan"
    files = make_gtzan_tree(root, seconds=2.5, formats=("wav", "flac", "ogg", "au", "mp3", "aiff"))
    return root, files


@pytest.fixture(scope="session")
def reference_world(tmp_path_factory) -> dict:
    """The runner tiers' tiny world with both jobs' in-process reference outputs
    (``scaleout.reference_world``), computed once per session and shared by the Flink and Prism tiers."""
    import scaleout

    return scaleout.reference_world(tmp_path_factory.mktemp("reference-world"))
