"""Audio file -> log-mel segments, as a plain function and as a Beam transform.

:func:`featurize_track` is the whole per-track path (read bytes, decode, mono, resample, segment,
log-mel) and is unit-tested without Beam.  :class:`AudioToLogMel` wraps it in a DoFn that never
lets a bad file fail the job: every input becomes either a :class:`TrackFeatures` on the
``features`` output or a :class:`~transforms.deadletters.DeadLetter` on ``dead_letters``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Iterator

import apache_beam as beam
import fsspec
import numpy as np
from apache_beam.metrics import Metrics

from transforms.audio import AudioError, audio_extension, load_mono, segment_batches, segment_starts
from transforms.deadletters import DEAD_LETTERS, DeadLetter, dead_letter_from_error
from transforms.sources import TrackRef
from transforms.spec import SpectrogramParams
from transforms.spectrogram import MelFilter, log_mel, mel_filter

__all__ = [
    "ReadLimits",
    "TrackFeatures",
    "content_hash",
    "read_bytes",
    "featurize_track",
    "featurize_or_dead_letter",
    "SPECTROGRAM_BATCH",
    "AudioToLogMel",
    "FEATURES",
    "DEAD_LETTERS",
    "METRICS_NAMESPACE",
]

logger = logging.getLogger(__name__)

#: Output tags of :class:`AudioToLogMel`.
FEATURES = "features"
#: Namespace of every Beam metric genreflow reports.
METRICS_NAMESPACE = "genreflow"
#: Segments whose spectra are computed at once (bounds the STFT intermediates of a long track).
SPECTROGRAM_BATCH = 16


@dataclasses.dataclass(frozen=True)
class ReadLimits:
    """Bounds on what one input may cost a worker, so one huge file cannot exhaust its memory.

    Attributes
    ----------
    max_bytes : int or None
        Larger files are not read: dead letter ``too_large`` (checked with the filesystem's size
        before reading).  ``None``: no limit.
    max_seconds : float or None
        Only the first ``max_seconds`` of longer tracks are decoded and segmented (a genre is
        decided well within that); ``None`` decodes whole tracks.

    Notes
    -----
    Peak memory per worker thread for one track (:func:`featurize_track`), whatever the file's
    header says about channels and native rate:

    * the encoded file, at most ``max_bytes``;
    * its mono audio at the target rate, ``4 * max_seconds * sample_rate`` bytes (159 MB for
      30 minutes at 22,050 Hz), plus a few decode blocks of 1 MiB
      (:func:`transforms.audio.decode_memory_bound`);
    * the log-mel segments, ``4 * n_mels * n_frames`` bytes per segment (0.66 MB per 30 s at the
      defaults, 40 MB for 30 minutes), plus the spectra of :data:`SPECTROGRAM_BATCH` segments at a
      time (about 35 MB at the defaults).

    A header declaring more than :data:`transforms.audio.MAX_CHANNELS` channels, a rate above
    :data:`transforms.audio.MAX_SAMPLE_RATE` or more than
    :data:`transforms.audio.MAX_DECODED_SAMPLES` samples to decode is a ``too_large`` dead letter
    before decoding.  ``max_seconds=None`` removes the bound on the mono audio (it then grows with
    the decoded length of the file).
    """

    max_bytes: int | None = 2 * 1024**3
    max_seconds: float | None = 1800.0


@dataclasses.dataclass
class TrackFeatures:
    """The log-mel segments of one track.

    Attributes
    ----------
    ref : TrackRef
        The track.
    mels : np.ndarray, float32, shape (n_segments, n_mels, n_frames)
        Log-mel segments in time order.
    starts : list of int
        Start sample of each segment at ``params.sample_rate``.
    duration_seconds : float
        Length of the decoded audio in seconds (before padding or dropping a tail).
    content_hash : str
        :func:`content_hash` of the encoded file (or, for tracks read back from featurize shards,
        of their log-mel segments).
    """

    ref: TrackRef
    mels: np.ndarray
    starts: list[int]
    duration_seconds: float
    content_hash: str


def content_hash(data: bytes) -> str:
    """16 hex digits of the BLAKE2b of ``data``: identifies content, whatever its name or listing."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def read_bytes(uri: str, *, max_bytes: int | None = None) -> bytes:
    """Read a whole file through fsspec.

    Parameters
    ----------
    uri : str
        Any fsspec URI.
    max_bytes : int, optional
        Refuse files larger than this, before reading them.

    Raises
    ------
    AudioError
        ``read_error`` (stage ``read``) for a missing, unreadable or not-a-file path;
        ``too_large`` (stage ``read``) for a file over ``max_bytes``.
    """
    try:
        with fsspec.open(uri, "rb") as f:
            if max_bytes is not None:
                size = f.size if getattr(f, "size", None) is not None else f.seek(0, 2)
                f.seek(0)
                if size is not None and size > max_bytes:
                    raise AudioError(
                        "too_large", f"{size} bytes is over the limit of {max_bytes} (--max-file-mb)", stage="read"
                    )
            return f.read()
    except AudioError:
        raise
    except Exception as e:  # FileNotFoundError, PermissionError, IsADirectoryError, network errors
        raise AudioError("read_error", f"{type(e).__name__}: {e}", stage="read") from None


