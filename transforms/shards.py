"""Shard files: names, TFRecord (GZIP) and Parquet (zstd) writers, and dead-letter files.

Writers stream rows to any fsspec URI (local, ``gs://``, ``s3://``, ``memory://``), so one shard
never has to fit in memory; a shard with no rows is still a valid, readable file (a GZIP stream
of no records, or a Parquet file with the schema and zero rows).
"""

from __future__ import annotations

import gzip
import logging
import posixpath
import struct
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq

from transforms.deadletters import DeadLetter
from transforms.records import arrow_schema, encode_example, rows_to_table
from transforms.spec import (
    FEATURE_LABEL,
    FEATURE_MEL,
    FEATURE_SPLIT,
    FEATURE_TRACK_ID,
    FEATURE_URI,
    SpectrogramParams,
)

__all__ = [
    "FORMATS",
    "SHARD_SUFFIX",
    "ERRORS_DIR",
    "shard_name",
    "join_uri",
    "masked_crc32c",
    "TFRecordShardWriter",
    "ParquetShardWriter",
    "open_shard_writer",
    "write_dead_letters",
    "WriteDeadLetters",
    "remove_quietly",
]

logger = logging.getLogger(__name__)

FORMATS = ("tfrecord", "parquet")
SHARD_SUFFIX = {"tfrecord": ".tfrecord.gz", "parquet": ".parquet"}
ERRORS_DIR = "errors"
#: Rows buffered per Parquet row group (about 4 MB of mel at the default parameters).
PARQUET_ROWS_PER_GROUP = 64
#: GZIP level of TFRecord shards.  Level 0 keeps the standard GZIP container that tf.data reads (``compression_type="GZIP"``) but
#: stores the bytes: float32 log-mels barely compress (level 1 saved 11% of the size and was the
#: most expensive stage of featurize, 20-50 ms per 30 s clip; benchmarks/featurize_results.md).
GZIP_LEVEL = 0


def join_uri(root: str, *names: str) -> str:
    """Join path parts onto a local path or a URI with ``/``."""
    return posixpath.join(root.rstrip("/") or "/", *names)


def shard_name(split: str, index: int, num_shards: int, *, fmt: str) -> str:
    """``train-00003-of-00008.tfrecord.gz`` (or ``.parquet``)."""
    return f"{split}-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX[fmt]}"


# TFRecord --------------------------------------------------------------------------------------
def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    import google_crc32c  # C implementation; a dependency of apache-beam

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordShardWriter:
    """Write serialized records to a GZIP TFRecord file (what ``TFRecordDataset(..., "GZIP")`` reads).

    Parameters
    ----------
    uri : str
        Destination file.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.rows = 0
        self._raw = fsspec.open(uri, "wb").open()
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)

    def write_record(self, data: bytes) -> None:
        length = struct.pack("<Q", len(data))
        self._gz.write(length)
        self._gz.write(struct.pack("<I", masked_crc32c(length)))
        self._gz.write(data)
        self._gz.write(struct.pack("<I", masked_crc32c(data)))

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows (dicts as :func:`transforms.records.make_rows` builds) as tf.train.Example."""
        for row in rows:
            self.write_record(encode_example(row))
            self.rows += 1

    def close(self) -> None:
        self._gz.close()
        self._raw.close()

    def abort(self) -> None:
        """Close without caring about the content (the caller discards the file)."""
        try:
            self.close()
        except Exception:
            pass


# Parquet ---------------------------------------------------------------------------------------
class ParquetShardWriter:
    """Write rows to a zstd-compressed Parquet file with :func:`transforms.records.arrow_schema`.

    Parameters
    ----------
    uri : str
        Destination file.
    params : SpectrogramParams
        Fixes the mel column's size.
    """

    def __init__(self, uri: str, *, params: SpectrogramParams) -> None:
        self.uri = uri
        self.rows = 0
        self._params = params
        self._buffer: list[Mapping[str, Any]] = []
        self._raw = fsspec.open(uri, "wb").open()
        self._writer = pq.ParquetWriter(
            self._raw,
            arrow_schema(params),
            compression="zstd",
            compression_level=1,
            # Floats do not repeat: dictionary encoding only grows the file.  Byte-stream split
            # groups the bytes of each float so zstd finds the redundancy in exponents (a 30 s clip:
            # 952 KB -> 540 KB against 666 KB raw, 22 ms -> 4.4 ms).
            use_dictionary=[FEATURE_TRACK_ID, FEATURE_URI, FEATURE_LABEL, FEATURE_SPLIT],
            use_byte_stream_split=[f"{FEATURE_MEL}.list.element"],
        )

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(rows_to_table(self._buffer, params=self._params))
            self._buffer = []

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self._buffer.append(row)
            self.rows += 1
            if len(self._buffer) >= PARQUET_ROWS_PER_GROUP:
                self._flush()

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._raw.close()

    def abort(self) -> None:
        try:
            self._buffer = []
            self.close()
        except Exception:
            pass


def open_shard_writer(uri: str, *, fmt: str, params: SpectrogramParams) -> TFRecordShardWriter | ParquetShardWriter:
    """A streaming writer for one shard of format ``fmt`` (``"tfrecord"`` or ``"parquet"``)."""
    if fmt == "tfrecord":
        return TFRecordShardWriter(uri)
    if fmt == "parquet":
        return ParquetShardWriter(uri, params=params)
    raise ValueError(f"unknown shard format {fmt!r}; choose one of {FORMATS}")


# Dead letters ----------------------------------------------------------------------------------
def write_dead_letters(uri: str, letters: Sequence[DeadLetter]) -> str:
    """Write dead letters as JSON Lines, sorted by URI (an empty list writes an empty file)."""
    ordered = sorted(letters, key=lambda d: (d.uri, d.stage, d.reason))
    with fsspec.open(uri, "w", encoding="utf-8") as f:
        for letter in ordered:
            f.write(letter.to_json() + "\n")
    return uri


class WriteDeadLetters(beam.PTransform):
    """PCollection of :class:`DeadLetter` -> ``OUTPUT/errors/dead_letters-00000-of-00001.jsonl``.

    Dead letters are small (a few hundred bytes each), so they are gathered into one file, written
    through fsspec.  The file is written even when there are none, so its presence tells a reader
    the job got that far.  Returns a PCollection with one element: ``{"path": ..., "count": n}``.

    Parameters
    ----------
    output_dir : str
        Dataset or output folder (any fsspec URI); the file goes under ``errors/`` inside it.
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__()
        self._output_dir = output_dir

    def expand(self, letters):
        path = join_uri(self._output_dir, ERRORS_DIR, "dead_letters-00000-of-00001.jsonl")

        def _write(batch: list[DeadLetter]) -> dict[str, Any]:
            write_dead_letters(path, batch)
            return {"path": path, "count": len(batch)}

        return letters | "Gather" >> beam.combiners.ToList() | "Write" >> beam.Map(_write)


def remove_quietly(uri: str) -> None:
    """Delete a file or folder tree if it exists; failures are logged, not raised (cleanup only)."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception as e:  # cleanup is best effort; a staging name says what it is
        logger.warning("could not remove %s: %s", uri, e)
