"""A tiny featurize-style dataset for the trainer tests, written without Beam.

Rows come from :func:`transforms.records.make_rows` and are stored exactly as the featurize job
stores them: ``DIR/<split>-0000i-of-0000n.tfrecord.gz`` (GZIP TFRecord of tf.train.Example) or
``.parquet`` (zstd), then ``DIR/metadata.json`` last.  Each label owns a band of mel bins that is
louder than the rest, so a CNN can learn the labels from a handful of segments.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from transforms import records
from transforms.metadata import DatasetMetadata, write_metadata
from transforms.spec import SpectrogramParams

#: 16 mel bands x 16 frames per segment: tiny, fast to train on.
TINY_PARAMS = SpectrogramParams(sample_rate=8000, n_fft=512, hop_length=256, n_mels=16, segment_seconds=0.5, segment_hop_seconds=0.5)


def synthetic_mels(label_index: int, *, n_labels: int, n_segments: int, params: SpectrogramParams, rng: np.random.Generator) -> np.ndarray:
    """Log-mel-like segments ``(n_segments, n_mels, n_frames)`` in dB with a label-specific loud band."""
    n_mels, n_frames = params.mel_shape
    mels = rng.normal(-50.0, 6.0, size=(n_segments, n_mels, n_frames)).astype(np.float32)
    width = max(1, n_mels // n_labels)
    lo = label_index * width
    mels[:, lo : lo + width, :] += 25.0 + rng.normal(0, 3.0, size=(n_segments, 1, n_frames)).astype(np.float32)
    return mels


def make_split_rows(
    *,
    labels: Sequence[str],
    split: str,
    tracks_per_label: Sequence[int] | int,
    segments_per_track: int,
    params: SpectrogramParams,
    seed: int,
) -> list[dict]:
    """Rows of one split: ``tracks_per_label`` tracks (per label, or one count for all) of segments."""
    rng = np.random.default_rng(seed)
    if isinstance(tracks_per_label, int):
        tracks_per_label = [tracks_per_label] * len(labels)
    rows = []
    for li, (label, n_tracks) in enumerate(zip(labels, tracks_per_label)):
        for t in range(n_tracks):
            mels = synthetic_mels(li, n_labels=len(labels), n_segments=segments_per_track, params=params, rng=rng)
            track = f"{split}-{label}-{t:03d}"
            rows += records.make_rows(
                mels, params=params, track_id=track, uri=f"file:///synthetic/{label}/{track}.wav",
                label=label, label_index=li, split=split,
            )
    return rows


def write_shards(out_dir: str, rows: list[dict], *, split: str, fmt: str, n_shards: int, params: SpectrogramParams) -> list[str]:
    """Write ``rows`` round-robin into ``n_shards`` files; returns the file names."""
    names = []
    ext = "tfrecord.gz" if fmt == "tfrecord" else "parquet"
    for i in range(n_shards):
        name = f"{split}-{i:05d}-of-{n_shards:05d}.{ext}"
        part = rows[i::n_shards]
        path = os.path.join(out_dir, name)
        if fmt == "tfrecord":
            import tensorflow as tf

            with tf.io.TFRecordWriter(path, options="GZIP") as w:
                for row in part:
                    w.write(records.encode_example(row))
        else:
            import pyarrow.parquet as pq

            pq.write_table(records.rows_to_table(part, params=params), path, compression="zstd")
        names.append(name)
    return names


def _counts(rows: list[dict], labels: Sequence[str], params: SpectrogramParams) -> dict:
    by_label = {}
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        by_label[label] = {
            "tracks": len({r["track_id"] for r in mine}),
            "segments": len(mine),
            "seconds": len(mine) * params.segment_seconds,
        }
    return {
        "tracks": len({r["track_id"] for r in rows}),
        "segments": len(rows),
        "seconds": len(rows) * params.segment_seconds,
        "by_label": by_label,
    }


def write_dataset(
    out_dir: str,
    *,
    fmt: str = "tfrecord",
    params: SpectrogramParams = TINY_PARAMS,
    labels: Sequence[str] = ("blues", "jazz", "rock"),
    tracks: dict[str, Sequence[int] | int] | None = None,
    segments_per_track: int = 4,
    n_shards: int = 2,
    seed: int = 0,
) -> DatasetMetadata:
    """Write a featurize-layout dataset and its metadata.json; returns the metadata.

    Parameters
    ----------
    tracks : dict, optional
        Tracks per label for each split (default ``{"train": 6, "validation": 2, "test": 3}``);
        a split with 0 tracks gets no shards.
    """
    tracks = tracks if tracks is not None else {"train": 6, "validation": 2, "test": 3}
    labels = sorted(labels)
    os.makedirs(out_dir, exist_ok=True)
    shards, counts = {}, {}
    for s, (split, per_label) in enumerate(tracks.items()):
        rows = make_split_rows(
            labels=labels, split=split, tracks_per_label=per_label,
            segments_per_track=segments_per_track, params=params, seed=seed * 100 + s,
        )
        if not rows:
            continue
        shards[split] = write_shards(out_dir, rows, split=split, fmt=fmt, n_shards=n_shards, params=params)
        counts[split] = _counts(rows, labels, params)
    n_tracks = sum(c["tracks"] for c in counts.values())
    metadata = DatasetMetadata(
        spectrogram=params, labels=list(labels), format=fmt, shards=shards, counts=counts,
        inputs={"matched": n_tracks, "featurized": n_tracks, "failed": 0}, failures={},
    )
    write_metadata(out_dir, metadata)
    return metadata
