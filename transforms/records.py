"""Segment rows and their two storage encodings: tf.train.Example (TFRecord) and Arrow (Parquet).

A *row* is a plain dict keyed by the feature names of :func:`transforms.spec.feature_schema`, with
``mel`` a float32 array of shape ``(n_mels, n_frames)``.  Both encodings store the mel flat, plus
its shape, and both decode back to the same row (tested).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa

from transforms import spec
from transforms.spec import SpectrogramParams

__all__ = [
    "make_rows",
    "encode_example",
    "decode_example",
    "tf_feature_description",
    "arrow_schema",
    "rows_to_table",
    "table_to_rows",
]


def make_rows(
    mels: np.ndarray,
    *,
    params: SpectrogramParams,
    track_id: str,
    uri: str,
    label: str,
    label_index: int,
    split: str,
    starts: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """One row per segment of one track.

    Parameters
    ----------
    mels : np.ndarray, float32, shape (n_segments, n_mels, n_frames)
        Log-mel segments of the track, in order.
    params : SpectrogramParams
        For the start times (``segment_hop_seconds``) unless ``starts`` is given.
    starts : iterable of int, optional
        Start sample of each segment at ``params.sample_rate``.
    """
    if starts is None:
        starts = [i * params.segment_hop_samples for i in range(len(mels))]
    return [
        {
            spec.FEATURE_MEL: np.asarray(m, dtype=np.float32),
            spec.FEATURE_MEL_SHAPE: list(m.shape),
            spec.FEATURE_TRACK_ID: track_id,
            spec.FEATURE_URI: uri,
            spec.FEATURE_SEGMENT_INDEX: i,
            spec.FEATURE_START_SECONDS: float(start) / params.sample_rate,
            spec.FEATURE_LABEL: label,
            spec.FEATURE_LABEL_INDEX: int(label_index),
            spec.FEATURE_SPLIT: split,
        }
        for i, (m, start) in enumerate(zip(mels, starts))
    ]


# TFRecord --------------------------------------------------------------------------------------
# tf.train.Example is written straight in protobuf wire format: importing TensorFlow for its
# generated classes costs seconds and about 0.5 GB per worker process, and filling a FloatList
# from numpy converts every value to a Python float (~10 ms per default segment); here the mel is
# one ``tobytes()``.  The messages (tensorflow/core/example/{example,feature}.proto):
#   Example  { Features features = 1; }
#   Features { map<string, Feature> feature = 1; }   (map entry: key = 1, value = 2)
#   Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
#                           Int64List int64_list = 3; } }
#   BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
#   Int64List { repeated int64 value = 1 [packed]; }
# Every field above is number 1 or 2 with wire type 2 (length-delimited); tags are single bytes.
_TAG_1, _TAG_2, _TAG_3 = b"\x0a", b"\x12", b"\x1a"


def _varint(n: int) -> bytes:
    """Protobuf base-128 varint; negative int64 as its 64-bit two's complement (10 bytes)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _bytes_feature(value: str) -> bytes:
    return _field(_TAG_1, _field(_TAG_1, value.encode("utf-8")))


def _float_feature(values: np.ndarray) -> bytes:
    packed = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _field(_TAG_2, _field(_TAG_1, packed) if packed else b"")


def _int64_feature(values: Iterable[int]) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(_TAG_3, _field(_TAG_1, packed) if packed else b"")


def encode_example(row: Mapping[str, Any]) -> bytes:
    """Serialise a row as a ``tf.train.Example`` (mel flattened row-major).

    The bytes are a valid ``tf.train.Example`` message, written without importing TensorFlow
    (tested against ``tf.io.parse_single_example`` and the protobuf classes).
    """
    features = {
        spec.FEATURE_MEL: _float_feature(np.asarray(row[spec.FEATURE_MEL], np.float32).ravel()),
        spec.FEATURE_MEL_SHAPE: _int64_feature(row[spec.FEATURE_MEL_SHAPE]),
        spec.FEATURE_TRACK_ID: _bytes_feature(row[spec.FEATURE_TRACK_ID]),
        spec.FEATURE_URI: _bytes_feature(row[spec.FEATURE_URI]),
        spec.FEATURE_SEGMENT_INDEX: _int64_feature([row[spec.FEATURE_SEGMENT_INDEX]]),
        spec.FEATURE_START_SECONDS: _float_feature(
            np.asarray([row[spec.FEATURE_START_SECONDS]], np.float32)
        ),
        spec.FEATURE_LABEL: _bytes_feature(row[spec.FEATURE_LABEL]),
        spec.FEATURE_LABEL_INDEX: _int64_feature([row[spec.FEATURE_LABEL_INDEX]]),
        spec.FEATURE_SPLIT: _bytes_feature(row[spec.FEATURE_SPLIT]),
    }
    entries = b"".join(
        _field(_TAG_1, _field(_TAG_1, key.encode("utf-8")) + _field(_TAG_2, feature))
        for key, feature in features.items()
    )
    return _field(_TAG_1, entries)


