"""The log-mel spectrogram: the one function that turns segments into model input.

:func:`log_mel` equals ``librosa.power_to_db(librosa.feature.melspectrogram(y=..., sr=..., n_fft=...,
hop_length=..., n_mels=..., fmin=..., fmax=...), ref=1.0, amin=..., top_db=...)`` within float32
tolerance (tested), but frames a whole batch of segments at once and runs one real FFT over all of
them, which is several times faster than calling librosa per segment.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.fft
import scipy.sparse

from transforms.spec import LOGC_GAIN, SpectrogramParams

__all__ = ["MelFilter", "mel_filter", "mel_band_centres", "log_mel", "power_to_log"]


@dataclasses.dataclass(frozen=True)
class MelFilter:
    """Precomputed pieces of the STFT + mel projection for one set of parameters.

    Attributes
    ----------
    window : np.ndarray, float32, shape (n_fft,)
        Periodic Hann window (``scipy.signal.get_window("hann", n_fft, fftbins=True)``).
    basis : np.ndarray, float32, shape (n_mels, n_fft // 2 + 1)
        Slaney mel filterbank, as ``librosa.filters.mel``.
    sparse_basis : scipy.sparse.csr_array or None
        ``basis`` in CSR form (about 99% of it is zeros); :func:`log_mel` projects with it when
        present, the dense ``basis`` otherwise.
    """

    params: SpectrogramParams
    window: np.ndarray
    basis: np.ndarray
    sparse_basis: Any = None


def mel_filter(params: SpectrogramParams) -> MelFilter:
    """Build the window and mel filterbank for ``params`` (a few ms; reuse it across segments)."""
    import librosa  # deferred: librosa's import is slow and only the filterbank is needed

    n = np.arange(params.n_fft, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / params.n_fft)).astype(np.float32)
    basis = librosa.filters.mel(
        sr=params.sample_rate,
        n_fft=params.n_fft,
        n_mels=params.n_mels,
        fmin=params.fmin,
        fmax=params.effective_fmax,
        dtype=np.float32,
    )
    basis = np.ascontiguousarray(basis)
    return MelFilter(
        params=params, window=window, basis=basis, sparse_basis=scipy.sparse.csr_array(basis)
    )


def mel_band_centres(params: SpectrogramParams) -> np.ndarray:
    """Centre (peak) frequency of each band of :func:`mel_filter`'s filterbank.

    Returns
    -------
    np.ndarray, float64, shape (n_mels,)
        Hz, increasing: band ``m`` of the filterbank peaks at element ``m``.
    """
    import librosa

    edges = librosa.mel_frequencies(n_mels=params.n_mels + 2, fmin=params.fmin, fmax=params.effective_fmax)
    return edges[1:-1]


def _frames(segments: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """Centre-pad (constant zeros, librosa's default) and frame: ``(n_seg, n_frames, n_fft)``."""
    pad = params.n_fft // 2
    padded = np.pad(segments, ((0, 0), (pad, pad)), mode="constant")
    view = np.lib.stride_tricks.sliding_window_view(padded, params.n_fft, axis=1)
    return view[:, :: params.hop_length][:, : params.n_frames]


def _project(power: np.ndarray, mel: MelFilter) -> np.ndarray:
    """Mel projection of ``(n_seg, n_frames, n_bins)`` power to ``(n_seg, n_mels, n_frames)``.

    The sparse product does ~1% of the dense one's work in one thread; a dense BLAS matmul this
    size is also slow when several worker processes each start BLAS threads on few cores.
    """
    n_seg, n_frames, n_bins = power.shape
    if mel.sparse_basis is None:
        return np.matmul(mel.basis, np.swapaxes(power, 1, 2))
    flat = mel.sparse_basis @ power.reshape(n_seg * n_frames, n_bins).T  # (n_mels, n_seg*n_frames)
    return np.asarray(flat, dtype=np.float32).reshape(-1, n_seg, n_frames).transpose(1, 0, 2)


def power_to_log(power: np.ndarray, *, params: SpectrogramParams) -> np.ndarray:
    """Log compression of a power mel spectrogram, per segment.

    Parameters
    ----------
    power : np.ndarray, shape (n_segments, n_mels, n_frames)
        Power mel spectrogram.
    params : SpectrogramParams
        ``log``, ``amin`` and ``top_db``.

    Returns
    -------
    np.ndarray, float32, same shape
        ``"db"``: ``10 * log10(max(amin, S))`` clipped at each segment's peak minus ``top_db``
        (``librosa.power_to_db`` with ``ref=1.0``); ``"log1p"``: ``log(1 + S)``; ``"logc"``:
        ``log10(1 + 10000 * S)``, in float32 (musicnn casts ``S`` to float16 first, where
        ``10000 * S`` overflows to ``inf`` under NumPy 2's promotion rules).
    """
    if params.log == "log1p":
        return np.log1p(power).astype(np.float32)
    if params.log == "logc":
        scaled = np.asarray(power, np.float32) * np.float32(LOGC_GAIN)
        return (np.log1p(scaled) * np.float32(1.0 / np.log(10.0))).astype(np.float32)
    db = 10.0 * np.log10(np.maximum(np.float32(params.amin), power))
    if params.top_db is not None:
        peak = db.max(axis=(1, 2), keepdims=True)
        db = np.maximum(db, peak - np.float32(params.top_db))
    return db.astype(np.float32)


def log_mel(segments: np.ndarray, *, mel: MelFilter) -> np.ndarray:
    """Log-mel spectrograms of a batch of equal-length segments.

    Parameters
    ----------
    segments : np.ndarray, float32, shape (n_segments, segment_samples)
        Mono audio at ``mel.params.sample_rate`` (one row is also accepted as shape
        ``(segment_samples,)``).
    mel : MelFilter
        From :func:`mel_filter`.

    Returns
    -------
    np.ndarray, float32, shape (n_segments, n_mels, n_frames)
        Or ``(n_mels, n_frames)`` for a single 1-D segment.
    """
    params = mel.params
    segments = np.asarray(segments, dtype=np.float32)
    single = segments.ndim == 1
    if single:
        segments = segments[None, :]
    if segments.shape[1] != params.segment_samples:
        raise ValueError(
            f"segments have {segments.shape[1]} samples, parameters say {params.segment_samples}"
        )
    frames = _frames(segments, params) * mel.window  # (n_seg, n_frames, n_fft)
    spectrum = scipy.fft.rfft(frames, axis=-1, workers=1, overwrite_x=True)  # complex64
    power = np.abs(spectrum)  # (n_seg, n_frames, n_bins), float32
    power *= power
    mel_power = _project(power, mel)  # (n_seg, n_mels, n_frames)
    out = power_to_log(mel_power, params=params)
    return out[0] if single else out
