"""The label job's output: date partitions, their atomic replacement, and the index of labeled tracks.

Layout of an output dir::

    DIR/run_date=2026-11-29/part-00000-of-00002.parquet    label rows (or .jsonl)
    DIR/run_date=2026-11-29/_run.json                       run manifest, the partition's last file
    DIR/run_date=2026-11-29/_errors/dead_letters-00000-of-00001.jsonl
    DIR/_staging/run_date=2026-11-29/<run id>/...          a run in progress (or one that died)

A run writes everything into its staging folder and then *publishes* it: the staging folder takes
the place of ``run_date=...`` in one rename (on Linux, ``renameat2(RENAME_EXCHANGE)`` swaps it with
an existing partition atomically).  Readers (pyarrow datasets, pandas, DuckDB and Hive-style
engines) skip paths whose name starts with ``_`` or ``.``, so they see the old partition or the new
one, never a mix, and never a half-written run.  On object stores (``gs://``, ``s3://``) there is
no directory rename: publishing is a copy and a delete per object, so readers there should trust a
partition only once its ``_run.json`` is present (see the README, "label").

:class:`LabeledIndex` answers "was this track, with this fingerprint, already labeled by this model
version?" from the partitions before the run date, in 8 bytes per labeled row.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import datetime
import errno
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
from typing import Any, Iterable, Mapping, Sequence

import fsspec
import numpy as np
import pyarrow as pa

__all__ = [
    "FORMATS",
    "RUN_MANIFEST",
    "ERRORS_DIR",
    "STAGING_DIR",
    "PART_PREFIX",
    "LabeledIndex",
    "label_schema",
    "row_to_json",
    "parse_run_date",
    "partition_dir",
    "staging_dir",
    "list_partitions",
    "publish_partition",
    "remove_stale_staging",
    "remove_empty_staging",
    "count_rows",
    "read_labels",
    "join_uri",
]

logger = logging.getLogger(__name__)

#: Output formats and their file suffixes.
FORMATS = {"parquet": ".parquet", "jsonl": ".jsonl"}
RUN_MANIFEST = "_run.json"
ERRORS_DIR = "_errors"
STAGING_DIR = "_staging"
PART_PREFIX = "part"
_PARTITION = re.compile(r"^run_date=(\d{4}-\d{2}-\d{2})$")


def join_uri(root: str, *names: str) -> str:
    """``root/name/...`` for local paths and URLs alike."""
    return posixpath.join(root.rstrip("/"), *names)


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str, str]:
    fs, path = fsspec.core.url_to_fs(uri)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return fs, path, "file" if protocol in ("file", "local") else protocol


def parse_run_date(text: str) -> str:
    """Validate ``YYYY-MM-DD`` and return it unchanged (``ValueError`` with the bad value otherwise)."""
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except (TypeError, ValueError):
        raise ValueError(f"run date must be YYYY-MM-DD, got {text!r}") from None


def partition_dir(output_dir: str, run_date: str) -> str:
    """``DIR/run_date=YYYY-MM-DD``."""
    return join_uri(output_dir, f"run_date={run_date}")


def staging_dir(output_dir: str, run_date: str, run_id: str) -> str:
    """``DIR/_staging/run_date=YYYY-MM-DD/<run_id>``: where a run writes before it publishes."""
    return join_uri(output_dir, STAGING_DIR, f"run_date={run_date}", run_id)


# Schema ------------------------------------------------------------------------------------------
def label_schema(*, embeddings: bool = False) -> pa.Schema:
    """Arrow schema of one label row (Parquet output; JSON Lines carries the same fields).

    ``probabilities`` maps every genre of the model to its mean probability; ``top_k`` lists the
    most probable genres first; ``labeled_at`` is the run's start time (UTC), the same for every row
    of a run.  ``run_date`` is not a column: it is the partition key in the path.
    """
    fields = [
        pa.field("track_id", pa.string(), nullable=False),
        pa.field("uri", pa.string()),
        pa.field("fingerprint", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("labeled_at", pa.timestamp("ms", tz="UTC")),
        pa.field("genre", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("top_k", pa.list_(pa.struct([("genre", pa.string()), ("score", pa.float32())]))),
        pa.field("probabilities", pa.map_(pa.string(), pa.float32())),
        pa.field("n_segments", pa.int32()),
        pa.field("duration_seconds", pa.float32()),
    ]
    if embeddings:
        fields.append(pa.field("embedding", pa.list_(pa.float32())))
    return pa.schema(fields)


def row_to_json(row: Mapping[str, Any]) -> str:
    """One JSON Lines record: ``labeled_at`` as ISO 8601 UTC, ``probabilities`` as an object."""
    out = dict(row)
    at = out.get("labeled_at")
    if isinstance(at, datetime.datetime):
        out["labeled_at"] = at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(out, ensure_ascii=False)


# Partitions --------------------------------------------------------------------------------------
def list_partitions(output_dir: str) -> dict[str, str]:
    """Published partitions: ``{run_date: path}`` (staging and other ``_`` paths excluded)."""
    fs, path, _ = _fs(output_dir)
    if not fs.exists(path):
        return {}
    out = {}
    for entry in fs.ls(path, detail=True):
        name = posixpath.basename(entry["name"].rstrip("/"))
        m = _PARTITION.match(name)
        if m and entry.get("type") == "directory":
            out[m.group(1)] = entry["name"]
    return dict(sorted(out.items()))


def _part_files(fs: fsspec.AbstractFileSystem, partition: str) -> list[tuple[str, str]]:
    """``(path, format)`` of the part files directly in a partition folder."""
    files = []
    for p in sorted(fs.ls(partition, detail=False)):
        name = posixpath.basename(p)
        for fmt, suffix in FORMATS.items():
            if name.startswith(PART_PREFIX) and name.endswith(suffix):
                files.append((p, fmt))
    return files


_INDEX_COLUMNS = ("track_id", "fingerprint", "model_version")


def _read_index_columns(fs: fsspec.AbstractFileSystem, path: str, fmt: str) -> pa.Table:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as f:
            return pq.read_table(f, columns=list(_INDEX_COLUMNS))
    import pyarrow.json as pj

    schema = pa.schema([(c, pa.string()) for c in _INDEX_COLUMNS])
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    with fs.open(path, "rb") as f:
        data = f.read()
    if not data.strip():
        return schema.empty_table()
    return pj.read_json(pa.BufferReader(data), parse_options=parse)


def _key_hashes(track_ids: Iterable[str], fingerprints: Iterable[str]) -> np.ndarray:
    """64-bit BLAKE2b of ``track_id \\x1f fingerprint``, as uint64."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(f"{t}\x1f{fp}".encode(), digest_size=8).digest(), "little")
            for t, fp in zip(track_ids, fingerprints)
        ),
        dtype=np.uint64,
    )