def decode_example(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_example`, in plain Python (no tf.data)."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(data)
    f = example.features.feature
    shape = tuple(f[spec.FEATURE_MEL_SHAPE].int64_list.value)
    return {
        spec.FEATURE_MEL: np.asarray(f[spec.FEATURE_MEL].float_list.value, np.float32).reshape(shape),
        spec.FEATURE_MEL_SHAPE: list(shape),
        spec.FEATURE_TRACK_ID: f[spec.FEATURE_TRACK_ID].bytes_list.value[0].decode("utf-8"),
        spec.FEATURE_URI: f[spec.FEATURE_URI].bytes_list.value[0].decode("utf-8"),
        spec.FEATURE_SEGMENT_INDEX: int(f[spec.FEATURE_SEGMENT_INDEX].int64_list.value[0]),
        spec.FEATURE_START_SECONDS: float(f[spec.FEATURE_START_SECONDS].float_list.value[0]),
        spec.FEATURE_LABEL: f[spec.FEATURE_LABEL].bytes_list.value[0].decode("utf-8"),
        spec.FEATURE_LABEL_INDEX: int(f[spec.FEATURE_LABEL_INDEX].int64_list.value[0]),
        spec.FEATURE_SPLIT: f[spec.FEATURE_SPLIT].bytes_list.value[0].decode("utf-8"),
    }


def tf_feature_description(params: SpectrogramParams) -> dict[str, Any]:
    """``tf.io.parse_single_example`` feature spec for the schema (mel parsed as a fixed shape)."""
    import tensorflow as tf

    dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    description = {}
    for feat in spec.feature_schema(params):
        shape = list(feat.shape)
        if feat.name == spec.FEATURE_MEL:
            shape = [int(np.prod(feat.shape))]
        description[feat.name] = tf.io.FixedLenFeature(shape, dtypes[feat.dtype])
    return description


# Parquet ---------------------------------------------------------------------------------------
_ARROW_TYPES = {"float32": pa.float32(), "int64": pa.int64(), "string": pa.string()}


def arrow_schema(params: SpectrogramParams) -> pa.Schema:
    """Arrow schema of a Parquet shard: ``mel`` is ``fixed_size_list<float32>[n_mels*n_frames]``."""
    fields = []
    for feat in spec.feature_schema(params):
        if feat.name == spec.FEATURE_MEL:
            typ = pa.list_(pa.float32(), int(np.prod(feat.shape)))
        elif feat.shape:
            typ = pa.list_(_ARROW_TYPES[feat.dtype], int(np.prod(feat.shape)))
        else:
            typ = _ARROW_TYPES[feat.dtype]
        fields.append(pa.field(feat.name, typ, nullable=False))
    metadata = {b"genreflow.mel_shape": ",".join(map(str, params.mel_shape)).encode()}
    return pa.schema(fields, metadata=metadata)


def rows_to_table(rows: list[Mapping[str, Any]], *, params: SpectrogramParams) -> pa.Table:
    """Arrow table of rows, mel stored flat (zero-copy from one stacked float32 buffer)."""
    schema = arrow_schema(params)
    size = int(np.prod(params.mel_shape))
    flat = np.stack([np.asarray(r[spec.FEATURE_MEL], np.float32).reshape(-1) for r in rows]) if rows else np.zeros((0, size), np.float32)
    columns = []
    for field in schema:
        if field.name == spec.FEATURE_MEL:
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), size))
        elif field.name == spec.FEATURE_MEL_SHAPE:
            values = np.asarray([r[field.name] for r in rows], np.int64).reshape(-1)
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(values), 2))
        else:
            columns.append(pa.array([r[field.name] for r in rows], type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def table_to_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Inverse of :func:`rows_to_table`: mel reshaped to its stored shape."""
    data = table.to_pydict()
    rows = []
    for i in range(table.num_rows):
        row = {name: data[name][i] for name in table.column_names}
        shape = tuple(row[spec.FEATURE_MEL_SHAPE])
        row[spec.FEATURE_MEL] = np.asarray(row[spec.FEATURE_MEL], np.float32).reshape(shape)
        rows.append(row)
    return rows
