"""Decoding from bytes, mixing, resampling and segmenting (transforms.audio), against librosa."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from transforms.audio import (
    AudioError,
    decode_audio,
    load_mono,
    resample,
    segment_audio,
    segment_starts,
    to_mono,
)
from transforms.spec import SpectrogramParams

SHARED_AUDIO = Path(__file__).resolve().parents[1] / ".." / "shared" / "audio"
LIBROSA_DATA = SHARED_AUDIO / "librosa-data"

SR = 44100
LEFT_HZ, RIGHT_HZ = 440.0, 1250.0


def encode(y: np.ndarray, sr: int, *, fmt: str, subtype: str) -> bytes:
    """Encode ``y`` (n_samples,) or (n_samples, n_channels) with libsndfile into bytes."""
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def stereo_tones(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    """(n_samples, 2) float32: a 440 Hz tone left, a 1250 Hz tone right, amplitude 0.5."""
    t = np.arange(int(seconds * sr)) / sr
    return np.stack(
        [0.5 * np.sin(2 * np.pi * LEFT_HZ * t), 0.5 * np.sin(2 * np.pi * RIGHT_HZ * t)], axis=1
    ).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the largest magnitude in the Hann-windowed spectrum of ``x``."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 2500) -> float:
    """Largest normalised correlation of ``a`` and ``b`` over lags in [-max_lag, max_lag]."""
    n = min(len(a), len(b)) - max_lag
    ref = a[max_lag:n]
    best = 0.0
    for lag in range(-max_lag, max_lag + 1):
        seg = b[max_lag + lag : n + lag]
        c = float(np.dot(ref, seg) / (np.linalg.norm(ref) * np.linalg.norm(seg) + 1e-12))
        best = max(best, c)
    return best


# (extension, libsndfile format, subtype, absolute tolerance or None for lossy)
FORMATS = [
    ("wav", "WAV", "PCM_16", 1.0 / 32768),
    ("wav", "WAV", "FLOAT", 0.0),
    ("flac", "FLAC", "PCM_16", 1.0 / 32768),
    ("ogg", "OGG", "VORBIS", None),
    ("mp3", "MP3", "MPEG_LAYER_III", None),
    ("au", "AU", "PCM_16", 1.0 / 32768),
    ("aiff", "AIFF", "PCM_16", 1.0 / 32768),
]


@pytest.mark.parametrize(
    "ext, fmt, subtype, atol", FORMATS, ids=[f"{f[0]}-{f[2]}" for f in FORMATS]
)
def test_decode_every_format_from_bytes(ext, fmt, subtype, atol):
    y = stereo_tones()
    samples, sr = decode_audio(encode(y, SR, fmt=fmt, subtype=subtype), name=f"dir/clip.{ext}")
    assert sr == SR
    assert samples.dtype == np.float32
    assert samples.shape[0] == 2
    if atol is not None:
        assert samples.shape == (2, len(y))
        np.testing.assert_allclose(samples, y.T, rtol=0, atol=atol)
    else:
        # Lossy codecs: length within one codec frame, each channel keeps its tone and its shape.
        assert abs(samples.shape[1] - len(y)) <= 1152
        assert peak_hz(samples[0], sr) == pytest.approx(LEFT_HZ, abs=2.0)
        assert peak_hz(samples[1], sr) == pytest.approx(RIGHT_HZ, abs=2.0)
        assert best_correlation(y[:, 0], samples[0]) > 0.98
        assert best_correlation(y[:, 1], samples[1]) > 0.98
        assert np.abs(samples).max() < 0.7


@pytest.mark.parametrize("name", ["CLIP.WAV", "gs://bucket/a b/x.y.Wav", "s3://b/k/track.wav", ""])
def test_extension_is_case_insensitive_and_uri_aware(name):
    data = encode(stereo_tones(0.2), SR, fmt="WAV", subtype="PCM_16")
    samples, sr = decode_audio(data, name=name)
    assert samples.shape == (2, int(0.2 * SR)) and sr == SR


def test_mono_file_decodes_to_one_channel():
    y = stereo_tones(0.5)[:, 0]
    samples, sr = decode_audio(encode(y, 22050, fmt="FLAC", subtype="PCM_24"), name="m.flac")
    assert samples.shape == (1, len(y)) and sr == 22050
    np.testing.assert_allclose(samples[0], y, atol=2.0**-23)


def test_to_mono_matches_channel_mean():
    rng = np.random.default_rng(1)
    for channels in (2, 3, 6):
        x = rng.uniform(-1, 1, size=(channels, 1001)).astype(np.float32)
        mono = to_mono(x)
        assert mono.shape == (1001,) and mono.dtype == np.float32
        np.testing.assert_allclose(mono, x.astype(np.float64).mean(axis=0), atol=1e-7)
    one = rng.uniform(-1, 1, size=(1, 50)).astype(np.float32)
    np.testing.assert_array_equal(to_mono(one), one[0])
    np.testing.assert_array_equal(to_mono(one[0]), one[0])


def test_stereo_mix_matches_librosa_load(tmp_path):
    import librosa

    y = stereo_tones(1.0)
    y[:, 1] *= 0.3
    path = tmp_path / "s.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    samples, sr = decode_audio(path.read_bytes(), name=path.name)
    ref, ref_sr = librosa.load(path, sr=None, mono=True)
    assert sr == ref_sr
    np.testing.assert_allclose(to_mono(samples), ref, atol=1e-7)


@pytest.mark.parametrize("orig_sr", [44100, 48000, 16000, 32000])
def test_resample_matches_librosa_soxr_hq(orig_sr):
    import librosa

    rng = np.random.default_rng(orig_sr)
    t = np.arange(orig_sr) / orig_sr
    y = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    out = resample(y, orig_sr=orig_sr, target_sr=22050)
    ref = librosa.resample(y, orig_sr=orig_sr, target_sr=22050, res_type="soxr_hq")
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 999, 12345, 44101, 369228 * 2 + 1])
@pytest.mark.parametrize("orig_sr", [44100, 48000, 11025])
def test_resample_length_matches_librosa(n, orig_sr):
    import librosa

    y = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    out = resample(y, orig_sr=orig_sr, target_sr=22050)
    ref = librosa.resample(y, orig_sr=orig_sr, target_sr=22050, res_type="soxr_hq")
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_resample_same_rate_is_identity():
    y = np.linspace(-1, 1, 1000, dtype=np.float32)
    np.testing.assert_array_equal(resample(y, orig_sr=22050, target_sr=22050), y)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 5000.0, 9000.0])
def test_resample_preserves_sine_frequency(freq):
    t = np.arange(2 * 44100) / 44100
    y = np.sin(2 * np.pi * freq * t).astype(np.float32)
    out = resample(y, orig_sr=44100, target_sr=22050)
    assert len(out) == 44100
    assert peak_hz(out, 22050) == pytest.approx(freq, abs=1.0)
    # Amplitude kept (a pass-band tone), away from the filter's edge transients.
    assert np.abs(out[1000:-1000]).max() == pytest.approx(1.0, abs=0.01)


def test_resample_removes_content_above_new_nyquist():
    t = np.arange(44100) / 44100
    y = np.sin(2 * np.pi * 15000 * t).astype(np.float32)  # above 11025 Hz: must not alias
    out = resample(y, orig_sr=44100, target_sr=22050)
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) < 1e-3


def test_load_mono_matches_librosa_load(tmp_path):
    import librosa

    y = stereo_tones(1.5)
    path = tmp_path / "clip.wav"
    sf.write(path, y, SR, subtype="PCM_16")
    params = SpectrogramParams()
    out = load_mono(path.read_bytes(), params=params, name=str(path))
    ref, _ = librosa.load(path, sr=params.sample_rate, mono=True)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-6)


@pytest.mark.skipif(not LIBROSA_DATA.is_dir(), reason="../shared/audio/librosa-data absent")
def test_load_mono_matches_librosa_on_real_vorbis():
    import librosa

    params = SpectrogramParams()
    paths = sorted(LIBROSA_DATA.glob("*.ogg"))[:3]
    assert paths
    for path in paths:
        out = load_mono(path.read_bytes(), params=params, name=path.name)
        ref, _ = librosa.load(path, sr=params.sample_rate, mono=True)
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=1e-5)


# Errors -----------------------------------------------------------------------------------------
def _wav(seconds: float = 0.5, subtype: str = "PCM_16") -> bytes:
    return encode(stereo_tones(seconds), SR, fmt="WAV", subtype=subtype)


def _error(data: bytes, name: str, *, via_load: bool = False) -> AudioError:
    with pytest.raises(AudioError) as info:
        if via_load:
            load_mono(data, params=SpectrogramParams(), name=name)
        else:
            decode_audio(data, name=name)
    err = info.value
    assert err.message and err.reason in str(err)
    return err


def test_empty_file():
    err = _error(b"", "x.wav")
    assert (err.reason, err.stage) == ("empty", "decode")


@pytest.mark.parametrize("ext", ["wav", "mp3", "ogg", "flac", "au", "snd", "aiff"])
def test_random_bytes_are_decode_errors(ext):
    data = np.random.default_rng(7).bytes(4096)
    err = _error(data, f"noise.{ext}")
    assert (err.reason, err.stage) == ("decode_error", "decode")


@pytest.mark.parametrize(
    "ext, fmt, subtype, reasons",
    [
        ("wav", "WAV", "PCM_16", {"truncated"}),
        ("wav", "WAV", "FLOAT", {"truncated"}),
        ("au", "AU", "PCM_16", {"truncated"}),
        ("aiff", "AIFF", "PCM_16", {"truncated"}),
        ("mp3", "MP3", "MPEG_LAYER_III", {"truncated"}),
        ("flac", "FLAC", "PCM_16", {"decode_error", "truncated"}),
        ("ogg", "OGG", "VORBIS", {"decode_error", "truncated", "no_samples"}),
    ],
)
def test_truncated_files_are_rejected(ext, fmt, subtype, reasons):
    data = encode(stereo_tones(1.0), SR, fmt=fmt, subtype=subtype)
    err = _error(data[: len(data) // 2], f"cut.{ext}")
    assert err.reason in reasons and err.stage == "decode"


def test_complete_files_are_not_flagged_truncated():
    kinds = [("WAV", "PCM_16"), ("AU", "PCM_16"), ("AIFF", "PCM_16"), ("MP3", "MPEG_LAYER_III")]
    for fmt, subtype in kinds:
        data = encode(stereo_tones(1.0), SR, fmt=fmt, subtype=subtype)
        samples, _ = decode_audio(data, name=f"ok.{fmt.lower()}")
        assert samples.shape[1] >= SR - 1152


def test_mp3_length_estimate_is_not_taken_for_truncation():
    # Without a Xing/Info header the decoder only estimates the frame count: never "truncated".
    data = encode(stereo_tones(1.0), SR, fmt="MP3", subtype="MPEG_LAYER_III")
    assert b"Xing" in data[:4096]
    no_header = data.replace(b"Xing", b"XXXX", 1)
    samples, _ = decode_audio(no_header[: len(no_header) // 2], name="cut.mp3")
    assert samples.shape[0] == 2 and samples.shape[1] > 0


def test_mp3_behind_an_id3_tag_is_checked_for_truncation():
    data = encode(stereo_tones(1.0), SR, fmt="MP3", subtype="MPEG_LAYER_III")
    size = 5000  # ID3v2.4 tag: 10-byte header with a syncsafe size, then padding
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    tagged = b"ID3\x04\x00\x00" + syncsafe + b"\x00" * size + data
    samples, _ = decode_audio(tagged, name="tagged.mp3")
    assert abs(samples.shape[1] - SR) <= 1152
    assert _error(tagged[: len(tagged) // 2], "tagged.mp3").reason == "truncated"


def test_header_only_wav_has_no_samples():
    empty = encode(np.zeros((0, 2), np.float32), SR, fmt="WAV", subtype="PCM_16")
    assert len(empty) == 44
    err = _error(empty, "hdr.wav")
    assert err.reason == "no_samples"


def test_partial_header_is_decode_error():
    err = _error(_wav()[:20], "hdr.wav")
    assert err.reason == "decode_error"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_rejected(bad):
    y = stereo_tones(0.2)
    y[100, 1] = bad
    data = encode(y, SR, fmt="WAV", subtype="FLOAT")
    samples, _ = decode_audio(data, name="f.wav")  # decoding itself succeeds
    assert not np.isfinite(samples).all()
    err = _error(data, "f.wav", via_load=True)
    assert err.reason == "non_finite" and "1 of" in err.message


@pytest.mark.parametrize("name", ["notes.txt", "clip.m4a", "clip.wav.bak", "no_extension"])
def test_unsupported_extension(name):
    err = _error(_wav(), name)
    assert err.reason == "unsupported_format"


# Segmenting -------------------------------------------------------------------------------------
P = SpectrogramParams()  # 3 s segments at 22,050 Hz: 66,150 samples; min tail 33,075
SEG, TAIL = P.segment_samples, P.min_tail_samples


def ramp(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.float32) + 1.0) / n


@pytest.mark.parametrize(
    "n, expected",
    [
        (SEG, [0]),
        (SEG + 1, [0]),
        (SEG + TAIL - 1, [0]),
        (SEG + TAIL, [0, SEG]),
        (2 * SEG - 1, [0, SEG]),
        (2 * SEG, [0, SEG]),
        (10 * SEG, [i * SEG for i in range(10)]),
        (10 * SEG + TAIL, [i * SEG for i in range(11)]),
        (SEG - 1, [0]),
        (TAIL, [0]),
        (30 * 22050, [i * SEG for i in range(10)]),
    ],
)
def test_segment_counts_and_tail_policy(n, expected):
    y = ramp(n)
    assert segment_starts(n, params=P) == expected
    segs = segment_audio(y, params=P)
    assert segs.shape == (len(expected), SEG) and segs.dtype == np.float32
    for row, start in zip(segs, expected):
        piece = y[start : start + SEG]
        np.testing.assert_array_equal(row[: len(piece)], piece)
        assert not row[len(piece) :].any()  # zero padding after the audio


@pytest.mark.parametrize("n", [0, 1, TAIL - 1])
def test_clip_shorter_than_min_fraction_is_too_short(n):
    with pytest.raises(AudioError) as info:
        segment_audio(ramp(n), params=P)
    assert info.value.reason == "too_short" and info.value.stage == "segment"
    assert segment_starts(n, params=P) == []


def test_min_tail_fraction_one_drops_every_partial_segment():
    p = SpectrogramParams(min_tail_fraction=1.0)
    assert segment_starts(2 * SEG - 1, params=p) == [0]
    with pytest.raises(AudioError):
        segment_audio(ramp(SEG - 1), params=p)


def test_overlapping_hop():
    p = SpectrogramParams(segment_seconds=3.0, segment_hop_seconds=1.5)
    seg, hop = p.segment_samples, p.segment_hop_samples
    assert hop == seg // 2
    # 6 s: full segments at 0, 1.5 s, 3 s; nothing left uncovered.
    assert segment_starts(2 * seg, params=p) == [0, hop, 2 * hop]
    # 6 s + 1 s uncovered (>= 1.5 s needed): dropped.
    assert segment_starts(2 * seg + 22050, params=p) == [0, hop, 2 * hop]
    # 7.5 s: the 1.5 s past 6 s make a fourth *full* segment (3 s from 4.5 s), nothing padded.
    y = ramp(2 * seg + hop)
    assert segment_starts(len(y), params=p) == [0, hop, 2 * hop, 3 * hop]
    segs = segment_audio(y, params=p)
    np.testing.assert_array_equal(segs[1], y[hop : hop + seg])
    np.testing.assert_array_equal(segs[3], y[3 * hop : 3 * hop + seg])


def test_overlapping_hop_pads_a_tail_shorter_than_a_hop():
    """With a hop of half a segment, a padded segment needs a tail shorter than one hop but at
    least ``min_tail_samples``: here 1 s past 6 s with a 0.75 s minimum."""
    p = SpectrogramParams(segment_seconds=3.0, segment_hop_seconds=1.5, min_tail_fraction=0.25)
    seg, hop, sr = p.segment_samples, p.segment_hop_samples, p.sample_rate
    y = ramp(2 * seg + sr)
    assert segment_starts(len(y), params=p) == [0, hop, 2 * hop, 3 * hop]
    segs = segment_audio(y, params=p)
    assert segs.shape == (4, seg)
    n_audio = len(y) - 3 * hop  # 2.5 s of audio in the last segment, then 0.5 s of padding
    assert (n_audio, seg - n_audio) == (hop + sr, sr // 2)
    np.testing.assert_array_equal(segs[3, :n_audio], y[3 * hop :])
    np.testing.assert_array_equal(segs[3, n_audio:], np.zeros(seg - n_audio, np.float32))
    # 0.74 s past 6 s is shorter than the minimum: dropped.
    assert segment_starts(2 * seg + p.min_tail_samples - 1, params=p) == [0, hop, 2 * hop]


def test_segments_of_decoded_audio_cover_the_clip():
    y = stereo_tones(7.0)  # 7 s at 44.1 kHz: 2 full segments + 1 s tail (< 1.5 s): dropped
    mono = load_mono(encode(y, SR, fmt="WAV", subtype="FLOAT"), params=P, name="c.wav")
    assert len(mono) == 7 * 22050
    assert segment_audio(mono, params=P).shape == (2, SEG)
