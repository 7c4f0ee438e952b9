"""Decoded-size bombs: what one file may cost a worker, whatever its header says (issue 12, item 1).

The corpus is generated here: FLACs of multichannel hi-res silence (a few hundred KB that decode to
hundreds of MB of float32), a FLAC whose STREAMINFO announces 655,350 Hz and 2**36 frames, and a
WAV declaring more channels than the limit.
"""

from __future__ import annotations

import io
import os
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from transforms import audio
from transforms.audio import (
    MAX_CHANNELS,
    MAX_DECODED_SAMPLES,
    AudioError,
    decode_audio,
    decode_memory_bound,
    frames_to_decode,
    load_mono,
    resample,
    to_mono,
)
from transforms.spec import SpectrogramParams

P = SpectrogramParams()


def silence_flac(*, seconds: float, sample_rate: int, channels: int) -> bytes:
    """FLAC of digital silence, written one second at a time (the test never holds it decoded)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=sample_rate, channels=channels, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((sample_rate, channels), np.float32)
        for start in range(0, int(seconds * sample_rate), sample_rate):
            f.write(block[: int(seconds * sample_rate) - start])
    return buf.getvalue()


def with_streaminfo(flac: bytes, *, sample_rate: int | None = None, total_frames: int | None = None) -> bytes:
    """Rewrite the sample rate (20 bits) and total frames (36 bits) of a FLAC's STREAMINFO."""
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # STREAMINFO is the first block
    packed = int.from_bytes(flac[18:26], "big")  # rate(20) channels-1(3) bits-1(5) frames(36)
    if sample_rate is not None:
        packed = (packed & ((1 << 44) - 1)) | (sample_rate << 44)
    if total_frames is not None:
        packed = (packed & ~((1 << 36) - 1)) | total_frames
    return flac[:18] + packed.to_bytes(8, "big") + flac[26:]


