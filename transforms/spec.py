"""The one definition of the spectrogram parameters and the feature schema.

Everything that computes, stores or consumes a log-mel segment imports this module: the featurize
job writes :class:`SpectrogramParams` into ``metadata.json``, the trainer copies it into
``model.json``, and the label job rebuilds it from there.  Parameters are compared, never re-typed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from typing import Any, Mapping

__all__ = [
    "SpectrogramParams",
    "PRESETS",
    "DEFAULT_HOP_FRACTION",
    "LOGC_GAIN",
    "Feature",
    "ParameterMismatchError",
    "feature_schema",
    "schema_to_json",
    "FEATURE_MEL",
    "FEATURE_MEL_SHAPE",
    "FEATURE_TRACK_ID",
    "FEATURE_SEGMENT_INDEX",
    "FEATURE_START_SECONDS",
    "FEATURE_LABEL",
    "FEATURE_LABEL_INDEX",
    "FEATURE_URI",
    "FEATURE_SPLIT",
    "SPLITS",
    "UNLABELED_INDEX",
]

#: Split names, in the order of ``--split`` fractions.
SPLITS = ("train", "validation", "test")

#: ``label_index`` of a segment whose label is not in the vocabulary (unlabeled catalog audio).
UNLABELED_INDEX = -1

FEATURE_MEL = "mel"
FEATURE_MEL_SHAPE = "mel_shape"
FEATURE_TRACK_ID = "track_id"
FEATURE_SEGMENT_INDEX = "segment_index"
FEATURE_START_SECONDS = "start_seconds"
FEATURE_LABEL = "label"
FEATURE_LABEL_INDEX = "label_index"
FEATURE_URI = "uri"
FEATURE_SPLIT = "split"

_LOG_KINDS = ("db", "log1p", "logc")
#: The constant C of the ``"logc"`` compression ``log10(1 + C * S)`` (musicnn's "logC").
LOGC_GAIN = 10000.0
#: Highest target sample rate in Hz (above any audio format's; the mono track of a worker grows
#: with it, see transforms.audio).
MAX_SAMPLE_RATE = 768_000
_INT_FIELDS = ("sample_rate", "n_fft", "hop_length", "n_mels")
_FLOAT_FIELDS = ("fmin", "segment_seconds", "segment_hop_seconds", "amin", "min_tail_fraction")
_OPTIONAL_FLOAT_FIELDS = ("fmax", "top_db")


class ParameterMismatchError(ValueError):
    """Two sets of spectrogram parameters that must agree do not."""


@dataclasses.dataclass(frozen=True)
class SpectrogramParams:
    """Parameters of the log-mel segments, from decoded audio to the stored array.

    Attributes
    ----------
    sample_rate : int
        Target sampling rate in Hz; audio is mixed to mono and resampled to it.
    n_fft : int
        FFT window length in samples (Hann window).
    hop_length : int
        STFT hop in samples.
    n_mels : int
        Number of mel bands (Slaney mel scale and normalisation, as librosa's default).
    fmin : float
        Lowest mel band edge in Hz.
    fmax : float or None
        Highest mel band edge in Hz; ``None`` means ``sample_rate / 2``.
    segment_seconds : float
        Length of one segment in seconds.
    segment_hop_seconds : float or None
        Distance between segment starts in seconds; ``None`` (the default) means
        ``segment_seconds``: no overlap.  Always a number after construction.
    log : str
        Log compression: ``"db"`` is ``librosa.power_to_db(S, ref=1.0, amin=amin, top_db=top_db)``,
        ``"log1p"`` is ``log(1 + S)``, ``"logc"`` is ``log10(1 + 10000 * S)`` (musicnn's "logC",
        computed in float32).
    amin : float
        Floor of the power spectrogram before the log (``"db"`` only).
    top_db : float or None
        Dynamic range kept below each segment's peak in dB (``"db"`` only); ``None`` keeps all.
    min_tail_fraction : float
        A trailing partial segment at least this fraction of ``segment_seconds`` long is zero-padded
        and kept; a shorter tail is dropped.  A clip shorter than one segment is kept (one padded
        segment) when it is at least this fraction long, and rejected as ``too_short`` otherwise.
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    segment_seconds: float = 3.0
    segment_hop_seconds: float | None = None
    log: str = "db"
    amin: float = 1e-10
    top_db: float | None = 80.0
    min_tail_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.segment_hop_seconds is None:
            object.__setattr__(self, "segment_hop_seconds", self.segment_seconds)
        problems = self._normalise_types()
        if problems:
            raise ValueError("invalid spectrogram parameters: " + "; ".join(problems))
        if not 0 < self.sample_rate <= MAX_SAMPLE_RATE:
            problems.append(f"sample_rate must be in (0, {MAX_SAMPLE_RATE}] Hz, got {self.sample_rate}")
        if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            problems.append("n_fft, hop_length and n_mels must be positive")
        elif self.n_mels > self.n_fft // 2 + 1:
            problems.append(
                f"n_mels {self.n_mels} is more mel bands than the {self.n_fft // 2 + 1} FFT bins of "
                f"n_fft {self.n_fft} (most bands would be empty)"
            )
        if self.segment_seconds <= 0:
            problems.append(f"segment_seconds must be positive, got {self.segment_seconds}")
        if self.segment_hop_seconds <= 0:
            problems.append(
                f"segment_hop_seconds must be positive, got {self.segment_hop_seconds}"
            )
        nyquist = self.sample_rate / 2
        if self.fmin < 0 or not self.fmin < self.effective_fmax <= nyquist:
            problems.append(
                f"need 0 <= fmin < fmax <= sample_rate/2 = {nyquist:g} Hz, got fmin={self.fmin} "
                f"fmax={self.fmax if self.fmax is not None else f'{nyquist:g} (sample_rate/2)'}"
            )
        if self.log not in _LOG_KINDS:
            problems.append(f"log must be one of {_LOG_KINDS}, got {self.log!r}")
        if not 0.0 < self.min_tail_fraction <= 1.0:
            problems.append(f"min_tail_fraction must be in (0, 1], got {self.min_tail_fraction}")
        if self.segment_samples < self.n_fft // 2 + 1:
            problems.append("segment_seconds is shorter than half an FFT window")
        if problems:
            raise ValueError("invalid spectrogram parameters: " + "; ".join(problems))

    def _normalise_types(self) -> list[str]:
        """Store integers as ``int`` and reals as ``float`` (so ``fmin=0`` and ``fmin=0.0`` give
        the same dict and digest); return a problem per value of the wrong type."""
        problems = []

        def _set(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        def _real(value: Any) -> bool:
            return isinstance(value, numbers.Real) and not isinstance(value, bool)

        for name in _INT_FIELDS:
            value = getattr(self, name)
            if _real(value) and float(value).is_integer():
                _set(name, int(value))
            else:
                problems.append(f"{name} must be an integer, got {value!r}")
        for name in _FLOAT_FIELDS + _OPTIONAL_FLOAT_FIELDS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_FLOAT_FIELDS:
                continue
            if _real(value) and math.isfinite(value):
                _set(name, float(value))
            else:
                problems.append(f"{name} must be a finite number, got {value!r}")
        return problems

    # Derived sizes -------------------------------------------------------------------------------
    @property
    def segment_samples(self) -> int:
        """Samples in one segment at ``sample_rate``."""
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def segment_hop_samples(self) -> int:
        """Samples between the starts of consecutive segments."""
        return int(round(self.segment_hop_seconds * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """STFT frames per segment (centred frames, as librosa's default ``center=True``)."""
        return 1 + self.segment_samples // self.hop_length

    @property
    def mel_shape(self) -> tuple[int, int]:
        """Shape of one stored log-mel segment: ``(n_mels, n_frames)``."""
        return (self.n_mels, self.n_frames)

    @property
    def effective_fmax(self) -> float:
        """``fmax`` with ``None`` resolved to the Nyquist frequency."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    @property
    def min_tail_samples(self) -> int:
        """Shortest tail (or clip) in samples that still makes a zero-padded segment."""
        return int(math.ceil(self.min_tail_fraction * self.segment_samples))

    # Serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, as stored in ``metadata.json`` and ``model.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SpectrogramParams":
        """Inverse of :meth:`to_dict`; unknown keys are an error (they mean a newer writer)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown spectrogram parameters: {sorted(unknown)}")
        return cls(**dict(data))

    def digest(self) -> str:
        """16 hex digits of the SHA-256 of :meth:`to_dict` as sorted JSON: equal parameters, equal
        digest, in every process and version."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def check_compatible(self, other: "SpectrogramParams", *, what: str = "data") -> None:
        """Raise :class:`ParameterMismatchError` naming every field where ``other`` differs.

        Parameters
        ----------
        other : SpectrogramParams
            The parameters the caller is about to mix with these ones.
        what : str
            Names ``other`` in the error message (``"data"``, ``"model"``).
        """
        diffs = [
            f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
        if diffs:
            raise ParameterMismatchError(
                f"spectrogram parameters of the {what} do not match: " + ", ".join(diffs)
            )


#: Named parameter sets, selected with ``genreflow featurize --preset NAME``.
#:
#: ``musicnn``: the front end of musicnn (Pons & Serra 2019; ``musicnn==0.1.0``, ``configuration.py``
#: and ``extractor.batch_data``): 16 kHz, ``n_fft`` 512 (Hann), hop 256, 96 Slaney mel bands from 0
#: Hz to 8 kHz (``librosa.feature.melspectrogram`` defaults of 2019: power 2, ``htk=False``,
#: ``norm="slaney"``, the same filterbank as today's defaults), ``log10(1 + 10000 * S)``, and
#: 187-frame patches: ``librosa.time_to_frames(3 s) + 1``, i.e. 186 hops = 47,616 samples = 2.976 s
#: with centred frames.  Difference from musicnn: it frames the whole track and cuts patches from
#: that spectrogram, we frame each segment with zero centre padding, so the first and last one or
#: two frames of a patch see zeros instead of the neighbouring audio.
#: featurize's segment hop when neither ``--segment-hop-seconds`` nor a preset sets one, as a fraction
#: of the segment: segments overlap by half (3 s every 1.5 s), so training sees twice the segments
#: and each track is labeled from twice the views.  On GTZAN-dev (5-fold CV by clip, two seeds,
#: through the CLI) it scored 0.79 against 0.76 without overlap; see benchmarks/gtzan_results.md.
DEFAULT_HOP_FRACTION = 0.5

PRESETS: dict[str, SpectrogramParams] = {
    "musicnn": SpectrogramParams(
        sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, fmin=0.0, fmax=None,
        segment_seconds=2.976, log="logc", top_db=None,
    ),
}


@dataclasses.dataclass(frozen=True)
class Feature:
    """One stored feature: its name, element dtype and per-example shape (``()`` for scalars)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    description: str


def feature_schema(params: SpectrogramParams) -> tuple[Feature, ...]:
    """The features of one stored segment, for both TFRecord and Parquet shards.

    Parameters
    ----------
    params : SpectrogramParams
        Fixes the shape of the mel array.

    Returns
    -------
    tuple of Feature
        In storage order.  ``mel`` is float32 of shape ``(n_mels, n_frames)`` (row-major, mel band
        first), stored flat together with ``mel_shape``.
    """
    return (
        Feature(FEATURE_MEL, "float32", params.mel_shape, "log-mel segment, mel band x frame"),
        Feature(FEATURE_MEL_SHAPE, "int64", (2,), "shape of mel: (n_mels, n_frames)"),
        Feature(FEATURE_TRACK_ID, "string", (), "track identifier"),
        Feature(FEATURE_URI, "string", (), "URI of the source audio"),
        Feature(FEATURE_SEGMENT_INDEX, "int64", (), "0-based index of the segment in its track"),
        Feature(FEATURE_START_SECONDS, "float32", (), "segment start in the track, seconds"),
        Feature(FEATURE_LABEL, "string", (), "genre label ('' when unlabeled)"),
        Feature(FEATURE_LABEL_INDEX, "int64", (), "index into the label vocabulary, -1 unlabeled"),
        Feature(FEATURE_SPLIT, "string", (), "train, validation or test"),
    )


def schema_to_json(params: SpectrogramParams) -> list[dict[str, Any]]:
    """The feature schema as JSON-ready dicts (stored in ``metadata.json``)."""
    return [
        {"name": f.name, "dtype": f.dtype, "shape": list(f.shape), "description": f.description}
        for f in feature_schema(params)
    ]
