"""Featurize shards -> ``tf.data``: reading both shard formats, balancing and augmentation.

The dataset directory is described by its ``metadata.json`` (:func:`transforms.metadata.read_metadata`):
shapes, label vocabulary, shard names and per-label counts all come from there, never from options.

Two layers:

* :func:`segments` reads one split as a dataset of single segments, a dict with ``mel`` (float32,
  ``(n_mels, n_frames)``), ``label_index`` (int64), ``track_id`` (string) and ``segment_index``
  (int64), from TFRecord (``tf.data.TFRecordDataset``, parallel interleave over files) or Parquet
  (pyarrow ``iter_batches`` in ``Dataset.from_generator``, interleaved per file).  Both formats give
  the same elements (tested).
* :func:`training_dataset` / :func:`eval_dataset` turn that into batches of ``(mel, one-hot label
  [, sample weight])`` for Keras, with class balancing, shuffling, SpecAugment-style masking and
  mixup (training only, so the exported model holds no augmentation layers), and prefetching.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterator

import numpy as np

from transforms import spec
from transforms.metadata import DatasetMetadata
from transforms.spec import SpectrogramParams

__all__ = [
    "Augment",
    "shard_paths",
    "split_size",
    "segments",
    "class_weights",
    "training_dataset",
    "eval_dataset",
    "mel_dataset",
    "load_split",
    "augment_batch",
    "segment_datasets",
    "pitch_shift_sources",
]

logger = logging.getLogger(__name__)

#: Features kept from each stored segment.
KEPT = (spec.FEATURE_MEL, spec.FEATURE_LABEL_INDEX, spec.FEATURE_TRACK_ID, spec.FEATURE_SEGMENT_INDEX)

#: Rows per Parquet read and per batched TFRecord parse.
READ_BATCH = 128


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied per batch in the input pipeline.

    Attributes
    ----------
    freq_masks : int
        Frequency masks per segment (SpecAugment).
    freq_mask_width : int
        Largest frequency mask, in mel bands (each mask's width is uniform in ``[0, width]``).
    time_masks : int
        Time masks per segment.
    time_mask_width : int
        Largest time mask, in frames.
    mixup_alpha : float
        Beta(alpha, alpha) mixing of each segment with another of the batch (labels and sample
        weights mixed alike); 0 disables mixup.
    time_shift : bool
        Roll each segment circularly along time by a uniform random number of frames (a random
        crop of the looped segment: the model sees every bar line at every position).
    gain_db : float
        Add a uniform random offset in ``[-gain_db, gain_db]`` dB to each whole segment (playback
        level and mastering loudness are not the genre); 0 disables it.
    pitch_shift : float
        Largest pitch shift, semitones: each segment is shifted by its own uniform draw in
        ``[-pitch_shift, pitch_shift]`` (quantised to 1/4 semitone) by resampling the mel axis at
        the bands' centre frequencies divided by ``2 ** (s / 12)`` (:func:`pitch_shift_sources`);
        0 disables it.  Needs ``band_hz``, which :func:`training_dataset` fills in from the data's
        spectrogram parameters.
    band_hz : tuple of float
        Centre frequency of each mel band, Hz, shape ``(n_mels,)``
        (:func:`transforms.spectrogram.mel_band_centres`); only read by the pitch shift.
    time_stretch : float
        Largest relative tempo change: each segment is resampled along time at a uniform rate in
        ``[1 - time_stretch, 1 + time_stretch]`` (linear interpolation, circular like the time
        shift, from a random start frame); 0 disables it.
    """

    freq_masks: int = 2
    freq_mask_width: int = 16
    time_masks: int = 2
    time_mask_width: int = 20
    mixup_alpha: float = 0.0
    time_shift: bool = False
    gain_db: float = 0.0
    pitch_shift: float = 0.0
    band_hz: tuple[float, ...] = ()
    time_stretch: float = 0.0

    @classmethod
    def none(cls) -> "Augment":
        """No augmentation at all."""
        return cls(freq_masks=0, time_masks=0, mixup_alpha=0.0, time_shift=False, gain_db=0.0)


def shard_paths(data_dir: str, metadata: DatasetMetadata, split: str) -> list[str]:
    """Full paths of the shards of ``split`` (empty when the split has none)."""
    return metadata.shard_paths(data_dir, split)


