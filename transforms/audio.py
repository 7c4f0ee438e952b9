"""Audio decoding, mixing, resampling and segmenting: bytes in, fixed-length mono segments out.

Every function here is plain numpy and is unit-tested without Beam.  Failures raise
:class:`AudioError`, whose ``reason`` is a short stable code used in dead-letter records and
metrics counters.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
import warnings

import numpy as np
import soundfile as sf
import soxr

from transforms.spec import SpectrogramParams

__all__ = [
    "AudioError",
    "AUDIO_EXTENSIONS",
    "decode_audio",
    "to_mono",
    "resample",
    "load_mono",
    "segment_audio",
    "segment_starts",
]

logger = logging.getLogger(__name__)

#: Extensions that featurize and label accept (lower case, without the dot).
AUDIO_EXTENSIONS = ("wav", "wave", "flac", "ogg", "oga", "mp3", "au", "snd", "aif", "aiff", "aifc")


class AudioError(Exception):
    """An input that cannot become segments.

    Parameters
    ----------
    reason : str
        Stable short code: ``empty``, ``unsupported_format``, ``decode_error``, ``truncated``,
        ``no_samples``, ``non_finite``, ``too_short``, ``read_error``.
    message : str
        Human-readable detail.
    stage : str
        Pipeline stage that failed: ``read``, ``decode`` or ``segment``.
    """

    def __init__(self, reason: str, message: str, *, stage: str = "decode") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.stage = stage


def _extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def decode_audio(data: bytes, *, name: str = "", max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode an encoded audio file held in memory.

    Parameters
    ----------
    data : bytes
        The whole file (wav, flac, ogg/vorbis, mp3, Sun .au, aiff).
    name : str
        File name or URI, used for its extension and in messages only.
    max_seconds : float, optional
        Decode at most this many seconds from the start (bounds the memory a very long file
        takes); ``None`` decodes everything.

    Returns
    -------
    samples : np.ndarray, float32, shape (n_channels, n_samples)
        Samples in [-1, 1] for integer formats.
    sample_rate : int
        Native sampling rate in Hz.

    Raises
    ------
    AudioError
        ``empty`` for zero bytes, ``unsupported_format`` for an extension outside
        :data:`AUDIO_EXTENSIONS`, ``decode_error`` when neither libsndfile nor the librosa/audioread
        fallback can read it, ``truncated`` when the file ends before the audio its header
        declares (see :func:`_truncation`), ``no_samples`` for a valid header without audio.
    """
    ext = _extension(name)
    if name and ext not in AUDIO_EXTENSIONS:
        raise AudioError("unsupported_format", f"extension {ext!r} is not one of {AUDIO_EXTENSIONS}")
    if len(data) == 0:
        raise AudioError("empty", "file has zero bytes")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            frames = -1 if max_seconds is None else min(f.frames, int(max_seconds * f.samplerate))
            samples = f.read(frames=frames, dtype="float32", always_2d=True)
            sample_rate = int(f.samplerate)
            # A deliberately partial read (max_seconds) says nothing about truncation.
            truncation = _truncation(f, data, n_read=len(samples)) if frames in (-1, f.frames) else None
    except Exception as sf_error:  # libsndfile raises several types (LibsndfileError, RuntimeError)
        samples, sample_rate = _decode_fallback(data, ext=ext, first_error=sf_error)
        if max_seconds is not None:
            samples = samples[: int(max_seconds * sample_rate)]
        truncation = None
    if truncation:
        raise AudioError("truncated", truncation)
    if samples.size == 0:
        raise AudioError("no_samples", "file decodes to zero samples")
    return np.ascontiguousarray(samples.T), sample_rate


# libsndfile's parser log (``SoundFile.extra_info``) notes a declared size larger than the file:
# wav ``data : 88200 (should be 44078)``, au ``Data Size : 88200 (should be 44088)``, aiff
# ``*** Chunk size 88208 > file length 44127`` or a ``COMM`` frame count above the ``SSND`` data.
_DECLARED_VS_ACTUAL = re.compile(r"^\s*(?:data|Data Size)\s*:\s*(\d+) \(should be (\d+)\)", re.M)
_AIFF_SHORT = re.compile(r"Chunk size (\d+) > file length (\d+)|'COMM' chunk \((\d+)\) not equal")
# Streaming writers put these placeholders in the size field when the length is unknown.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)


