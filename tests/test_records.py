"""Segment rows: tf.train.Example and Parquet encodings, read back with independent readers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms import spec
from transforms.records import (
    arrow_schema,
    decode_example,
    encode_example,
    make_rows,
    rows_to_table,
    table_to_rows,
    tf_feature_description,
)
from transforms.spec import SpectrogramParams, feature_schema

# Small mel shape keeps the tests fast: 16 mels x (1 + 11025 // 1024) = 11 frames.
PARAMS = SpectrogramParams(n_mels=16, n_fft=1024, hop_length=1024, segment_seconds=0.5,
                           segment_hop_seconds=0.25)


def sample_rows(n_segments: int = 3, *, track_id: str = "blues/a.wav", label: str = "blues"):
    rng = np.random.default_rng(n_segments)
    mels = rng.uniform(-80, 20, size=(n_segments,) + PARAMS.mel_shape).astype(np.float32)
    mels[0, 0, 0] = np.float32(-1e-38)  # subnormal-ish value survives both encodings
    return mels, make_rows(
        mels, params=PARAMS, track_id=track_id, uri=f"gs://bucket/{track_id}", label=label,
        label_index=2, split="validation",
    )


def assert_rows_equal(a, b):
    assert set(a) == set(b)
    for key in a:
        if key == spec.FEATURE_MEL:
            assert b[key].dtype == np.float32 and b[key].shape == a[key].shape
            np.testing.assert_array_equal(b[key], a[key])
        elif key == spec.FEATURE_START_SECONDS:
            assert b[key] == pytest.approx(a[key], rel=1e-7)  # stored as float32
        elif key == spec.FEATURE_MEL_SHAPE:
            assert list(b[key]) == list(a[key])
        else:
            assert b[key] == a[key], key


def assert_same_layout(got: pa.Schema, want: pa.Schema) -> None:
    """Field names, nullability, types and sizes equal; Parquet renames list children to
    ``element`` (compliant nested types), so those names are not compared."""
    assert got.names == want.names
    for g, w in zip(got, want):
        assert g.nullable == w.nullable, g.name
        if pa.types.is_fixed_size_list(w.type):
            assert pa.types.is_fixed_size_list(g.type), g.name
            assert (g.type.list_size, g.type.value_type) == (w.type.list_size, w.type.value_type)
        else:
            assert g.type == w.type, g.name
    assert got.metadata[b"genreflow.mel_shape"] == want.metadata[b"genreflow.mel_shape"]


def test_make_rows():
    mels, rows = sample_rows(4)
    assert [r[spec.FEATURE_SEGMENT_INDEX] for r in rows] == [0, 1, 2, 3]
    hop = PARAMS.segment_hop_samples / PARAMS.sample_rate
    starts = [r[spec.FEATURE_START_SECONDS] for r in rows]
    assert starts == pytest.approx([0, hop, 2 * hop, 3 * hop])
    assert {f.name for f in feature_schema(PARAMS)} == set(rows[0])
    assert rows[0][spec.FEATURE_MEL_SHAPE] == list(PARAMS.mel_shape)
    explicit = make_rows(mels[:2], params=PARAMS, track_id="t", uri="u", label="", label_index=-1,
                         split="test", starts=[0, 22050])
    assert [r[spec.FEATURE_START_SECONDS] for r in explicit] == [0.0, 1.0]
    assert explicit[1][spec.FEATURE_LABEL_INDEX] == spec.UNLABELED_INDEX


def test_example_round_trip():
    _, rows = sample_rows()
    for row in rows:
        assert_rows_equal(row, decode_example(encode_example(row)))


def protobuf_example(row):
    """The same row built with TensorFlow's generated protobuf classes (the reference)."""
    from tensorflow.core.example import example_pb2, feature_pb2

    def b(v):
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[v.encode()]))

    def i(v):
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=list(v)))

    def f(v):
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=list(v)))

    feature = {
        spec.FEATURE_MEL: f(np.asarray(row[spec.FEATURE_MEL], np.float32).ravel().tolist()),
        spec.FEATURE_MEL_SHAPE: i(row[spec.FEATURE_MEL_SHAPE]),
        spec.FEATURE_TRACK_ID: b(row[spec.FEATURE_TRACK_ID]),
        spec.FEATURE_URI: b(row[spec.FEATURE_URI]),
        spec.FEATURE_SEGMENT_INDEX: i([row[spec.FEATURE_SEGMENT_INDEX]]),
        spec.FEATURE_START_SECONDS: f([row[spec.FEATURE_START_SECONDS]]),
        spec.FEATURE_LABEL: b(row[spec.FEATURE_LABEL]),
        spec.FEATURE_LABEL_INDEX: i([row[spec.FEATURE_LABEL_INDEX]]),
        spec.FEATURE_SPLIT: b(row[spec.FEATURE_SPLIT]),
    }
    return example_pb2.Example(features=feature_pb2.Features(feature=feature))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {spec.FEATURE_LABEL_INDEX: -1, spec.FEATURE_LABEL: ""},
        {spec.FEATURE_SEGMENT_INDEX: 300, spec.FEATURE_LABEL_INDEX: 2**40},
        {spec.FEATURE_SEGMENT_INDEX: 127, spec.FEATURE_LABEL_INDEX: 128},
        {spec.FEATURE_TRACK_ID: "x" * 200, spec.FEATURE_URI: "ü" * 70000},  # multi-byte lengths
        {spec.FEATURE_START_SECONDS: 1234.5},
    ],
)
def test_example_bytes_parse_as_the_protobuf_message(overrides):
    from tensorflow.core.example import example_pb2

    _, rows = sample_rows(1)
    row = {**rows[0], **overrides}
    parsed = example_pb2.Example.FromString(encode_example(row))
    assert parsed == protobuf_example(row)