def split_size(metadata: DatasetMetadata, split: str) -> int:
    """Segments in ``split`` according to ``metadata.json`` (0 when absent)."""
    return int(metadata.counts.get(split, {}).get("segments", 0))


def _interleave_options(parallel: bool) -> dict[str, Any]:
    """Parallel, non-deterministic interleave for training; sequential and ordered otherwise."""
    import tensorflow as tf

    return {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": False} if parallel else {}


def _tfrecord_segments(paths: list[str], params: SpectrogramParams, *, parallel: bool) -> Any:
    import tensorflow as tf

    from transforms.records import tf_feature_description

    description = {k: v for k, v in tf_feature_description(params).items() if k in KEPT}
    shape = params.mel_shape

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, description)
        parsed[spec.FEATURE_MEL] = tf.reshape(parsed[spec.FEATURE_MEL], (-1, *shape))
        return parsed

    files = tf.data.Dataset.from_tensor_slices(paths)
    records = files.interleave(
        lambda p: tf.data.TFRecordDataset(p, compression_type="GZIP"),
        cycle_length=max(1, min(len(paths), 8)),
        **_interleave_options(parallel),
    )
    return records.batch(READ_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def _parquet_batches(path: str, params: SpectrogramParams) -> Iterator[dict[str, np.ndarray]]:
    """Batches of one Parquet shard as numpy arrays (mel reshaped to ``(n, n_mels, n_frames)``)."""
    from transforms.shard_reader import parquet_batches

    if isinstance(path, bytes):
        path = path.decode("utf-8")
    for batch in parquet_batches(path, batch_size=READ_BATCH, columns=KEPT):
        mel = batch.column(spec.FEATURE_MEL).flatten().to_numpy(zero_copy_only=False)
        yield {
            spec.FEATURE_MEL: mel.astype(np.float32, copy=False).reshape(-1, *params.mel_shape),
            spec.FEATURE_LABEL_INDEX: batch.column(spec.FEATURE_LABEL_INDEX).to_numpy().astype(np.int64),
            spec.FEATURE_TRACK_ID: np.asarray(batch.column(spec.FEATURE_TRACK_ID).to_pylist(), dtype=object),
            spec.FEATURE_SEGMENT_INDEX: batch.column(spec.FEATURE_SEGMENT_INDEX).to_numpy().astype(np.int64),
        }


def _parquet_segments(paths: list[str], params: SpectrogramParams, *, parallel: bool) -> Any:
    import tensorflow as tf

    signature = {
        spec.FEATURE_MEL: tf.TensorSpec((None, *params.mel_shape), tf.float32),
        spec.FEATURE_LABEL_INDEX: tf.TensorSpec((None,), tf.int64),
        spec.FEATURE_TRACK_ID: tf.TensorSpec((None,), tf.string),
        spec.FEATURE_SEGMENT_INDEX: tf.TensorSpec((None,), tf.int64),
    }

    files = tf.data.Dataset.from_tensor_slices(paths)
    batches = files.interleave(
        lambda p: tf.data.Dataset.from_generator(
            lambda q: _parquet_batches(q, params), args=(p,), output_signature=signature
        ),
        cycle_length=max(1, min(len(paths), 4)),
        **_interleave_options(parallel),
    )
    return batches.unbatch()


def segments(
    data_dir: str,
    *,
    metadata: DatasetMetadata,
    split: str,
    shuffle_files: bool = False,
    seed: int | None = None,
) -> Any:
    """One split as a ``tf.data.Dataset`` of single segments.

    Parameters
    ----------
    data_dir : str
        Featurize output directory (local path or any URL TensorFlow and fsspec read).
    metadata : DatasetMetadata
        Its ``metadata.json``.
    split : str
        ``train``, ``validation`` or ``test``.
    shuffle_files : bool
        Shuffle the shard order and read shards in parallel, non-deterministically (training).
        ``False`` reads every shard in order, deterministically.
    seed : int, optional
        Seed of the shard shuffle.

    Returns
    -------
    tf.data.Dataset
        Elements ``{"mel": float32 (n_mels, n_frames), "label_index": int64 (),
        "track_id": string (), "segment_index": int64 ()}``.

    Raises
    ------
    ValueError
        When the split has no shards or the format is unknown.
    """
    import tensorflow as tf

    paths = shard_paths(data_dir, metadata, split)
    if not paths:
        raise ValueError(
            f"{data_dir} has no {split!r} shards (splits present: {metadata.splits()})"
        )
    readers = {"tfrecord": _tfrecord_segments, "parquet": _parquet_segments}
    if metadata.format not in readers:
        raise ValueError(f"unknown shard format {metadata.format!r} in {data_dir}/metadata.json")
    if shuffle_files:
        order = np.random.default_rng(seed).permutation(len(paths))
        paths = [paths[i] for i in order]
    ds = readers[metadata.format](paths, metadata.spectrogram, parallel=shuffle_files)
    mel_shape = metadata.spectrogram.mel_shape
    return ds.map(
        lambda e: {**e, spec.FEATURE_MEL: tf.ensure_shape(e[spec.FEATURE_MEL], mel_shape)}
    )


def class_weights(metadata: DatasetMetadata, *, split: str = "train") -> np.ndarray:
    """Balanced class weights ``n_segments / (n_present_classes * n_segments_of_class)``.

    Returns
    -------
    np.ndarray, float32, shape (n_labels,)
        Weight per label index; 0 for labels with no segments in ``split``.
    """
    by_label = metadata.counts.get(split, {}).get("by_label", {})
    counts = np.array(
        [by_label.get(label, {}).get("segments", 0) for label in metadata.labels], dtype=np.float64
    )
    present = counts > 0
    weights = np.zeros(len(counts), np.float32)
    if present.any():
        weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def _labeled(ds: Any, n_classes: int) -> Any:
    """``(mel, label_index)`` pairs of labeled segments only (unlabeled ``-1`` dropped)."""
    import tensorflow as tf

    ds = ds.filter(lambda e: e[spec.FEATURE_LABEL_INDEX] >= 0)
    return ds.map(
        lambda e: (e[spec.FEATURE_MEL], tf.cast(e[spec.FEATURE_LABEL_INDEX], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _derive_seed(seed: int | None, *tags: int) -> int | None:
    """A distinct op seed per random op: in graph mode (tf.data map, tf.function) two random ops
    with the same seed draw the same values, which would tie mask widths to positions, frequency
    masks to time masks, and both mixup gamma draws to each other."""
    if seed is None:
        return None
    value = int(seed)
    for tag in tags:
        value = (value * 1_000_003 + int(tag)) % (2**31 - 1)
    return value


def _spec_augment(mel: Any, augment: Augment, seed: int | None) -> Any:
    """SpecAugment masks on a batch ``(batch, n_mels, n_frames)``; masked cells get the band mean."""
    import tensorflow as tf

    shape = tf.shape(mel)
    batch, n_mels, n_frames = shape[0], shape[1], shape[2]
    band_mean = tf.reduce_mean(mel, axis=2, keepdims=True)  # (batch, n_mels, 1)
    keep = tf.ones_like(mel, dtype=tf.bool)

    def masks(count, width, size, axis):
        nonlocal keep
        for i in range(count):
            w = tf.random.uniform((batch, 1, 1), 0, width + 1, dtype=tf.int32, seed=_derive_seed(seed, axis, i, 0))
            start = tf.random.uniform((batch, 1, 1), 0, 1, seed=_derive_seed(seed, axis, i, 1))
            start = tf.cast(start * tf.cast(tf.maximum(size - w, 1), tf.float32), tf.int32)
            pos = tf.range(size)
            pos = tf.reshape(pos, (1, -1, 1) if axis == 1 else (1, 1, -1))
            keep = keep & ~((pos >= start) & (pos < start + w))

    masks(augment.freq_masks, augment.freq_mask_width, n_mels, 1)
    masks(augment.time_masks, augment.time_mask_width, n_frames, 2)
    return tf.where(keep, mel, band_mean + tf.zeros_like(mel))


def _time_shift(mel: Any, seed: int | None) -> Any:
    """Roll every segment of ``(batch, n_mels, n_frames)`` along time by its own random offset."""
    import tensorflow as tf

    shape = tf.shape(mel)
    batch, n_frames = shape[0], shape[2]
    shift = tf.random.uniform((batch, 1), 0, n_frames, dtype=tf.int32, seed=_derive_seed(seed, 3))
    idx = (tf.range(n_frames)[tf.newaxis, :] + shift) % n_frames  # (batch, n_frames)
    return tf.gather(mel, idx, axis=2, batch_dims=1)


def pitch_shift_sources(band_hz: np.ndarray, *, max_semitones: float, step: float = 0.25) -> np.ndarray:
    """Where each mel band reads from under each pitch shift: fractional band indexes.

    A shift by ``s`` semitones moves the content at frequency ``f`` to ``f * 2 ** (s / 12)``, so
    band ``m`` of the shifted spectrogram takes the value the original has at
    ``band_hz[m] / 2 ** (s / 12)``, found by linear interpolation between band centres (clamped to
    the first and last band at the edges).  The mel bands' widths are ignored: a dB spectrogram's
    level per band changes little with the shift.

    Parameters
    ----------
    band_hz : np.ndarray, float, shape (n_mels,)
        Centre frequency of each mel band, Hz, increasing.
    max_semitones : float
        Largest shift, semitones (> 0).
    step : float
        Spacing of the shifts, semitones.

    Returns
    -------
    np.ndarray, float32, shape (n_shifts, n_mels)
        Row ``k`` holds the source band index of every band for the shift
        ``-max_semitones + k * step``; ``n_shifts = 2 * round(max_semitones / step) + 1``.
    """
    band_hz = np.asarray(band_hz, np.float64)
    half = max(1, int(round(max_semitones / step)))
    shifts = np.arange(-half, half + 1) * step
    bands = np.arange(len(band_hz), dtype=np.float64)
    rows = [np.interp(band_hz / 2.0 ** (s / 12.0), band_hz, bands) for s in shifts]
    return np.stack(rows).astype(np.float32)


def _resample_axis(mel: Any, source: Any, axis: int, *, wrap: bool) -> Any:
    """Linear interpolation of ``mel`` (batch, n_mels, n_frames) at fractional ``source`` indexes
    (batch, size) along ``axis`` (1 or 2); indexes wrap around when ``wrap``, else are clamped."""
    import tensorflow as tf

    size = tf.shape(mel)[axis]
    lo = tf.floor(source)
    frac = source - lo
    lo = tf.cast(lo, tf.int32)
    hi = lo + 1
    if wrap:
        lo, hi = lo % size, hi % size
    else:
        lo, hi = tf.clip_by_value(lo, 0, size - 1), tf.clip_by_value(hi, 0, size - 1)
    frac = frac[:, :, tf.newaxis] if axis == 1 else frac[:, tf.newaxis, :]
    a = tf.gather(mel, lo, axis=axis, batch_dims=1)
    b = tf.gather(mel, hi, axis=axis, batch_dims=1)
    return a * (1.0 - frac) + b * frac


def _pitch_shift(mel: Any, sources: np.ndarray, seed: int | None) -> Any:
    """Shift each segment of ``(batch, n_mels, n_frames)`` by one random row of ``sources``
    (:func:`pitch_shift_sources`)."""
    import tensorflow as tf

    table = tf.constant(sources)
    pick = tf.random.uniform((tf.shape(mel)[0],), 0, sources.shape[0], dtype=tf.int32, seed=_derive_seed(seed, 6))
    return _resample_axis(mel, tf.gather(table, pick), 1, wrap=False)


def _time_stretch(mel: Any, max_change: float, seed: int | None) -> Any:
    """Resample each segment along time at its own rate in ``[1 - c, 1 + c]`` from a random start,
    circularly: frame ``t`` of the result is the input at ``start + t * rate`` (mod ``n_frames``)."""
    import tensorflow as tf

    batch, n_frames = tf.shape(mel)[0], tf.shape(mel)[2]
    rate = tf.random.uniform((batch, 1), 1.0 - max_change, 1.0 + max_change, seed=_derive_seed(seed, 7, 0))
    frames = tf.cast(n_frames, tf.float32)
    start = tf.random.uniform((batch, 1), 0.0, 1.0, seed=_derive_seed(seed, 7, 1)) * frames
    source = start + tf.cast(tf.range(n_frames), tf.float32)[tf.newaxis, :] * rate
    return _resample_axis(mel, source, 2, wrap=True)


def _gain(mel: Any, gain_db: float, seed: int | None) -> Any:
    """Add one uniform random offset in ``[-gain_db, gain_db]`` (dB) to each whole segment."""
    import tensorflow as tf

    offset = tf.random.uniform((tf.shape(mel)[0], 1, 1), -gain_db, gain_db, seed=_derive_seed(seed, 4))
    return mel + offset


def _mixup(mel: Any, y: Any, w: Any, alpha: float, seed: int | None) -> tuple[Any, Any, Any]:
    """Mix each example with the batch reversed, ``lam ~ Beta(alpha, alpha)`` per example."""
    import tensorflow as tf

    batch = tf.shape(mel)[0]
    # Equal seeds would give a == b, hence lam == 0.5 for every example: 50/50 blends with 50/50
    # targets that the model cannot fit.
    a = tf.random.gamma((batch,), alpha, seed=_derive_seed(seed, 5, 0))
    b = tf.random.gamma((batch,), alpha, seed=_derive_seed(seed, 5, 1))
    lam = a / (a + b)
    lam = tf.maximum(lam, 1.0 - lam)  # the first example dominates: its label stays the argmax
    other = tf.reverse(tf.range(batch), axis=[0])
    lx = tf.reshape(lam, (-1, 1, 1))
    ly = tf.reshape(lam, (-1, 1))
    mel = lx * mel + (1.0 - lx) * tf.gather(mel, other)
    y = ly * y + (1.0 - ly) * tf.gather(y, other)
    w = lam * w + (1.0 - lam) * tf.gather(w, other)
    return mel, y, w


def training_dataset(
    data_dir: str,
    *,
    metadata: DatasetMetadata,
    batch_size: int,
    split: str = "train",
    balance: str = "weights",
    max_segments_per_class: int | None = None,
    augment: Augment | None = None,
    shuffle_buffer: int = 4096,
    cache: bool = True,
    seed: int | None = None,
) -> tuple[Any, int]:
    """Shuffled, balanced, augmented training batches, repeated without end.

    Parameters
    ----------
    data_dir, metadata
        The dataset (see :func:`segments`).
    batch_size : int
        Segments per batch (the global batch under a distribution strategy).
    balance : {"weights", "resample", "none"}
        ``weights``: every segment carries its class weight (:func:`class_weights`) as sample
        weight.  ``resample``: classes are drawn with equal probability (small classes repeated,
        large ones subsampled), sample weights 1.  ``none``: the data as it is.
    max_segments_per_class : int, optional
        Use at most this many segments of each class (the first ones in shard order).
    augment : Augment, optional
        Training augmentation; ``None`` for none.
    shuffle_buffer : int
        Shuffle buffer in segments (capped at the split size).
    cache : bool
        Keep the decoded segments in memory after the first epoch (for data that fits in RAM).
    seed : int, optional
        Seed for shuffling and augmentation.

    Returns
    -------
    dataset : tf.data.Dataset
        Endless batches ``(mel float32 (batch, n_mels, n_frames), y float32 (batch, n_labels),
        sample_weight float32 (batch,))``.
    steps_per_epoch : int
        Batches that make one pass over the (capped or resampled) training data.
    """
    import tensorflow as tf

    if balance not in ("weights", "resample", "none"):
        raise ValueError(f"balance must be weights, resample or none, got {balance!r}")
    n_classes = len(metadata.labels)
    counts = _class_counts(data_dir, metadata=metadata, split=split, max_segments_per_class=max_segments_per_class)
    base = _labeled(segments(data_dir, metadata=metadata, split=split, shuffle_files=True, seed=seed), n_classes)
    ds = _shuffled_stream(base, counts=counts, balance=balance, max_segments_per_class=max_segments_per_class,
                          cache=cache, shuffle_buffer=shuffle_buffer, seed=seed)
    weight_table = tf.constant(_sample_weights(metadata, split=split, counts=counts, balance=balance,
                                               max_segments_per_class=max_segments_per_class), tf.float32)
    augment = augment or Augment.none()
    if augment.pitch_shift > 0 and not augment.band_hz:
        from transforms.spectrogram import mel_band_centres

        augment = dataclasses.replace(augment, band_hz=tuple(mel_band_centres(metadata.spectrogram)))

    def finish(mel, label):
        y = tf.one_hot(label, n_classes, dtype=tf.float32)
        w = tf.gather(weight_table, label)
        return augment_batch(mel, y, w, augment=augment, seed=seed)

    ds = ds.batch(batch_size, drop_remainder=True).map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    steps = max(1, int(counts.sum()) // batch_size)
    return ds.prefetch(tf.data.AUTOTUNE), steps


def _class_counts(data_dir: str, *, metadata: DatasetMetadata, split: str,
                  max_segments_per_class: int | None) -> np.ndarray:
    """Segments per label (vocabulary order) that one pass over ``split`` uses, capped per class.

    From ``metadata.json``'s counts, or counted in the shards when it has none.

    Raises
    ------
    ValueError
        When no segment of ``split`` has a label.
    """
    by_label = metadata.counts.get(split, {}).get("by_label", {})
    counts = np.array([by_label.get(lab, {}).get("segments", 0) for lab in metadata.labels], np.int64)
    if counts.sum() == 0:
        counts = _count_labels(data_dir, metadata=metadata, split=split)
    if max_segments_per_class:
        counts = np.minimum(counts, max_segments_per_class)
    present = np.flatnonzero(counts > 0)
    if len(present) == 0:
        raise ValueError(f"the {split!r} split of {data_dir} has no labeled segments")
    if len(present) < 2:
        logger.warning("only one class in the %s split: the model cannot learn to discriminate", split)
    return counts


def _shuffled_stream(base: Any, *, counts: np.ndarray, balance: str, max_segments_per_class: int | None,
                     cache: bool, shuffle_buffer: int, seed: int | None) -> Any:
    """``(mel, label)`` segments -> an endless shuffled stream; one stream per class, drawn with equal
    probability (``resample``) or in proportion to ``counts`` (when capped per class)."""
    import tensorflow as tf

    present = np.flatnonzero(counts > 0)
    total = int(counts.sum())
    if not (balance == "resample" or max_segments_per_class):
        if cache:
            base = base.cache()
        return base.shuffle(max(1, min(total, shuffle_buffer)), seed=seed, reshuffle_each_iteration=True).repeat()
    per_class = []
    for c in present:
        part = base.filter(lambda x, y, c=int(c): tf.equal(y, c))
        if max_segments_per_class:
            part = part.take(max_segments_per_class)
        if cache:
            part = part.cache()
        per_class.append(part.shuffle(max(1, min(int(counts[c]), shuffle_buffer)), seed=seed).repeat())
    if balance == "resample":
        probs = [1.0 / len(present)] * len(present)
    else:
        probs = (counts[present] / total).tolist()
    return tf.data.Dataset.sample_from_datasets(per_class, weights=probs, seed=seed)


def _sample_weights(metadata: DatasetMetadata, *, split: str, counts: np.ndarray, balance: str,
                    max_segments_per_class: int | None) -> np.ndarray:
    """Sample weight per label, float32 ``(n_labels,)``: class weights for ``balance="weights"`` (of the
    capped counts when capped per class), else ones."""
    n_classes = len(metadata.labels)
    if balance != "weights":
        return np.ones(n_classes, np.float32)
    if not max_segments_per_class:
        return class_weights(metadata, split=split)
    present = np.flatnonzero(counts > 0)
    w = np.zeros(n_classes, np.float32)
    w[present] = int(counts.sum()) / (len(present) * counts[present])
    return w


def segment_datasets(cfg: Any, *, metadata: DatasetMetadata, has_validation: bool) -> tuple[Any, int, Any]:
    """The training batches, steps per epoch and validation batches that a training run asks for.

    Parameters
    ----------
    cfg : training.train.TrainConfig
        Read: ``data``, ``batch_size``, ``balance``, ``max_segments_per_class``, ``augment``,
        ``shuffle_buffer``, ``cache``, ``seed``.
    metadata : DatasetMetadata
        The data's ``metadata.json``.
    has_validation : bool
        The data has a non-empty validation split.

    Returns
    -------
    (train, steps_per_epoch, validation)
        :func:`training_dataset`'s batches and steps, and :func:`eval_dataset`'s validation
        batches (4x the batch size; ``None`` without a validation split).
    """
    train_ds, steps = training_dataset(
        cfg.data, metadata=metadata, batch_size=cfg.batch_size, balance=cfg.balance,
        max_segments_per_class=cfg.max_segments_per_class, augment=cfg.augment,
        shuffle_buffer=cfg.shuffle_buffer, cache=cfg.cache, seed=cfg.seed,
    )
    validation = (
        eval_dataset(cfg.data, metadata=metadata, split="validation", batch_size=cfg.batch_size * 4, cache=cfg.cache)
        if has_validation else None
    )
    return train_ds, steps, validation


def augment_batch(mel: Any, y: Any, w: Any, *, augment: Augment, seed: int | None = None) -> tuple[Any, Any, Any]:
    """Apply ``augment`` to one training batch: pitch shift, time stretch, time shift, gain,
    SpecAugment masks, then mixup.

    Parameters
    ----------
    mel : tf.Tensor, float32, shape (batch, n_mels, n_frames)
        Log-mel segments.
    y : tf.Tensor, float32, shape (batch, n_labels)
        One-hot (or soft) targets.
    w : tf.Tensor, float32, shape (batch,)
        Sample weights.
    augment : Augment
        What to apply.
    seed : int, optional
        Op-level seed of the random draws.

    Returns
    -------
    (mel, y, w)
        Same shapes; ``y`` and ``w`` change only under mixup.
    """
    if augment.pitch_shift > 0:
        if not augment.band_hz:
            raise ValueError("Augment.pitch_shift needs band_hz, the centre frequency of each mel band")
        sources = pitch_shift_sources(np.asarray(augment.band_hz), max_semitones=augment.pitch_shift)
        mel = _pitch_shift(mel, sources, seed)
    if augment.time_stretch > 0:
        if augment.time_stretch >= 1:
            raise ValueError(f"Augment.time_stretch must be in [0, 1), got {augment.time_stretch}")
        mel = _time_stretch(mel, augment.time_stretch, seed)
    if augment.time_shift:
        mel = _time_shift(mel, seed)
    if augment.gain_db > 0:
        mel = _gain(mel, augment.gain_db, seed)
    if augment.freq_masks or augment.time_masks:
        mel = _spec_augment(mel, augment, seed)
    if augment.mixup_alpha > 0:
        mel, y, w = _mixup(mel, y, w, augment.mixup_alpha, seed)
    return mel, y, w


def _count_labels(data_dir: str, *, metadata: DatasetMetadata, split: str) -> np.ndarray:
    """Segments per label index by reading the split (when metadata.json has no counts)."""
    counts = np.zeros(len(metadata.labels), np.int64)
    for e in segments(data_dir, metadata=metadata, split=split).batch(1024):
        idx = e[spec.FEATURE_LABEL_INDEX].numpy()
        counts += np.bincount(idx[idx >= 0], minlength=len(counts))
    return counts


def eval_dataset(
    data_dir: str, *, metadata: DatasetMetadata, split: str, batch_size: int, cache: bool = False
) -> Any:
    """Validation batches ``(mel, one-hot y)`` of labeled segments in shard order, no augmentation."""
    import tensorflow as tf

    n_classes = len(metadata.labels)
    ds = _labeled(segments(data_dir, metadata=metadata, split=split), n_classes)
    ds = ds.map(lambda x, y: (x, tf.one_hot(y, n_classes, dtype=tf.float32)))
    if cache:
        ds = ds.cache()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def mel_dataset(
    data_dir: str, *, metadata: DatasetMetadata, split: str, batch_size: int, limit: int | None = None
) -> Any:
    """Batches of mel arrays alone (for adapting the input normalisation)."""
    import tensorflow as tf

    ds = segments(data_dir, metadata=metadata, split=split, shuffle_files=True, seed=0)
    ds = ds.map(lambda e: e[spec.FEATURE_MEL])
    if limit:
        ds = ds.take(limit)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_split(data_dir: str, *, metadata: DatasetMetadata, split: str) -> dict[str, np.ndarray]:
    """A whole split in memory, in shard order (for evaluation and tests).

    Returns
    -------
    dict
        ``mel`` float32 ``(n, n_mels, n_frames)``, ``label_index`` int64 ``(n,)``, ``track_id``
        str ``(n,)``, ``segment_index`` int64 ``(n,)``.
    """
    parts: dict[str, list[np.ndarray]] = {k: [] for k in KEPT}
    for batch in segments(data_dir, metadata=metadata, split=split).batch(256):
        for k in KEPT:
            parts[k].append(batch[k].numpy())
    out = {k: (np.concatenate(v) if v else np.zeros((0,))) for k, v in parts.items()}
    if not parts[spec.FEATURE_MEL]:
        out[spec.FEATURE_MEL] = np.zeros((0, *metadata.spectrogram.mel_shape), np.float32)
    out[spec.FEATURE_TRACK_ID] = np.array(
        [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in out[spec.FEATURE_TRACK_ID]],
        dtype=object,
    )
    return out