@dataclasses.dataclass
class LabeledIndex:
    """The (track id, fingerprint) pairs a model version already labeled, as sorted 64-bit hashes.

    Attributes
    ----------
    model_version : str
    hashes : np.ndarray, uint64, shape (n,)
        Sorted, unique.  8 bytes per labeled track: 10 million tracks take 80 MB.  A false "already
        labeled" needs a 64-bit collision: about ``n / 2**64`` per lookup (5e-13 at 10 million).
    partitions : list of str
        Run dates that were read.
    """

    model_version: str
    hashes: np.ndarray
    partitions: list[str]

    def __len__(self) -> int:
        return int(self.hashes.size)

    def contains(self, track_id: str, fingerprint: str) -> bool:
        """Whether ``track_id`` with ``fingerprint`` was labeled by :attr:`model_version`."""
        if not fingerprint or self.hashes.size == 0:
            return False  # unknown fingerprint: never skip
        h = _key_hashes([track_id], [fingerprint])[0]
        i = int(np.searchsorted(self.hashes, h))
        return i < self.hashes.size and self.hashes[i] == h

    @classmethod
    def empty(cls, model_version: str) -> "LabeledIndex":
        return cls(model_version=model_version, hashes=np.zeros(0, np.uint64), partitions=[])

    @classmethod
    def load(cls, output_dir: str, *, model_version: str, before: str) -> "LabeledIndex":
        """Read the published partitions dated strictly before ``before``.

        Only the ``track_id``, ``fingerprint`` and ``model_version`` columns are read (Parquet
        column projection; JSON Lines parsed with an explicit three-column schema), one file at a
        time, keeping rows of ``model_version`` only.  Partitions dated on or after ``before`` are
        ignored, so rerunning a date sees the same history as its first run.

        Parameters
        ----------
        output_dir : str
            The label job's output dir (may not exist yet: empty index).
        model_version : str
            The model about to run.
        before : str
            The run date, ``YYYY-MM-DD``.
        """
        import pyarrow.compute as pc

        fs, _, _ = _fs(output_dir)
        chunks, dates = [], []
        for run_date, part in list_partitions(output_dir).items():
            if run_date >= before:
                continue
            dates.append(run_date)
            for path, fmt in _part_files(fs, part):
                table = _read_index_columns(fs, path, fmt)
                table = table.filter(pc.equal(table["model_version"], model_version))
                if table.num_rows:
                    chunks.append(
                        _key_hashes(table["track_id"].to_pylist(), table["fingerprint"].to_pylist())
                    )
        hashes = np.unique(np.concatenate(chunks)) if chunks else np.zeros(0, np.uint64)
        return cls(model_version=model_version, hashes=hashes, partitions=dates)