def tones(seconds: float, sample_rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """(n, channels) float32: a different tone plus a little noise in every channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    cols = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.01 * rng.standard_normal(len(t)) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def encoded(y: np.ndarray, sample_rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sample_rate, format=fmt, subtype=subtype)
    return buf.getvalue()


# Results for normal files are what the whole-file decode gave -------------------------------------
NORMAL = [  # (channels, native rate, format, subtype)
    (1, 22050, "WAV", "PCM_16"),
    (2, 44100, "FLAC", "PCM_16"),
    (2, 48000, "OGG", "VORBIS"),
    (6, 96000, "WAV", "FLOAT"),
    (8, 192000, "FLAC", "PCM_24"),
]


@pytest.mark.parametrize("channels, rate, fmt, subtype", NORMAL, ids=[f"{c}ch-{r}-{f}" for c, r, f, _ in NORMAL])
@pytest.mark.parametrize("block_samples", [audio.BLOCK_SAMPLES, 4099])  # one block; many odd-sized ones
def test_streaming_decode_equals_the_whole_file_decode(monkeypatch, channels, rate, fmt, subtype, block_samples):
    import librosa

    monkeypatch.setattr(audio, "BLOCK_SAMPLES", block_samples)
    data = encoded(tones(1.3, rate, channels), rate, fmt, subtype)
    samples, sr = decode_audio(data, name=f"x.{fmt.lower()}")
    whole = resample(to_mono(samples), orig_sr=sr, target_sr=P.sample_rate)  # the decode of main
    streamed = load_mono(data, params=P, name=f"x.{fmt.lower()}")
    assert streamed.dtype == np.float32
    np.testing.assert_array_equal(streamed, whole)
    # and librosa's own load (float32 mean over channels, soxr_hq) as the independent reference
    ref = librosa.resample(librosa.to_mono(samples), orig_sr=sr, target_sr=P.sample_rate, res_type="soxr_hq")
    np.testing.assert_allclose(streamed, ref, rtol=0, atol=1e-6)


def test_max_seconds_takes_the_start(monkeypatch):
    monkeypatch.setattr(audio, "BLOCK_SAMPLES", 5000)
    data = encoded(tones(3.0, 48000, 4), 48000, "WAV", "FLOAT")
    full = load_mono(data, params=P, name="x.wav")
    head = load_mono(data, params=P, name="x.wav", max_seconds=1.25)
    assert len(head) == int(np.ceil(1.25 * 48000 * P.sample_rate / 48000))
    # the resampler sees the cut: compare away from its end
    np.testing.assert_allclose(head[: len(head) - 200], full[: len(head) - 200], atol=1e-6)


def test_non_finite_sample_in_a_late_block_is_found(monkeypatch):
    monkeypatch.setattr(audio, "BLOCK_SAMPLES", 1000)
    y = tones(1.0, 22050, 2)
    y[20000, 1] = np.nan
    with pytest.raises(AudioError) as info:
        load_mono(encoded(y, 22050, "WAV", "FLOAT"), params=P, name="x.wav")
    assert info.value.reason == "non_finite" and "1 of 1000 samples" in info.value.message


# The bombs ---------------------------------------------------------------------------------------
def test_hi_res_multichannel_silence_decodes_within_the_documented_bound():
    """20 s of 8-channel 192 kHz silence is a ~35 KB FLAC and 123 MB of decoded float32; the
    streaming decode allocates at most decode_memory_bound (the mono output + a few blocks)."""
    seconds = 20.0
    data = silence_flac(seconds=seconds, sample_rate=192000, channels=8)
    assert len(data) < 100_000
    decoded_bytes = int(seconds * 192000) * 8 * 4
    bound = decode_memory_bound(max_seconds=seconds, target_sr=P.sample_rate)
    assert bound < decoded_bytes / 10
    tracemalloc.start()
    try:
        y = load_mono(data, params=P, name="bomb.flac", max_seconds=1800.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(y) == int(seconds * P.sample_rate) and not y.any()
    assert peak <= bound, f"peak {peak} B > bound {bound} B"


def test_header_announcing_a_huge_decode_is_refused_before_decoding():
    """FLAC allows 655,350 Hz and 2**36 frames: 8 channels of that is 5.5e11 samples (2 TB of
    float32); the header check refuses it with a one-line reason, with and without a time limit."""
    small = silence_flac(seconds=0.5, sample_rate=48000, channels=8)
    bomb = with_streaminfo(small, sample_rate=655350, total_frames=(1 << 36) - 1)
    with sf.SoundFile(io.BytesIO(bomb)) as f:  # libsndfile believes the header
        assert (f.samplerate, f.channels, f.frames) == (655350, 8, (1 << 36) - 1)
    for max_seconds in (None, 1800.0):
        tracemalloc.start()
        try:
            with pytest.raises(AudioError) as info:
                load_mono(bomb, params=P, name="bomb.flac", max_seconds=max_seconds)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        err = info.value
        assert (err.reason, err.stage) == ("too_large", "decode")
        assert "655350 Hz" in err.message and "decode limit" in err.message and "\n" not in err.message
        assert peak < 1_000_000
    with pytest.raises(AudioError, match="too_large"):
        decode_audio(bomb, name="bomb.flac")


def test_more_channels_than_the_limit_are_refused():
    data = encoded(np.zeros((10, MAX_CHANNELS + 1), np.float32), 8000, "WAV", "PCM_16")
    with pytest.raises(AudioError) as info:
        load_mono(data, params=P, name="many.wav")
    assert info.value.reason == "too_large" and f"{MAX_CHANNELS + 1} channels" in info.value.message


def test_frames_to_decode():
    assert frames_to_decode(frames=1000, channels=2, sample_rate=8000, max_seconds=None) == 1000
    assert frames_to_decode(frames=10**9, channels=2, sample_rate=8000, max_seconds=2.5) == 20000
    # 30 minutes of 8-channel 192 kHz is within the limit: long hi-res files still featurize
    assert frames_to_decode(frames=10**12, channels=8, sample_rate=192000, max_seconds=1800) == 1800 * 192000
    with pytest.raises(AudioError, match="decode limit"):
        frames_to_decode(frames=MAX_DECODED_SAMPLES // 4 + 1, channels=4, sample_rate=8000, max_seconds=None)
    with pytest.raises(AudioError, match="above the limit"):
        frames_to_decode(frames=10, channels=1, sample_rate=audio.MAX_SAMPLE_RATE + 1, max_seconds=None)


# Both jobs decode through it -----------------------------------------------------------------------
@pytest.fixture
def bomb_corpus(tmp_path):
    """normal/clip.wav (2 s), hires/bomb.flac (4 s of 8-channel 192 kHz silence), bad/huge.flac."""
    root = tmp_path / "corpus"
    for d in ("normal", "hires", "bad"):
        (root / d).mkdir(parents=True)
    (root / "normal" / "clip.wav").write_bytes(encoded(tones(2.0, 44100, 2), 44100, "WAV", "PCM_16"))
    (root / "hires" / "bomb.flac").write_bytes(silence_flac(seconds=4.0, sample_rate=192000, channels=8))
    small = silence_flac(seconds=0.5, sample_rate=48000, channels=8)
    (root / "bad" / "huge.flac").write_bytes(with_streaminfo(small, sample_rate=655350, total_frames=(1 << 36) - 1))
    return root


def test_label_transform_shares_the_bounded_decode(bomb_corpus):
    """The label job featurizes with AudioToLogMel: the hi-res bomb becomes features, the header
    bomb a too_large dead letter."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.beam_audio import AudioToLogMel, ReadLimits
    from transforms.sources import TrackRef

    params = SpectrogramParams(segment_seconds=1.0)
    refs = [TrackRef(uri=str(p), track_id=p.name, label=p.parent.name) for p in sorted(bomb_corpus.rglob("*.*"))]
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(refs) | AudioToLogMel(params=params, limits=ReadLimits(max_seconds=1800.0))
        feats = out.features | "F" >> beam.Map(lambda f: (f.ref.track_id, f.mels.shape[0], round(f.duration_seconds, 3)))
        letters = out.dead_letters | "D" >> beam.Map(lambda d: (os.path.basename(d.uri), d.reason, d.stage))
        assert_that(feats, equal_to([("bomb.flac", 4, 4.0), ("clip.wav", 2, 2.0)]), label="features")
        assert_that(letters, equal_to([("huge.flac", "too_large", "decode")]), label="dead_letters")


@pytest.mark.slow
def test_featurize_job_shares_the_bounded_decode(bomb_corpus, tmp_path):
    from pipelines import featurize
    from transforms.metadata import read_metadata

    out = tmp_path / "out"
    status = featurize.main(["--input", f"{bomb_corpus}/**", "--output", str(out), "--segment-seconds", "1",
                                 "--segment-hop-seconds", "1",
                             "--max-error-fraction", "0.5", "--direct_running_mode=in_memory",
                             "--direct_num_workers=1"])
    assert status == 0
    md = read_metadata(str(out))
    assert md.inputs == {"matched": 3, "featurized": 2, "failed": 1}
    assert md.failures == {"too_large": 1}
    segments = sum(c["segments"] for c in md.counts.values())
    assert segments == 4 + 2