def test_encode_example_does_not_import_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from transforms.records import encode_example, make_rows\n"
        "from transforms.spec import SpectrogramParams\n"
        "p = SpectrogramParams()\n"
        "rows = make_rows(np.zeros((1,) + p.mel_shape, np.float32), params=p, track_id='t',"
        " uri='u', label='l', label_index=0, split='train')\n"
        "assert encode_example(rows[0])\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True).stdout.strip()
    assert out == "False"


def test_example_round_trip_unicode_and_empty_strings():
    _, rows = sample_rows(1, track_id="Björk – Jóga/01 ♪.flac", label="")
    back = decode_example(encode_example(rows[0]))
    assert back[spec.FEATURE_TRACK_ID] == "Björk – Jóga/01 ♪.flac"
    assert back[spec.FEATURE_LABEL] == ""


def test_example_parsed_by_tensorflow():
    """tf.io.parse_single_example with tf_feature_description reads what encode_example wrote."""
    import tensorflow as tf

    mels, rows = sample_rows()
    description = tf_feature_description(PARAMS)
    assert set(description) == {f.name for f in feature_schema(PARAMS)}
    for mel, row in zip(mels, rows):
        parsed = tf.io.parse_single_example(encode_example(row), description)
        got = tf.reshape(parsed[spec.FEATURE_MEL], parsed[spec.FEATURE_MEL_SHAPE]).numpy()
        assert parsed[spec.FEATURE_MEL].dtype == tf.float32
        np.testing.assert_array_equal(got, mel)
        assert parsed[spec.FEATURE_TRACK_ID].numpy().decode() == row[spec.FEATURE_TRACK_ID]
        assert parsed[spec.FEATURE_URI].numpy().decode() == row[spec.FEATURE_URI]
        assert parsed[spec.FEATURE_LABEL].numpy().decode() == "blues"
        assert parsed[spec.FEATURE_SPLIT].numpy().decode() == "validation"
        assert int(parsed[spec.FEATURE_LABEL_INDEX]) == 2
        assert int(parsed[spec.FEATURE_SEGMENT_INDEX]) == row[spec.FEATURE_SEGMENT_INDEX]
        assert float(parsed[spec.FEATURE_START_SECONDS]) == pytest.approx(
            row[spec.FEATURE_START_SECONDS], rel=1e-7
        )


