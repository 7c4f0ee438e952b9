"""The trainer's input pipeline: shards of both formats -> tf.data, balancing, augmentation."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import trainutil
from training import data
from transforms.metadata import read_metadata

LABELS = ("blues", "jazz", "rock")
IMBALANCED = {"train": [6, 3, 1], "test": 1}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The same rows written as TFRecord and as Parquet (3 shards each)."""
    out = {}
    for fmt in ("tfrecord", "parquet"):
        d = str(tmp_path_factory.mktemp(fmt))
        trainutil.write_dataset(d, fmt=fmt, labels=LABELS, tracks=IMBALANCED, n_shards=3, seed=7)
        out[fmt] = d
    return out


def _sorted(split):
    order = np.lexsort((split["segment_index"], split["track_id"].astype(str)))
    return {k: v[order] for k, v in split.items()}


def test_both_formats_give_the_rows_that_were_written(datasets):
    written = trainutil.make_split_rows(
        labels=sorted(LABELS), split="train", tracks_per_label=IMBALANCED["train"],
        segments_per_track=4, params=trainutil.TINY_PARAMS, seed=7 * 100,
    )
    written.sort(key=lambda r: (r["track_id"], r["segment_index"]))
    for fmt, d in datasets.items():
        got = _sorted(data.load_split(d, metadata=read_metadata(d), split="train"))
        assert got["mel"].shape == (len(written), *trainutil.TINY_PARAMS.mel_shape), fmt
        np.testing.assert_array_equal(got["mel"], np.stack([r["mel"] for r in written]))
        assert list(got["track_id"]) == [r["track_id"] for r in written]
        assert list(got["label_index"]) == [r["label_index"] for r in written]
        assert list(got["segment_index"]) == [r["segment_index"] for r in written]


def test_training_order_reads_every_segment_once_per_epoch(datasets):
    d = datasets["parquet"]
    md = read_metadata(d)
    ds = data.segments(d, metadata=md, split="train", shuffle_files=True, seed=3)
    ids = [(e["track_id"].numpy(), int(e["segment_index"])) for e in ds]
    assert len(ids) == len(set(ids)) == md.counts["train"]["segments"]


def test_missing_split_is_a_clear_error(datasets):
    d = datasets["tfrecord"]
    with pytest.raises(ValueError, match="no 'validation' shards"):
        data.segments(d, metadata=read_metadata(d), split="validation")


def test_class_weights_from_metadata_counts(datasets):
    md = read_metadata(datasets["tfrecord"])
    # 24, 12 and 4 segments: weight = 40 / (3 * n)
    np.testing.assert_allclose(data.class_weights(md), [40 / 72, 40 / 36, 40 / 12], rtol=1e-6)


def _labels_of(ds, n_batches):
    counts = collections.Counter()
    for _, y, _ in ds.take(n_batches):
        counts.update(np.argmax(y.numpy(), axis=1).tolist())
    return counts


def test_resample_balances_classes(datasets):
    d = datasets["tfrecord"]
    ds, steps = data.training_dataset(d, metadata=read_metadata(d), batch_size=30, balance="resample", seed=0)
    counts = _labels_of(ds, 20)
    fractions = np.array([counts[i] for i in range(3)]) / 600
    np.testing.assert_allclose(fractions, 1 / 3, atol=0.07)
    assert steps == 40 // 30


def test_weights_mode_carries_class_weights(datasets):
    d = datasets["parquet"]
    md = read_metadata(d)
    ds, _ = data.training_dataset(d, metadata=md, batch_size=8, balance="weights", seed=0)
    expected = data.class_weights(md)
    for _, y, w in ds.take(5):
        np.testing.assert_allclose(w.numpy(), expected[np.argmax(y.numpy(), axis=1)], rtol=1e-6)


