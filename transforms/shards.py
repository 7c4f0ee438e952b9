"""Shard files: names, TFRecord (GZIP) and Parquet (zstd) writers, and dead-letter files.

Writers stream rows to any fsspec URI (local, ``gs://``, ``s3://``, ``memory://``), so one shard
never has to fit in memory; a shard with no rows is still a valid, readable file (a GZIP stream
of no records, or a Parquet file with the schema and zero rows).
"""

from __future__ import annotations

import gzip
import logging
import struct
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq

from transforms.storage import join_uri
from transforms.deadletters import DeadLetter
from transforms.sources import unit_hash
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
    "masked_crc32c",
    "TFRecordShardWriter",
    "ParquetShardWriter",
    "open_shard_writer",
    "write_dead_letters",
    "dead_letter_name",
    "is_dead_letter_file",
    "auto_shards",
    "GroupIntoShards",
    "WriteDeadLetters",
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
#: Dead letters per file: a file stays small enough to open in an editor.
DEAD_LETTERS_PER_FILE = 100_000


_DEAD_LETTER_PREFIX, _DEAD_LETTER_SUFFIX = "dead_letters-", ".jsonl"


def dead_letter_name(index: int, num_shards: int) -> str:
    """``dead_letters-00000-of-00001.jsonl``."""
    return f"{_DEAD_LETTER_PREFIX}{index:05d}-of-{num_shards:05d}{_DEAD_LETTER_SUFFIX}"


def is_dead_letter_file(name: str) -> bool:
    """Whether a file name is one that :func:`dead_letter_name` (or an earlier version) gave."""
    return name.startswith(_DEAD_LETTER_PREFIX) and name.endswith(_DEAD_LETTER_SUFFIX)


def write_dead_letters(uri: str, letters: Iterable[DeadLetter]) -> int:
    """Write dead letters as JSON Lines, sorted by URI (none writes an empty file); returns the count."""
    ordered = sorted(letters, key=lambda d: (d.uri, d.stage, d.reason))
    with fsspec.open(uri, "w", encoding="utf-8") as f:
        for letter in ordered:
            f.write(letter.to_json() + "\n")
    return len(ordered)


def auto_shards(count: int, *, per_shard: int, minimum: int = 0) -> int:
    """``ceil(count / per_shard)`` shards, at least ``minimum``: no cap, so a shard never grows."""
    return max(minimum, -(-count // per_shard))


def _shard_keys(group_count: tuple[str, int], *, num_shards: int, per_shard: int, minimum: int):
    group, count = group_count
    n = num_shards if num_shards > 0 and count > 0 else auto_shards(count, per_shard=per_shard, minimum=minimum)
    return [((group, i, n), None) for i in range(n)]


def _keyed(item: Any, plan: dict[str, int], *, group_fn, id_fn) -> tuple[tuple[str, int, int], Any]:
    group = group_fn(item)
    n = plan[group]
    return (group, int(unit_hash(id_fn(item)) * n), n), item


class GroupIntoShards(beam.PTransform):
    """Assign elements to shard files by a hash of their id, inside the pipeline.

    Output: one element per shard, ``((group, index, num_shards), [items])``, including empty
    shards, so a writer can give every file a final, deterministic name (a retried bundle writes
    the same file again).  ``num_shards`` per group is fixed or follows the group's size
    (:func:`auto_shards`), counted in the pipeline: no launcher plan, no cap.

    Parameters
    ----------
    group_fn : callable
        Element -> group name (for example its split); one set of shards per group.
    id_fn : callable
        Element -> the string whose hash picks its shard.
    num_shards : int
        Shards per non-empty group; 0 = ``ceil(n / per_shard)``.
    per_shard : int
        Target elements per shard when ``num_shards`` is 0.
    groups : sequence of str
        Groups that get at least ``minimum`` shards even when they have no element.
    minimum : int
        Fewest shards of a group listed in ``groups`` (1 makes an empty, readable file).
    """

    def __init__(self, *, group_fn=lambda _: "", id_fn, num_shards: int = 0, per_shard: int,
                 groups: Sequence[str] = (), minimum: int = 0) -> None:
        super().__init__()
        self._group_fn, self._id_fn = group_fn, id_fn
        self._num_shards, self._per_shard = num_shards, per_shard
        self._groups, self._minimum = list(groups), minimum

    def expand(self, items):
        counted = items | "CountGroup" >> beam.Map(lambda x, f=self._group_fn: (f(x), 1))
        if self._groups:
            zeros = items.pipeline | "Groups" >> beam.Create([(g, 0) for g in self._groups])
            counted = (counted, zeros) | "WithGroups" >> beam.Flatten()
        sizes = counted | "Sizes" >> beam.CombinePerKey(sum)
        keys = sizes | "ShardKeys" >> beam.FlatMap(
            _shard_keys, num_shards=self._num_shards, per_shard=self._per_shard, minimum=self._minimum)
        plan = beam.pvalue.AsDict(keys | "PlanEntry" >> beam.Map(lambda kv: (kv[0][0], kv[0][2])) | "OnePerGroup" >> beam.Distinct())
        keyed = items | "ToShard" >> beam.Map(_keyed, plan, group_fn=self._group_fn, id_fn=self._id_fn)
        return (
            (keyed, keys)
            | "WithEmptyShards" >> beam.Flatten()
            | "GroupShard" >> beam.GroupByKey()
            | "DropMarkers" >> beam.MapTuple(lambda key, values: (key, [v for v in values if v is not None]))
        )


def _write_dead_letter_shard(shard: tuple[tuple[str, int, int], list[DeadLetter]], folder: str) -> dict[str, Any]:
    (_, index, n), letters = shard
    name = dead_letter_name(index, n)
    return {"file": name, "count": write_dead_letters(join_uri(folder, name), letters)}


class WriteDeadLetters(beam.PTransform):
    """PCollection of :class:`DeadLetter` -> ``FOLDER/dead_letters-0000i-of-0000N.jsonl``.

    Written by the pipeline as sharded JSON Lines (:data:`DEAD_LETTERS_PER_FILE` per file), through
    fsspec; there is always at least one file, empty when nothing failed, so its presence tells a
    reader the job got that far.  Returns one ``{"file": name, "count": n}`` per file.

    Parameters
    ----------
    folder : str
        Folder for the files (any fsspec URI).
    """

    def __init__(self, folder: str) -> None:
        super().__init__()
        self._folder = folder

    def expand(self, letters):
        return (
            letters
            | "ShardLetters" >> GroupIntoShards(id_fn=lambda d: f"{d.uri}|{d.stage}|{d.reason}",
                                                per_shard=DEAD_LETTERS_PER_FILE, groups=[""], minimum=1)
            | "WriteLetters" >> beam.Map(_write_dead_letter_shard, self._folder)
        )

