"""Audio decoding, mixing, resampling and segmenting: bytes in, fixed-length mono segments out.

Every function here is plain numpy and is unit-tested without Beam.  Failures raise
:class:`AudioError`, whose ``reason`` is a short stable code used in dead-letter records and
metrics counters.

Memory bound
------------
:func:`load_mono` never holds a file's decoded multichannel audio: it checks the size the header
declares (:func:`frames_to_decode`), then decodes :data:`BLOCK_SAMPLES` interleaved samples at a
time, mixes each block to mono and feeds it to a streaming soxr resampler.  Its peak memory is the
encoded file (held by the caller) plus the mono output at the *target* rate (4 bytes x
``max_seconds`` x ``sample_rate``: 159 MB for 30 minutes at 22,050 Hz) plus a few blocks
(:func:`decode_memory_bound`), whatever the file's channel count and native rate.  A FLAC of
8-channel 192 kHz silence costs what a mono 22,050 Hz file of the same length costs.
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

from transforms.spec import MAX_SAMPLE_RATE, SpectrogramParams

__all__ = [
    "AudioError",
    "AUDIO_EXTENSIONS",
    "audio_extension",
    "decode_audio",
    "to_mono",
    "resample",
    "load_mono",
    "frames_to_decode",
    "decode_memory_bound",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MAX_DECODED_SAMPLES",
    "BLOCK_SAMPLES",
    "segment_audio",
    "segment_batches",
    "segment_starts",
]

logger = logging.getLogger(__name__)

#: Extensions that featurize and label accept (lower case, without the dot).
AUDIO_EXTENSIONS = ("wav", "wave", "flac", "ogg", "oga", "mp3", "au", "snd", "aif", "aiff", "aifc")

#: Most channels a header may declare (7.1.4 is 12, third-order ambisonics 16).
MAX_CHANNELS = 64
# MAX_SAMPLE_RATE (from transforms.spec): the highest native rate in Hz a header may declare, and
# the highest target rate (FLAC allows 655,350 Hz; DXD is 352,800).
#: Most samples (frames x channels) one file may make a worker decode: 2**32 covers 30 minutes of
#: 8-channel 192 kHz audio (2.8e9) and bounds the CPU time a header can ask for.
MAX_DECODED_SAMPLES = 2**32
#: Interleaved samples decoded at a time by :func:`load_mono` (1 MiB of float32), whatever the
#: channel count: a block is ``BLOCK_SAMPLES // channels`` frames.
BLOCK_SAMPLES = 2**18


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


def audio_extension(name: str) -> str:
    """The lower-case extension of a file name or URI (``""`` when it has none).

    Raises
    ------
    AudioError
        ``unsupported_format`` when it is not one of :data:`AUDIO_EXTENSIONS`.
    """
    base = name.rstrip("/").rsplit("/", 1)[-1]
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    if ext not in AUDIO_EXTENSIONS:
        raise AudioError("unsupported_format", f"extension {ext!r} is not one of {', '.join(AUDIO_EXTENSIONS)}")
    return ext


def _check_input(data: bytes, name: str) -> str:
    """The extension of ``name`` (``""`` without a name); raise ``unsupported_format`` or ``empty``
    before any decoding."""
    ext = audio_extension(name) if name else ""
    if len(data) == 0:
        raise AudioError("empty", "file has zero bytes")
    return ext


def frames_to_decode(*, frames: int, channels: int, sample_rate: int, max_seconds: float | None) -> int:
    """Check the size a header declares, before decoding; return the frames to decode.

    Parameters
    ----------
    frames : int
        Frames the header (libsndfile's ``SoundFile.frames``) announces.
    channels : int
        Declared channel count.
    sample_rate : int
        Declared native rate in Hz.
    max_seconds : float, optional
        Decode at most this many seconds from the start; ``None``: the whole file.

    Returns
    -------
    int
        ``frames``, or ``int(max_seconds * sample_rate)`` when that is smaller.

    Raises
    ------
    AudioError
        ``too_large`` (stage ``decode``) when the header declares more than :data:`MAX_CHANNELS`
        channels, a rate above :data:`MAX_SAMPLE_RATE`, or more than :data:`MAX_DECODED_SAMPLES`
        samples (frames x channels) to decode; ``decode_error`` for a rate or channel count
        below one.
    """
    if channels < 1 or sample_rate < 1:
        raise AudioError("decode_error", f"header declares {channels} channels at {sample_rate} Hz")
    if channels > MAX_CHANNELS:
        raise AudioError("too_large", f"header declares {channels} channels, more than the limit of {MAX_CHANNELS}")
    if sample_rate > MAX_SAMPLE_RATE:
        raise AudioError("too_large", f"header declares {sample_rate} Hz, above the limit of {MAX_SAMPLE_RATE} Hz")
    n = frames if max_seconds is None else min(frames, int(max_seconds * sample_rate))
    if n * channels > MAX_DECODED_SAMPLES:
        within = "" if max_seconds is None else f" within --max-audio-seconds {max_seconds:g}"
        raise AudioError(
            "too_large",
            f"header declares {n} frames x {channels} channels at {sample_rate} Hz{within} "
            f"({n * channels:.3g} samples), over the decode limit of {MAX_DECODED_SAMPLES:.3g} samples",
        )
    return n


def decode_memory_bound(*, max_seconds: float, target_sr: int) -> int:
    """Upper bound in bytes on the arrays :func:`load_mono` allocates for one file.

    The mono output at ``target_sr`` for ``max_seconds`` plus four blocks of :data:`BLOCK_SAMPLES`
    float32 samples (the decoded block, its mono mix, its resampled chunk and the resampler's
    flush).  The encoded file itself is the caller's and not included.

    Parameters
    ----------
    max_seconds : float
        The ``max_seconds`` given to :func:`load_mono` (or the file's length when smaller).
    target_sr : int
        Output rate in Hz.

    Returns
    -------
    int
        Bytes: ``4 * (ceil(max_seconds * target_sr) + 1 + 4 * BLOCK_SAMPLES)``.
    """
    return 4 * (int(np.ceil(max_seconds * target_sr)) + 1 + 4 * BLOCK_SAMPLES)


def decode_audio(data: bytes, *, name: str = "", max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode an encoded audio file held in memory, keeping every channel at its native rate.

    This holds the whole decoded multichannel file: use :func:`load_mono` (bounded by the mono
    output, see the module docstring) to featurize.  The header is checked with
    :func:`frames_to_decode` first.

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
        :data:`AUDIO_EXTENSIONS`, ``too_large`` for a header over the decode limits,
        ``decode_error`` when neither libsndfile nor the librosa/audioread fallback can read it,
        ``truncated`` when the file ends before the audio its header declares (see
        :func:`_truncation`), ``no_samples`` for a valid header without audio.
    """
    ext = _check_input(data, name)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sample_rate = int(f.samplerate)
            frames = frames_to_decode(
                frames=f.frames, channels=f.channels, sample_rate=sample_rate, max_seconds=max_seconds
            )
            samples = f.read(frames=frames, dtype="float32", always_2d=True)
            # A deliberately partial read (max_seconds) says nothing about truncation.
            truncation = _truncation(f, data, n_read=len(samples)) if frames == f.frames else None
    except AudioError:
        raise
    except Exception as sf_error:  # libsndfile raises several types (LibsndfileError, RuntimeError)
        samples, sample_rate = _decode_fallback(data, ext=ext, first_error=sf_error, max_seconds=max_seconds)
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


def _decode_fallback(
    data: bytes, *, ext: str, first_error: Exception, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Try librosa (audioread) on formats libsndfile refused; it needs a real file.

    Returns ``(samples, sample_rate)`` with samples of shape ``(n_samples, n_channels)``, at most
    ``max_seconds`` long (librosa's ``duration``; audioread decodes the whole stretch in memory, so
    this path is bounded by ``max_seconds`` x native rate x channels, not by the block size).
    """
    suffix = "." + (ext if ext and ext not in _RAW_GUESS_EXTENSIONS else "bin")
    try:
        import librosa  # deferred: heavy import, rarely needed

        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp, warnings.catch_warnings():
            # librosa warns "PySoundFile failed" and about audioread's deprecation on every call.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            tmp.write(data)
            tmp.flush()
            y, sr = librosa.load(tmp.name, sr=None, mono=False, dtype=np.float32, duration=max_seconds)
    except Exception as fallback_error:
        detail = str(fallback_error) or "no decoder could read it"
        raise AudioError(
            "decode_error",
            f"libsndfile: {first_error}; fallback: {type(fallback_error).__name__}: {detail}",
        ) from None
    y = np.atleast_2d(y)
    frames_to_decode(frames=y.shape[1], channels=y.shape[0], sample_rate=int(sr), max_seconds=None)
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


class _MonoTrack:
    """A growable float32 buffer for the mono output; sized once from the header in the normal case."""

    def __init__(self, capacity: int) -> None:
        self._buf = np.empty(max(capacity, 0), np.float32)
        self.size = 0

    def append(self, chunk: np.ndarray) -> None:
        end = self.size + len(chunk)
        if end > len(self._buf):  # the header under-announced its length (mp3 estimates)
            grown = np.empty(max(end, 2 * len(self._buf)), np.float32)
            grown[: self.size] = self._buf[: self.size]
            self._buf = grown
        self._buf[self.size : end] = chunk
        self.size = end

    def result(self, n: int) -> np.ndarray:
        """The first ``n`` samples, zero-padded when fewer were appended."""
        if n > len(self._buf):
            self.append(np.zeros(n - self.size, np.float32))
        elif n > self.size:
            self._buf[self.size : n] = 0.0
        # A header that announced far more than decoded: do not keep its (untouched) capacity alive.
        return self._buf[:n].copy() if len(self._buf) > 2 * n + 1 else self._buf[:n]


def _mix_block(block: np.ndarray) -> np.ndarray:
    """``(n_frames, n_channels)`` -> ``(n_frames,)``, the same float32 arithmetic as :func:`to_mono`
    (channels added in order, then divided by their count)."""
    n_channels = block.shape[1]
    if n_channels == 1:
        return block[:, 0].copy()
    if n_channels == 2:
        return (block[:, 0] + block[:, 1]) * np.float32(0.5)
    acc = block[:, 0].copy()
    for c in range(1, n_channels):
        acc += block[:, c]
    acc /= np.float32(n_channels)
    return acc


#: Initial output capacity (samples) when no ``max_seconds`` bounds what a header may announce.
_UNBOUNDED_START_CAPACITY = 2**22


def _stream_mono(
    f: sf.SoundFile, *, frames: int, target_sr: int, bounded: bool = True
) -> tuple[np.ndarray, int]:
    """Decode ``frames`` frames of an open file block by block into mono audio at ``target_sr``.

    Returns the mono track and the number of native frames decoded.  Raises ``non_finite`` at the
    first block holding a NaN or infinite sample.  The output is allocated once from ``frames``
    when ``bounded`` (``frames`` is capped by ``max_seconds``); otherwise it starts small and grows
    with what really decodes, so a header that lies about its length allocates nothing for it.
    """
    channels, rate = f.channels, int(f.samplerate)
    block_frames = max(1, BLOCK_SAMPLES // channels)
    buf = np.empty((min(block_frames, max(frames, 1)), channels), np.float32)
    stream = None if rate == target_sr else soxr.ResampleStream(rate, target_sr, 1, dtype="float32", quality="HQ")
    expected = int(np.ceil(frames * float(target_sr) / rate)) + 1
    out = _MonoTrack(expected if bounded else min(expected, _UNBOUNDED_START_CAPACITY))
    n_in = 0
    while n_in < frames:
        want = min(len(buf), frames - n_in)
        block = f.read(frames=want, dtype="float32", always_2d=True, out=buf[:want])
        if len(block) == 0:
            break
        finite = np.isfinite(block)
        if not finite.all():
            bad = int(block.size - np.count_nonzero(finite))
            raise AudioError(
                "non_finite", f"{bad} of {block.size} samples in the block at frame {n_in} are NaN or infinite"
            )
        mono = _mix_block(block)
        out.append(mono if stream is None else stream.resample_chunk(mono))
        n_in += len(block)
        if len(block) < want:
            break
    if stream is not None:
        out.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    # The length librosa.resample gives (see :func:`resample`): trim or zero-pad soxr's output.
    n_out = n_in if stream is None else int(np.ceil(n_in * float(target_sr) / rate))
    return out.result(n_out), n_in


def load_mono(
    data: bytes, *, params: SpectrogramParams, name: str = "", max_seconds: float | None = None
) -> np.ndarray:
    """Decode, check, mix to mono and resample, block by block: file bytes to samples.

    The result equals ``resample(to_mono(decode_audio(data)), ...)`` sample for sample (the
    streaming soxr resampler gives the one-shot one's output), but the decoded multichannel audio
    is never held: peak memory is bounded by :func:`decode_memory_bound` (the mono output at
    ``params.sample_rate`` plus a few blocks of :data:`BLOCK_SAMPLES`), whatever the header's
    channel count and rate.  Files libsndfile cannot open go through the librosa fallback, which
    holds ``max_seconds`` of native audio.

    Parameters
    ----------
    data : bytes
        Encoded audio file.
    params : SpectrogramParams
        Supplies the target ``sample_rate``.
    name : str
        File name or URI for the extension and messages.
    max_seconds : float, optional
        Keep at most this many seconds from the start; ``None`` (no bound on the output) decodes
        the whole file.

    Returns
    -------
    np.ndarray, float32, shape (n_samples,)
        Mono audio at ``params.sample_rate``.

    Raises
    ------
    AudioError
        As :func:`decode_audio` (``too_large`` from :func:`frames_to_decode` before anything is
        decoded), plus ``non_finite`` when any sample is NaN or infinite.
    """
    ext = _check_input(data, name)
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception as sf_error:  # libsndfile raises several types (LibsndfileError, RuntimeError)
        return _mono_from_fallback(data, ext=ext, first_error=sf_error, params=params, max_seconds=max_seconds)
    with f:
        frames = frames_to_decode(
            frames=f.frames, channels=f.channels, sample_rate=int(f.samplerate), max_seconds=max_seconds
        )
        try:
            y, n_read = _stream_mono(
                f, frames=frames, target_sr=params.sample_rate, bounded=max_seconds is not None
            )
        except AudioError:
            raise
        except Exception as sf_error:  # a read error mid-file: let the fallback try
            return _mono_from_fallback(data, ext=ext, first_error=sf_error, params=params, max_seconds=max_seconds)
        # A deliberately partial read (max_seconds) says nothing about truncation.
        truncation = _truncation(f, data, n_read=n_read) if frames == f.frames else None
    if truncation:
        raise AudioError("truncated", truncation)
    if n_read == 0:
        raise AudioError("no_samples", "file decodes to zero samples")
    return y


def _mono_from_fallback(
    data: bytes, *, ext: str, first_error: Exception, params: SpectrogramParams, max_seconds: float | None
) -> np.ndarray:
    samples, sr = _decode_fallback(data, ext=ext, first_error=first_error, max_seconds=max_seconds)
    if samples.size == 0:
        raise AudioError("no_samples", "file decodes to zero samples")
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError("non_finite", f"{bad} of {samples.size} samples are NaN or infinite")
    return resample(to_mono(samples.T), orig_sr=sr, target_sr=params.sample_rate)


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


def _too_short(n_samples: int, params: SpectrogramParams) -> AudioError:
    return AudioError(
        "too_short",
        f"{n_samples / params.sample_rate:.3f} s of audio is shorter than the minimum "
        f"{params.min_tail_samples / params.sample_rate:.3f} s for one segment",
        stage="segment",
    )


def _cut(y: np.ndarray, starts: list[int], seg: int) -> np.ndarray:
    out = np.zeros((len(starts), seg), dtype=np.float32)
    for i, start in enumerate(starts):
        piece = y[start : start + seg]
        out[i, : len(piece)] = piece
    return out


def segment_batches(y: np.ndarray, *, params: SpectrogramParams, batch_size: int):
    """Cut mono audio into segments, ``batch_size`` at a time (what :func:`segment_audio` gives, in
    pieces, so a long track never needs all its segments and their spectra at once).

    Yields
    ------
    np.ndarray, float32, shape (n <= batch_size, params.segment_samples)

    Raises
    ------
    AudioError
        ``too_short``, on the first ``next``, when the clip yields no segment.
    """
    y = np.asarray(y, dtype=np.float32)
    starts = segment_starts(len(y), params=params)
    if not starts:
        raise _too_short(len(y), params)
    for i in range(0, len(starts), batch_size):
        yield _cut(y, starts[i : i + batch_size], params.segment_samples)


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
        raise _too_short(len(y), params)
    return _cut(y, starts, params.segment_samples)