def test_cap_limits_distinct_segments_per_class(datasets):
    d = datasets["tfrecord"]
    ds, steps = data.training_dataset(
        d, metadata=read_metadata(d), batch_size=6, balance="none", max_segments_per_class=3, seed=0
    )
    seen = collections.defaultdict(set)
    for x, y, _ in ds.take(30):
        for mel, label in zip(x.numpy(), np.argmax(y.numpy(), axis=1)):
            seen[int(label)].add(mel.tobytes())
    assert {k: len(v) for k, v in seen.items()} == {0: 3, 1: 3, 2: 3}
    assert steps == 9 // 6


def test_spec_augment_masks_whole_bands_and_frames_with_band_means():
    rng = np.random.default_rng(0)
    mel = rng.normal(size=(4, 16, 20)).astype(np.float32)
    aug = data.Augment(freq_masks=1, freq_mask_width=4, time_masks=1, time_mask_width=5)
    out = data._spec_augment(tf.constant(mel), aug, seed=1).numpy()
    band_mean = mel.mean(axis=2, keepdims=True)
    for x, o, m in zip(mel, out, band_mean):
        changed = o != x
        rows = changed.all(axis=1)  # fully masked bands
        cols = changed.all(axis=0)  # fully masked frames
        assert rows.sum() <= 4 and cols.sum() <= 5
        # every changed cell lies in a masked band or frame and holds its band's mean
        np.testing.assert_array_equal(changed, rows[:, None] | cols[None, :])
        np.testing.assert_allclose(o[changed], np.broadcast_to(m, o.shape)[changed], rtol=1e-5, atol=1e-6)


def test_mixup_keeps_the_dominant_label():
    rng = np.random.default_rng(1)
    mel = tf.constant(rng.normal(size=(8, 4, 5)).astype(np.float32))
    labels = np.arange(8) % 3
    y = tf.one_hot(labels, 3)
    w = tf.ones(8)
    # traced, as in the input pipeline (graph-mode random ops with equal seeds draw equal values)
    mx, my, mw = tf.function(lambda m, t, u: data._mixup(m, t, u, 0.4, seed=2))(mel, y, w)
    my = my.numpy()
    np.testing.assert_allclose(my.sum(axis=1), 1.0, rtol=1e-6)
    assert (my.max(axis=1) >= 0.5 - 1e-6).all()
    lam = my[np.arange(8), labels]  # partner label differs from own except when equal
    same = labels == labels[::-1]
    lam_x = np.where(same, np.nan, lam)
    # x = lam * x + (1 - lam) * x[reversed]
    for i in np.flatnonzero(~same):
        np.testing.assert_allclose(mx.numpy()[i], lam_x[i] * mel.numpy()[i] + (1 - lam_x[i]) * mel.numpy()[7 - i], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mw.numpy(), 1.0)
    # lam is drawn from Beta(alpha, alpha) per example, not stuck at 0.5 (two equal gamma draws)
    assert np.ptp(lam_x[~same]) > 0.05 and not np.allclose(lam_x[~same], 0.5, atol=0.02)


def test_time_shift_rolls_each_segment_along_time():
    rng = np.random.default_rng(4)
    mel = rng.normal(size=(6, 5, 12)).astype(np.float32)
    out = data._time_shift(tf.constant(mel), seed=3).numpy()
    shifts = []
    for x, o in zip(mel, out):
        # the output is np.roll of the input by some offset, the same for every band
        matches = [s for s in range(12) if np.array_equal(o, np.roll(x, -s, axis=1))]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert len(set(shifts)) > 1  # offsets are drawn per segment