def count_rows(partition: str) -> int:
    """Rows in a partition's part files (Parquet footers only; JSON Lines counted by lines)."""
    fs, path, _ = _fs(partition)
    total = 0
    for file, fmt in _part_files(fs, path):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with fs.open(file, "rb") as f:
                total += pq.ParquetFile(f).metadata.num_rows
        else:
            with fs.open(file, "rb") as f:
                total += sum(1 for line in f if line.strip())
    return total


def read_labels(output_dir: str, *, run_date: str | None = None) -> pa.Table:
    """All published label rows as one Arrow table, with a ``run_date`` column.

    A convenience for tests and notebooks; at scale read the dataset with pyarrow, DuckDB or
    BigQuery directly (README, "Reading the labels").
    """
    import pyarrow.parquet as pq

    fs, _, _ = _fs(output_dir)
    tables = []
    for date, part in list_partitions(output_dir).items():
        if run_date is not None and date != run_date:
            continue
        for path, fmt in _part_files(fs, part):
            if fmt == "parquet":
                with fs.open(path, "rb") as f:
                    t = pq.read_table(f)
            else:
                import pandas as pd

                with fs.open(path, "rb") as f:
                    lines = [json.loads(line) for line in f if line.strip()]
                if not lines:
                    continue
                t = pa.Table.from_pandas(pd.DataFrame(lines), preserve_index=False)
            tables.append(t.append_column("run_date", pa.array([date] * t.num_rows, pa.string())))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")


# Publishing --------------------------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two local paths with ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, f"renameat2({a!r}, {b!r}, RENAME_EXCHANGE): {os.strerror(err)}")


def publish_partition(staging: str, partition: str) -> str:
    """Move a finished staging folder into place as ``partition``, replacing any previous one.

    Local disks: a plain rename when there is no previous partition; otherwise an atomic exchange
    (``renameat2(RENAME_EXCHANGE)``, Linux) after which the old partition sits at ``staging`` and is
    deleted.  Where the exchange is unsupported, the old partition is first renamed to a ``_trash``
    name (readers briefly see no partition, never a mix).  Object stores: old objects are deleted,
    then the new ones copied (not atomic; see the module docstring).

    Returns
    -------
    str
        ``partition``.
    """
    fs, src, protocol = _fs(staging)
    _, dst, _ = _fs(partition)
    if protocol == "file":
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.exists(dst):
            os.rename(src, dst)
        elif _exchange(src, dst):
            shutil.rmtree(src)
        else:
            trash = os.path.join(os.path.dirname(dst), f"_trash-{os.path.basename(dst)}-{os.getpid()}")
            os.rename(dst, trash)
            os.rename(src, dst)
            shutil.rmtree(trash)
        return partition
    if fs.exists(dst):
        fs.rm(dst, recursive=True)
    fs.mv(src, dst, recursive=True)
    return partition


def remove_stale_staging(output_dir: str, run_date: str, *, keep: Sequence[str] = ()) -> list[str]:
    """Delete staging folders left by earlier runs of ``run_date`` that died; returns them.

    Concurrent runs for the same date are not supported (one would delete the other's staging).
    """
    fs, parent, _ = _fs(join_uri(output_dir, STAGING_DIR, f"run_date={run_date}"))
    if not fs.exists(parent):
        return []
    removed = []
    for entry in fs.ls(parent, detail=False):
        if posixpath.basename(entry.rstrip("/")) in keep:
            continue
        fs.rm(entry, recursive=True)
        removed.append(entry)
    return removed


def remove_empty_staging(output_dir: str, run_date: str) -> None:
    """Remove ``_staging/run_date=...`` and ``_staging`` when a published run left them empty."""
    for folder in (join_uri(output_dir, STAGING_DIR, f"run_date={run_date}"), join_uri(output_dir, STAGING_DIR)):
        fs, path, _ = _fs(folder)
        try:
            if fs.exists(path) and not fs.ls(path, detail=False):
                fs.rmdir(path)
        except OSError as e:  # another run's staging appeared: leave it
            logger.debug("kept %s: %s", folder, e)