def test_example_batch_through_tf_data(tmp_path):
    """A GZIP TFRecord file of encoded rows, read with tf.data and parsed in a batch."""
    import tensorflow as tf

    mels, rows = sample_rows(5)
    path = str(tmp_path / "train-00000-of-00001.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            writer.write(encode_example(row))
    ds = tf.data.TFRecordDataset(path, compression_type="GZIP").batch(5)
    batch = tf.io.parse_example(next(iter(ds)), tf_feature_description(PARAMS))
    got = batch[spec.FEATURE_MEL].numpy().reshape((5,) + PARAMS.mel_shape)
    np.testing.assert_array_equal(got, mels)
    assert batch[spec.FEATURE_SEGMENT_INDEX].numpy().tolist() == [0, 1, 2, 3, 4]


def test_parquet_and_tfrecord_give_each_feature_the_same_type_and_size(tmp_path):
    """The one feature schema, stored both ways, read back by independent readers (pyarrow's
    Parquet reader and ``tf.io.parse_single_example``): every feature has the dtype TensorFlow
    makes of the schema's dtype name, as many values as its shape says and the same values."""
    import tensorflow as tf

    mels, rows = sample_rows(2)
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(rows_to_table(rows, params=PARAMS), path)
    schema = pq.read_schema(path)
    table = pq.read_table(path)
    parsed = [tf.io.parse_single_example(encode_example(row), tf_feature_description(PARAMS)) for row in rows]

    features = feature_schema(PARAMS)
    assert schema.names == [f.name for f in features]
    assert schema.metadata[b"genreflow.mel_shape"] == b"16,11"
    for feat in features:
        field, want = schema.field(feat.name), tf.as_dtype(feat.dtype)
        assert not field.nullable, feat.name
        column = table.column(feat.name).combine_chunks()
        size = int(np.prod(feat.shape))
        assert pa.types.is_fixed_size_list(field.type) == bool(feat.shape), feat.name
        if feat.shape:
            assert field.type.list_size == size, feat.name
            column = column.flatten()
        for i, example in enumerate(parsed):
            tf_values = example[feat.name]
            assert tf_values.dtype == want, feat.name
            assert tf_values.shape.num_elements() == size, feat.name
            arrow_values = column.slice(i * size, size).to_numpy(zero_copy_only=False)
            if want == tf.string:
                assert pa.types.is_string(field.type), feat.name
                assert [v.decode() for v in np.ravel(tf_values.numpy())] == list(arrow_values), feat.name
            else:
                assert arrow_values.dtype == want.as_numpy_dtype, feat.name
                np.testing.assert_array_equal(arrow_values, np.ravel(tf_values.numpy()), err_msg=feat.name)
    np.testing.assert_array_equal(
        table.column(spec.FEATURE_MEL).combine_chunks().flatten().to_numpy().reshape(mels.shape), mels
    )


def test_parquet_round_trip_through_a_real_file(tmp_path):
    mels_a, rows_a = sample_rows(3)
    mels_b, rows_b = sample_rows(2, track_id="jazz/b.mp3", label="jazz")
    rows = rows_a + rows_b
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(rows_to_table(rows, params=PARAMS), path, compression="zstd")

    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 5
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"ZSTD"}

    table = pq.read_table(path)
    assert_same_layout(table.schema, arrow_schema(PARAMS))
    # Independent of table_to_rows: the flat mel column straight from Arrow.
    flat = table.column(spec.FEATURE_MEL).combine_chunks().flatten().to_numpy()
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(flat.reshape((5,) + PARAMS.mel_shape),
                                  np.concatenate([mels_a, mels_b]))
    assert table.column(spec.FEATURE_LABEL).to_pylist() == ["blues"] * 3 + ["jazz"] * 2

    back = table_to_rows(table)
    assert len(back) == 5
    for a, b in zip(rows, back):
        assert_rows_equal(a, b)


def test_empty_table_has_the_schema(tmp_path):
    table = rows_to_table([], params=PARAMS)
    assert table.num_rows == 0 and table.schema.equals(arrow_schema(PARAMS))
    pq.write_table(table, tmp_path / "empty.parquet", compression="zstd")
    assert table_to_rows(pq.read_table(tmp_path / "empty.parquet")) == []


@pytest.mark.parametrize("fmt", ["tfrecord", "parquet"])
def test_shard_reader_gives_back_the_rows_the_shard_writers_wrote(tmp_path, fmt):
    """transforms.shard_reader reads what transforms.shards writes, in order, in both formats; one
    Parquet batch is a pyarrow RecordBatch of the asked columns (checked against pyarrow's reader)."""
    from transforms.shard_reader import parquet_batches, read_segment_rows
    from transforms.shards import PARQUET_ROWS_PER_GROUP, open_shard_writer, shard_name

    _, rows_a = sample_rows(3)
    n_many = PARQUET_ROWS_PER_GROUP + 5  # more than one row group
    _, rows_b = sample_rows(n_many, track_id="jazz/b.wav", label="jazz")
    path = str(tmp_path / shard_name("train", 0, 1, fmt=fmt))
    writer = open_shard_writer(path, fmt=fmt, params=PARAMS)
    writer.write(rows_a + rows_b)
    writer.close()
    back = list(read_segment_rows(path, fmt=fmt))
    assert len(back) == 3 + n_many
    for a, b in zip(rows_a + rows_b, back):
        assert_rows_equal(a, b)
    if fmt == "parquet":
        batches = list(parquet_batches(path, batch_size=10, columns=[spec.FEATURE_TRACK_ID]))
        assert [b.num_rows for b in batches][:2] == [10, 10] and sum(b.num_rows for b in batches) == len(back)
        assert [b.schema.names for b in batches][0] == [spec.FEATURE_TRACK_ID]
        ids = [t for b in batches for t in b.column(0).to_pylist()]
        assert ids == pq.read_table(path, columns=[spec.FEATURE_TRACK_ID]).column(0).to_pylist()
    with pytest.raises(ValueError, match="unknown shard format 'csv'"):
        list(read_segment_rows(path, fmt="csv"))
