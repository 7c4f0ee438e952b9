"""log_mel parity with librosa.feature.melspectrogram + power_to_db / log1p.

Tolerance.  Both sides compute a float32 STFT, so they differ by FFT rounding: an amplitude error
of roughly 1e-7 of the segment's peak amplitude.  In dB that error grows as a bin lies further
below the peak (it is relative to the bin's own amplitude), so the allowed difference is

    |ours - librosa| <= 1e-4 dB + 2e-6 dB * 10 ** (depth / 20),   depth = peak dB - librosa dB

i.e. 1e-4 dB near the peak, 2e-3 dB at 60 dB down and 0.02 dB at the 80 dB ``top_db`` floor.  The
measured worst case over these signals is about 7% of that bound.  ``log1p`` values are compared
with ``rtol=1e-5, atol=1e-6``; ``logc`` (musicnn's ``log10(1 + 10000 S)``) with ``rtol=1e-5, atol=2e-5``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transforms.audio import load_mono, segment_audio
from transforms.spec import PRESETS, SpectrogramParams
from transforms.spectrogram import log_mel, mel_filter, power_to_log

LIBROSA_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "audio" / "librosa-data"

PARAMS = {
    "default": SpectrogramParams(),
    "small-fft": SpectrogramParams(n_fft=1024, hop_length=256, n_mels=64),
    "band": SpectrogramParams(n_fft=1024, hop_length=256, n_mels=64, fmin=50.0, fmax=8000.0),
    "no-top-db": SpectrogramParams(top_db=None, fmin=20.0),
    "log1p": SpectrogramParams(log="log1p", n_mels=96),
    "16k": SpectrogramParams(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40,
                             segment_seconds=1.0, segment_hop_seconds=1.0),
    "musicnn": PRESETS["musicnn"],
}


def librosa_log_mel(y: np.ndarray, p: SpectrogramParams) -> np.ndarray:
    """The independent reference: librosa with the same parameters, one segment at a time."""
    import librosa

    S = librosa.feature.melspectrogram(
        y=y, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_length, n_mels=p.n_mels,
        fmin=p.fmin, fmax=p.fmax,
    )
    if p.log == "log1p":
        return np.log1p(S)
    if p.log == "logc":  # musicnn's extractor.batch_data, in float32
        return np.log10(10000 * S.astype(np.float32) + 1)
    return librosa.power_to_db(S, ref=1.0, amin=p.amin, top_db=p.top_db)


def assert_parity(ours: np.ndarray, ref: np.ndarray, p: SpectrogramParams) -> None:
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == p.mel_shape
    if p.log == "log1p":
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
        return
    if p.log == "logc":  # FFT rounding (~1e-7 of the peak power) is amplified 1e4x in quiet bins
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=2e-5)
        return
    depth = ref.max() - ref
    tolerance = 1e-4 + 2e-6 * 10 ** (depth / 20)
    excess = np.abs(ours.astype(np.float64) - ref) - tolerance
    assert excess.max() <= 0, f"max dB error {np.abs(ours - ref).max():.3g} beyond tolerance"


def synthetic(p: SpectrogramParams) -> dict[str, np.ndarray]:
    n = p.segment_samples
    t = np.arange(n) / p.sample_rate
    rng = np.random.default_rng(0)
    click = np.zeros(n, np.float32)
    click[n // 3] = 1.0
    chirp_hz = 100 + (p.sample_rate / 2 - 200) * t / t[-1]
    return {
        "noise": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "sines": (0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)),
        "chirp": 0.3 * np.sin(2 * np.pi * np.cumsum(chirp_hz) / p.sample_rate),
        "loud": np.clip(3 * rng.standard_normal(n), -1, 1),
        "silence": np.zeros(n, np.float32),
        "click": click,
    }


@pytest.mark.parametrize("name", list(PARAMS))
def test_parity_on_synthetic_audio(name):
    p = PARAMS[name]
    signals = {k: np.asarray(v, np.float32) for k, v in synthetic(p).items()}
    batch = log_mel(np.stack(list(signals.values())), mel=mel_filter(p))
    assert batch.shape == (len(signals),) + p.mel_shape
    for i, y in enumerate(signals.values()):
        assert_parity(batch[i], librosa_log_mel(y, p), p)


def test_silence_is_the_floor():
    # float32 log10 differs by an ulp or two between CPUs and numpy's SIMD paths (-100.0000076 on
    # one machine, -100.0 on another): compare within a few float32 ulps, never exactly.
    p = SpectrogramParams()
    out = log_mel(np.zeros(p.segment_samples, np.float32), mel=mel_filter(p))
    assert out.shape == p.mel_shape
    np.testing.assert_allclose(out, 10 * np.log10(p.amin), rtol=4 * np.finfo(np.float32).eps, atol=0)


def test_single_segment_equals_its_row_in_a_batch():
    p = SpectrogramParams()
    mel = mel_filter(p)
    segs = np.stack([v for v in synthetic(p).values()]).astype(np.float32)
    batch = log_mel(segs, mel=mel)
    one = log_mel(segs[2], mel=mel)
    assert one.shape == p.mel_shape
    # pocketfft may take a SIMD path for a batch and a scalar one for a single row: equal to
    # float32 rounding, not bit for bit on every CPU.
    np.testing.assert_allclose(one, batch[2], rtol=0, atol=1e-4)


def test_top_db_is_per_segment():
    # A quiet segment next to a loud one keeps its own 80 dB range (librosa computes each alone).
    p = SpectrogramParams()
    t = np.arange(p.segment_samples) / p.sample_rate
    sig = 0.5 * np.sin(2 * np.pi * 200 * t)  # over 80 dB between its band and the top bands
    segs = np.stack([sig, 1e-2 * sig]).astype(np.float32)
    out = log_mel(segs, mel=mel_filter(p))
    for i in range(2):
        assert out[i].max() - out[i].min() == pytest.approx(80.0, abs=1e-3)
        assert out[i].min() > 10 * np.log10(p.amin)  # the clip, not the amin floor, bounds it
    assert out[0].max() - out[1].max() == pytest.approx(40.0, abs=1e-3)


def test_sparse_and_dense_projection_agree():
    import dataclasses

    p = PARAMS["band"]
    mel = mel_filter(p)
    assert mel.sparse_basis is not None
    np.testing.assert_array_equal(mel.sparse_basis.toarray(), mel.basis)
    dense = dataclasses.replace(mel, sparse_basis=None)
    segs = np.stack([np.asarray(v, np.float32) for v in synthetic(p).values()])
    a, b = log_mel(segs, mel=mel), log_mel(segs, mel=dense)
    for i in range(len(segs)):
        assert_parity(a[i], b[i].astype(np.float64), p)


def test_wrong_segment_length_rejected():
    p = SpectrogramParams()
    with pytest.raises(ValueError, match="samples"):
        log_mel(np.zeros((2, p.segment_samples - 1), np.float32), mel=mel_filter(p))


def test_mel_filter_matches_librosa_filters():
    import librosa

    p = PARAMS["band"]
    mel = mel_filter(p)
    ref = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin,
                              fmax=p.fmax)
    assert mel.basis.shape == (p.n_mels, p.n_fft // 2 + 1)
    np.testing.assert_allclose(mel.basis, ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(mel.window, librosa.filters.get_window("hann", p.n_fft), atol=1e-7)


def test_power_to_log_matches_librosa_power_to_db():
    import librosa

    p = SpectrogramParams(top_db=50.0, amin=1e-6)
    power = np.random.default_rng(3).exponential(1.0, size=(3,) + p.mel_shape).astype(np.float32)
    power[1] *= 1e-9  # partly below amin
    out = power_to_log(power, params=p)
    for i in range(3):
        ref = librosa.power_to_db(power[i], ref=1.0, amin=p.amin, top_db=p.top_db)
        np.testing.assert_allclose(out[i], ref, atol=1e-4)


@pytest.mark.skipif(not LIBROSA_DATA.is_dir(), reason="../shared/audio/librosa-data absent")
@pytest.mark.parametrize("name", ["default", "band", "log1p", "musicnn"])
def test_parity_on_real_recordings(name):
    """A few segments of each real recording, decoded by our path, against librosa on the same."""
    p = PARAMS[name]
    mel = mel_filter(p)
    paths = sorted(LIBROSA_DATA.glob("*.ogg"))
    assert paths
    for path in paths[::3]:  # every third recording keeps this fast
        y = load_mono(path.read_bytes(), params=p, name=path.name)
        segs = segment_audio(y, params=p)[:3]
        out = log_mel(segs, mel=mel)
        for seg, ours in zip(segs, out):
            assert_parity(ours, librosa_log_mel(seg, p), p)
