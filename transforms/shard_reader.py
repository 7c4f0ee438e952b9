"""Reading featurize shards back: the one reader of both formats outside ``tf.data``.

A featurize output's ``metadata.json`` lists its shards (:meth:`DatasetMetadata.shard_paths`);
each is a GZIP TFRecord file of ``tf.train.Example`` or a Parquet file (:mod:`transforms.shards`
writes them, :mod:`transforms.records` defines both encodings).  The label job's ``--features``
path, the trainer's Parquet input and the tests read them through here; the trainer's TFRecord
input parses in ``tf.data`` with :func:`transforms.records.tf_feature_description`, from the same
feature schema.  Everything streams: memory is one Parquet batch or one record at a time.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import fsspec

from transforms.metadata import read_metadata

__all__ = ["dataset_shards", "parquet_batches", "read_segment_rows", "read_dataset_rows"]

#: Rows per Parquet batch when reading rows.
ROW_BATCH = 256


def dataset_shards(data_dir: str) -> list[tuple[str, str]]:
    """``(shard URI, format)`` of every shard a featurize output's ``metadata.json`` lists."""
    md = read_metadata(data_dir)
    return [(path, md.format) for path in md.shard_paths(data_dir)]


def parquet_batches(uri: str, *, batch_size: int, columns: Sequence[str] | None = None) -> Iterator[Any]:
    """``pyarrow.RecordBatch`` es of one Parquet shard, in file order (any fsspec URI).

    Parameters
    ----------
    uri : str
        The shard.
    batch_size : int
        Rows per batch (the last one may hold fewer).
    columns : sequence of str, optional
        Read only these columns (all when omitted).
    """
    import pyarrow.parquet as pq

    with fsspec.open(uri, "rb") as f:
        yield from pq.ParquetFile(f).iter_batches(
            batch_size=batch_size, columns=list(columns) if columns is not None else None)


def read_segment_rows(uri: str, *, fmt: str) -> Iterator[dict[str, Any]]:
    """Segment rows of one shard, in file order, streaming.

    Rows are dicts keyed by the feature names (:func:`transforms.spec.feature_schema`), ``mel`` a
    float32 array of shape ``(n_mels, n_frames)``, as :func:`transforms.records.make_rows` built them.

    Parameters
    ----------
    uri : str
        The shard (local path or any URI fsspec, and for TFRecord ``tf.data``, reads).
    fmt : str
        ``"tfrecord"`` or ``"parquet"`` (``metadata.json``'s ``format``).
    """
    if fmt == "parquet":
        import pyarrow as pa

        from transforms.records import table_to_rows

        for batch in parquet_batches(uri, batch_size=ROW_BATCH):
            yield from table_to_rows(pa.Table.from_batches([batch]))
    elif fmt == "tfrecord":
        import tensorflow as tf

        from transforms.records import decode_example

        for record in tf.data.TFRecordDataset(uri, compression_type="GZIP"):
            yield decode_example(record.numpy())
    else:
        raise ValueError(f"unknown shard format {fmt!r}")


def read_dataset_rows(data_dir: str) -> Iterator[dict[str, Any]]:
    """Every segment row of a featurize output, shard after shard in ``metadata.json`` order."""
    for uri, fmt in dataset_shards(data_dir):
        yield from read_segment_rows(uri, fmt=fmt)