def test_augment_batch_without_augmentation_is_the_identity():
    mel = tf.constant(np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4))
    y, w = tf.one_hot([0, 1], 2), tf.constant([1.0, 2.0])
    out = data.augment_batch(mel, y, w, augment=data.Augment.none())
    for a, b in zip(out, (mel, y, w)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_gain_adds_one_bounded_offset_per_segment():
    rng = np.random.default_rng(6)
    mel = rng.normal(-30, 10, size=(8, 4, 6)).astype(np.float32)
    out = data.augment_batch(tf.constant(mel), tf.one_hot(np.zeros(8, int), 2), tf.ones(8),
                             augment=data.Augment(freq_masks=0, time_masks=0, gain_db=6.0), seed=1)[0].numpy()
    offset = (out - mel).reshape(8, -1)
    np.testing.assert_allclose(offset, offset[:, :1].repeat(offset.shape[1], axis=1), atol=1e-4)
    assert (np.abs(offset) <= 6.0 + 1e-4).all() and np.ptp(offset[:, 0]) > 0


def test_pitch_shift_moves_a_tone_to_the_band_of_the_shifted_tone():
    # Independent reference: the log-mel of a real tone at f * 2 ** (s / 12).
    from transforms import spectrogram
    from transforms.spec import SpectrogramParams

    params = SpectrogramParams()
    mel_fb = spectrogram.mel_filter(params)
    t = np.arange(params.segment_samples) / params.sample_rate

    def tone(hz):
        return spectrogram.log_mel(np.sin(2 * np.pi * hz * t)[np.newaxis].astype(np.float32), mel=mel_fb)

    sources = data.pitch_shift_sources(spectrogram.mel_band_centres(params), max_semitones=5, step=5)
    assert sources.shape == (3, params.n_mels)
    np.testing.assert_allclose(sources[1], np.arange(params.n_mels), atol=1e-4)  # the 0 shift
    for f0 in (440.0, 1500.0):
        shifted = data._resample_axis(tf.constant(np.repeat(tone(f0), 3, axis=0)), tf.constant(sources), 1,
                                      wrap=False).numpy()
        for row, semitones in ((0, -5), (2, 5)):
            want = tone(f0 * 2 ** (semitones / 12))[0].mean(axis=1).argmax()
            got = shifted[row].mean(axis=1).argmax()
            assert abs(int(got) - int(want)) <= 1, (f0, semitones, got, want)


def test_augment_pitch_shift_draws_a_shift_per_segment():
    band_hz = tuple(np.geomspace(50, 8000, 32))
    mel = np.zeros((16, 32, 10), np.float32)
    mel[:, 16, :] = 1.0
    aug = data.Augment(freq_masks=0, time_masks=0, pitch_shift=4, band_hz=band_hz)
    out = data.augment_batch(tf.constant(mel), tf.one_hot(np.zeros(16, int), 2), tf.ones(16), augment=aug,
                             seed=2)[0].numpy()
    centre = (out[:, :, 0] * np.arange(32)).sum(axis=1) / out[:, :, 0].sum(axis=1)
    # 4 semitones at 32 log-spaced bands over 7.3 octaves is at most ~1.5 bands
    assert np.abs(centre - 16).max() <= 1.6 and np.ptp(centre) > 0.5
    with pytest.raises(ValueError, match="band_hz"):
        data.augment_batch(tf.constant(mel), tf.one_hot(np.zeros(16, int), 2), tf.ones(16),
                           augment=data.Augment(pitch_shift=2))


def test_time_stretch_resamples_time_at_a_bounded_rate_per_segment():
    n_frames = 130
    ramp = np.broadcast_to(np.arange(n_frames, dtype=np.float32), (12, 3, n_frames)).copy()
    out = data._time_stretch(tf.constant(ramp), 0.2, seed=5).numpy()
    rates = []
    for o in out:
        step = np.diff(o[0])
        rate = np.median(step)
        # every step is the rate but the (at most 2 x 2) around a wrap from the last frame to the first
        assert (np.abs(step - rate) < 1e-3).sum() >= n_frames - 1 - 4
        rates.append(rate)
    assert min(rates) >= 0.8 - 1e-4 and max(rates) <= 1.2 + 1e-4 and np.ptp(rates) > 0.05
    with pytest.raises(ValueError, match="time_stretch"):
        data.augment_batch(tf.constant(ramp), tf.one_hot(np.zeros(12, int), 2), tf.ones(12),
                           augment=data.Augment(time_stretch=1.5))