def featurize_track(
    ref: TrackRef,
    *,
    params: SpectrogramParams,
    mel: MelFilter | None = None,
    limits: ReadLimits = ReadLimits(),
) -> TrackFeatures:
    """Read, decode, mix to mono, resample, segment and log-mel one track.

    Parameters
    ----------
    ref : TrackRef
        The track to read.
    params : SpectrogramParams
        Sample rate, segment policy and spectrogram parameters.
    mel : MelFilter, optional
        Precomputed filter for ``params`` (build it once per worker with
        :func:`transforms.spectrogram.mel_filter`); built here when omitted.
    limits : ReadLimits
        Largest file read and longest audio decoded.

    Returns
    -------
    TrackFeatures
        ``mels`` of shape ``(n_segments, params.n_mels, params.n_frames)``.

    Raises
    ------
    AudioError
        ``unsupported_format`` (checked before reading), ``read_error`` (stage ``read``), the decode
        reasons of :func:`transforms.audio.load_mono` (stage ``decode``) and ``too_short`` (stage
        ``segment``).
    """
    audio_extension(ref.uri)  # unsupported_format before anything is read
    data = read_bytes(ref.uri, max_bytes=limits.max_bytes)
    digest = content_hash(data)
    y = load_mono(data, params=params, name=ref.uri, max_seconds=limits.max_seconds)
    del data
    mel = mel if mel is not None else mel_filter(params)
    starts = segment_starts(len(y), params=params)
    mels = np.empty((len(starts), *params.mel_shape), np.float32)
    done = 0
    for segments in segment_batches(y, params=params, batch_size=SPECTROGRAM_BATCH):
        mels[done : done + len(segments)] = log_mel(segments, mel=mel)
        done += len(segments)
    if not np.isfinite(mels).all():  # cannot happen for finite input; guard what we store
        raise AudioError("non_finite", "log-mel has NaN or infinite values", stage="spectrogram")
    return TrackFeatures(
        ref=ref,
        mels=mels,
        starts=starts,
        duration_seconds=len(y) / params.sample_rate,
        content_hash=digest,
    )


def featurize_or_dead_letter(
    ref: TrackRef,
    *,
    params: SpectrogramParams,
    mel: MelFilter | None = None,
    limits: ReadLimits = ReadLimits(),
) -> TrackFeatures | DeadLetter:
    """:func:`featurize_track`, with any failure turned into a dead letter instead of raised."""
    try:
        return featurize_track(ref, params=params, mel=mel, limits=limits)
    except Exception as e:  # never fail a job over one input; unexpected errors are logged
        if not isinstance(e, AudioError):
            logger.exception("unexpected error featurizing %s", ref.uri)
        return dead_letter_from_error(ref, e)


class _FeaturizeDoFn(beam.DoFn):
    """TrackRef -> TrackFeatures (main) or DeadLetter (``dead_letters``), with metrics."""

    def __init__(self, params: SpectrogramParams, limits: ReadLimits) -> None:
        self._params = params
        self._limits = limits
        self._mel: MelFilter | None = None
        self._decoded = Metrics.counter(METRICS_NAMESPACE, "decoded")
        self._segments = Metrics.counter(METRICS_NAMESPACE, "segments")
        self._audio_ms = Metrics.counter(METRICS_NAMESPACE, "audio_ms")

    def setup(self) -> None:
        self._mel = mel_filter(self._params)

    def process(self, ref: TrackRef) -> Iterator:
        result = featurize_or_dead_letter(ref, params=self._params, mel=self._mel, limits=self._limits)
        if isinstance(result, DeadLetter):
            Metrics.counter(METRICS_NAMESPACE, f"failed_{result.reason}").inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, result)
            return
        self._decoded.inc()
        self._segments.inc(len(result.mels))
        self._audio_ms.inc(int(round(result.duration_seconds * 1000)))
        yield result


class AudioToLogMel(beam.PTransform):
    """PCollection of :class:`TrackRef` -> tagged outputs ``features`` and ``dead_letters``.

    Parameters
    ----------
    params : SpectrogramParams
        Spectrogram and segment parameters.
    limits : ReadLimits
        Per-input size and duration bounds (default :class:`ReadLimits`).

    Examples
    --------
    >>> out = refs | AudioToLogMel(params=params)          # doctest: +SKIP
    >>> out.features, out.dead_letters                      # doctest: +SKIP

    Metrics (namespace ``genreflow``): ``decoded``, ``failed_<reason>``, ``segments``,
    ``audio_ms`` (milliseconds of decoded audio; Beam counters are integers).
    """

    def __init__(self, *, params: SpectrogramParams, limits: ReadLimits = ReadLimits()) -> None:
        super().__init__()
        self._params = params
        self._limits = limits

    def expand(self, refs):
        return refs | "Featurize" >> beam.ParDo(_FeaturizeDoFn(self._params, self._limits)).with_outputs(
            DEAD_LETTERS, main=FEATURES
        )