def _has_frame_count_header(data: bytes) -> bool:
    """True when an MPEG stream starts with a Xing/Info/VBRI header, which stores the exact
    frame count; without one the decoder only estimates the length from the file size."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # skip an ID3v2 tag (syncsafe size, maybe footer)
        b6, b7, b8, b9 = (x & 0x7F for x in data[6:10])
        size = b6 << 21 | b7 << 14 | b8 << 7 | b9
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    head = data[start : start + 4096]
    return any(tag in head for tag in (b"Xing", b"Info", b"VBRI"))


def _truncation(f: sf.SoundFile, data: bytes, *, n_read: int) -> str | None:
    """Describe how a file is cut short, or return ``None`` when it is complete.

    Two signs: the container header declares more audio bytes than the file holds (wav, au, aiff;
    size placeholders of streaming writers excepted), or the decoder announced more frames than
    it delivered by more than 1% and one mp3 frame (1152 samples).  For mp3 the announced count
    is trusted only when a Xing/Info/VBRI header stores it (otherwise it is an estimate).
    """
    info = f.extra_info
    for declared, actual in _DECLARED_VS_ACTUAL.findall(info):
        if int(declared) > int(actual) and int(declared) not in _UNKNOWN_SIZES:
            return f"header declares {declared} audio bytes, file holds {actual}"
    if _AIFF_SHORT.search(info):
        return "aiff sound data is shorter than its header declares"
    if f.format == "MP3" and not _has_frame_count_header(data):
        return None
    shortfall = f.frames - n_read
    if f.frames > 0 and shortfall > max(1152, 0.01 * f.frames):
        return f"header announces {f.frames} frames, only {n_read} decode"
    return None


# Opened by *path*, libsndfile reads an unrecognised file named ``.au``/``.snd`` as headerless
# 8 kHz mu-law, so random bytes would "decode" as noise; the fallback hides those extensions.
_RAW_GUESS_EXTENSIONS = ("au", "snd")


def _decode_fallback(data: bytes, *, ext: str, first_error: Exception) -> tuple[np.ndarray, int]:
    """Try librosa (audioread) on formats libsndfile refused; it needs a real file."""
    suffix = "." + (ext if ext and ext not in _RAW_GUESS_EXTENSIONS else "bin")
    try:
        import librosa  # deferred: heavy import, rarely needed

        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp, warnings.catch_warnings():
            # librosa warns "PySoundFile failed" and about audioread's deprecation on every call.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            tmp.write(data)
            tmp.flush()
            y, sr = librosa.load(tmp.name, sr=None, mono=False, dtype=np.float32)
    except Exception as fallback_error:
        detail = str(fallback_error) or "no decoder could read it"
        raise AudioError(
            "decode_error",
            f"libsndfile: {first_error}; fallback: {type(fallback_error).__name__}: {detail}",
        ) from None
    y = np.atleast_2d(y)
    return np.ascontiguousarray(y.T), int(sr)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mix ``(n_channels, n_samples)`` to ``(n_samples,)`` float32 by averaging channels.

    Stereo is summed pairwise ``(L + R) / 2``, which is numerically what ``np.mean`` gives and much
    faster on large arrays.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        return samples
    if samples.shape[0] == 1:
        return samples[0]
    if samples.shape[0] == 2:
        return (samples[0] + samples[1]) * np.float32(0.5)
    return samples.mean(axis=0, dtype=np.float32)


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (``HQ``, librosa's default ``soxr_hq``).

    The result has ``ceil(len(y) * target_sr / orig_sr)`` samples, exactly as
    ``librosa.resample(res_type="soxr_hq")``, which trims or zero-pads soxr's output by a sample.
    Returns ``y`` unchanged when the rates are equal.
    """
    if orig_sr == target_sr:
        return np.asarray(y, dtype=np.float32)
    n_out = int(np.ceil(len(y) * float(target_sr) / orig_sr))
    out = np.asarray(soxr.resample(y, orig_sr, target_sr, quality="HQ"), dtype=np.float32)
    if len(out) > n_out:
        out = out[:n_out]
    elif len(out) < n_out:
        out = np.pad(out, (0, n_out - len(out)))
    return out


def load_mono(
    data: bytes, *, params: SpectrogramParams, name: str = "", max_seconds: float | None = None
) -> np.ndarray:
    """Decode, mix to mono, check and resample: the whole path from file bytes to samples.

    Parameters
    ----------
    data : bytes
        Encoded audio file.
    params : SpectrogramParams
        Supplies the target ``sample_rate``.
    name : str
        File name or URI for the extension and messages.
    max_seconds : float, optional
        Keep at most this many seconds from the start (see :func:`decode_audio`).

    Returns
    -------
    np.ndarray, float32, shape (n_samples,)
        Mono audio at ``params.sample_rate``.

    Raises
    ------
    AudioError
        As :func:`decode_audio`, plus ``non_finite`` when any sample is NaN or infinite.
    """
    samples, sr = decode_audio(data, name=name, max_seconds=max_seconds)
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError("non_finite", f"{bad} of {samples.size} samples are NaN or infinite")
    y = to_mono(samples)
    return resample(y, orig_sr=sr, target_sr=params.sample_rate)


def segment_starts(n_samples: int, *, params: SpectrogramParams) -> list[int]:
    """Start sample of every segment :func:`segment_audio` cuts from ``n_samples`` samples.

    Full segments start every ``segment_hop_samples``.  The tail that no full segment covers
    becomes one more zero-padded segment, starting one hop after the last full one, when it is at
    least ``min_tail_samples`` long; a shorter tail is dropped.  A clip shorter than one segment is
    all tail: one padded segment, or none.
    """
    seg, hop = params.segment_samples, params.segment_hop_samples
    starts = list(range(0, n_samples - seg + 1, hop))
    covered_to = starts[-1] + seg if starts else 0
    if n_samples - covered_to >= params.min_tail_samples and n_samples > covered_to:
        starts.append(starts[-1] + hop if starts else 0)
    return starts


def segment_audio(y: np.ndarray, *, params: SpectrogramParams) -> np.ndarray:
    """Cut mono audio into fixed-length segments.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``params.sample_rate``.
    params : SpectrogramParams
        Segment length, hop and tail policy (see :func:`segment_starts`).

    Returns
    -------
    np.ndarray, float32, shape (n_segments, params.segment_samples)
        A partial last segment is zero-padded at the end.

    Raises
    ------
    AudioError
        ``too_short`` when the clip yields no segment (shorter than ``min_tail_samples``).
    """
    y = np.asarray(y, dtype=np.float32)
    starts = segment_starts(len(y), params=params)
    if not starts:
        raise AudioError(
            "too_short",
            f"{len(y) / params.sample_rate:.3f} s of audio is shorter than the minimum "
            f"{params.min_tail_samples / params.sample_rate:.3f} s for one segment",
            stage="segment",
        )
    seg = params.segment_samples
    out = np.zeros((len(starts), seg), dtype=np.float32)
    for i, start in enumerate(starts):
        piece = y[start : start + seg]
        out[i, : len(piece)] = piece
    return out

