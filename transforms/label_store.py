"""The label job's output: date partitions of immutable run folders, each committed by ``_run.json``.

Layout of an output dir (the protocol is :mod:`transforms.commit`'s)::

    DIR/run_date=2026-11-29/run_id=20261129T023000Z-1a2b3c4d/part-00000-of-00002.parquet   label rows
    DIR/run_date=2026-11-29/run_id=20261129T023000Z-1a2b3c4d/_errors/dead_letters-00000-of-00001.jsonl
    DIR/run_date=2026-11-29/run_id=20261129T023000Z-1a2b3c4d/_summary.json    the pipeline's counts
    DIR/run_date=2026-11-29/_run.json                                          THE COMMIT, written last

A run writes only inside its own ``run_id=`` folder; nothing is renamed, copied or overwritten, so
the protocol holds on local disks and object stores alike.  The launcher then writes the
partition's ``_run.json`` in one atomic write: it names the run and lists its files (relative to
the partition folder).  A reader reads the partition's ``_run.json`` and exactly the files it lists
(:func:`committed_files`, :func:`read_labels`); a partition folder without ``_run.json`` is not
committed.  Run folders of superseded, failed or killed runs are deleted after the commit (best
effort), and a glob over ``run_date=*/run_id=*/part-*`` sees them until then.

Partitions written by older genreflow versions (part files directly in ``run_date=D/``, a
``_run.json`` without ``files``) are read through the same functions.
"""

from __future__ import annotations

import datetime
import json
import logging
import posixpath
import re
from typing import Any, Iterator, Mapping, Sequence

import fsspec
import pyarrow as pa

from transforms.storage import join_uri, read_json, remove_path, write_json_atomic

__all__ = [
    "FORMATS",
    "RUN_MANIFEST",
    "ERRORS_DIR",
    "LEGACY_STAGING_DIR",
    "PART_PREFIX",
    "INDEX_COLUMNS",
    "label_schema",
    "row_to_json",
    "rows_to_table",
    "part_name",
    "write_part",
    "parse_run_date",
    "partition_dir",
    "list_partitions",
    "read_commit",
    "commit_partition",
    "committed_files",
    "read_index_columns",
    "labeled_keys",
    "count_rows",
    "read_labels",
    "remove_legacy_files",
]

logger = logging.getLogger(__name__)

#: Output formats and their file suffixes.
FORMATS = {"parquet": ".parquet", "jsonl": ".jsonl"}
RUN_MANIFEST = "_run.json"
ERRORS_DIR = "_errors"
#: Where versions before the run-folder layout staged runs (removed by the next run).
LEGACY_STAGING_DIR = "_staging"
PART_PREFIX = "part"
#: Columns the skip join reads from earlier partitions.
INDEX_COLUMNS = ("track_id", "fingerprint", "model_version")
_PARTITION = re.compile(r"^run_date=(\d{4}-\d{2}-\d{2})$")


def parse_run_date(text: str) -> str:
    """Validate ``YYYY-MM-DD`` and return it unchanged (``ValueError`` with the bad value otherwise)."""
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except (TypeError, ValueError):
        raise ValueError(f"run date must be YYYY-MM-DD, got {text!r}") from None


def partition_dir(output_dir: str, run_date: str) -> str:
    """``DIR/run_date=YYYY-MM-DD``."""
    return join_uri(output_dir, f"run_date={run_date}")


# Schema and files ----------------------------------------------------------------------------------
def label_schema(*, embeddings: bool = False) -> pa.Schema:
    """Arrow schema of one label row (Parquet output; JSON Lines carries the same fields).

    ``fingerprint`` is the track's *listing version* (:func:`transforms.sources.listing_version`,
    or a manifest's ``listing`` column; ``content:<hash of its log-mel>`` for ``--features``), the
    skip key; ``content_hash`` is :func:`transforms.beam_audio.content_hash` of the decoded bytes.
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


def rows_to_table(rows: Sequence[Mapping[str, Any]], *, embeddings: bool = False) -> pa.Table:
    """Label rows (dicts as ``pipelines.label.label_row`` builds them) -> Arrow table of :func:`label_schema`."""
    schema = label_schema(embeddings=embeddings)
    return pa.Table.from_pylist(list(rows), schema=schema)


def part_name(index: int, num_parts: int, *, fmt: str) -> str:
    """``part-00003-of-00008.parquet`` (or ``.jsonl``)."""
    return f"{PART_PREFIX}-{index:05d}-of-{num_parts:05d}{FORMATS[fmt]}"


def write_part(uri: str, rows: Sequence[Mapping[str, Any]], *, fmt: str, embeddings: bool = False) -> int:
    """Write one part file of label rows, sorted by track id, through fsspec; returns the row count.

    A part with no rows is still a readable file (a Parquet file with the schema; an empty JSON
    Lines file).  Writing the same rows again gives the same file, so a retried bundle is harmless.
    """
    ordered = sorted(rows, key=lambda r: r["track_id"])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(uri, "wb") as f:
            pq.write_table(rows_to_table(ordered, embeddings=embeddings), f, compression="zstd")
    elif fmt == "jsonl":
        with fsspec.open(uri, "w", encoding="utf-8") as f:
            for row in ordered:
                f.write(row_to_json(row) + "\n")
    else:
        raise ValueError(f"unknown label format {fmt!r}; choose one of {tuple(FORMATS)}")
    return len(ordered)


def _format_of(path: str) -> str:
    for fmt, suffix in FORMATS.items():
        if path.endswith(suffix):
            return fmt
    raise ValueError(f"{path}: not a label part file (expected {' or '.join(FORMATS.values())})")


# Commits -------------------------------------------------------------------------------------------
def list_partitions(output_dir: str) -> dict[str, str]:
    """Committed partitions, ``{run_date: partition folder}``, sorted by date.

    A ``run_date=...`` folder counts only when its ``_run.json`` is present (one listing of the
    output dir plus one listing per partition folder; no file is read).
    """
    fs, path = fsspec.core.url_to_fs(output_dir)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return {}
    out = {}
    for entry in entries:
        m = _PARTITION.match(posixpath.basename(entry["name"].rstrip("/")))
        if m and entry.get("type") == "directory":
            names = {posixpath.basename(p.rstrip("/")) for p in fs.ls(entry["name"], detail=False)}
            if RUN_MANIFEST in names:
                out[m.group(1)] = join_uri(output_dir, f"run_date={m.group(1)}")
    return dict(sorted(out.items()))


def read_commit(partition: str) -> dict[str, Any] | None:
    """The partition's ``_run.json``, or None when the partition is not committed."""
    try:
        return read_json(join_uri(partition, RUN_MANIFEST))
    except FileNotFoundError:
        return None


def commit_partition(partition: str, record: Mapping[str, Any]) -> str:
    """Write ``_run.json`` (atomically, last): from now on readers see the run it names.

    ``record["files"]["rows"]`` lists the run's part files relative to ``partition``.  Returns the
    path written.
    """
    path = join_uri(partition, RUN_MANIFEST)
    write_json_atomic(path, dict(record))
    return path


def _row_files(partition: str, record: Mapping[str, Any]) -> list[str]:
    """Full URIs of the part files a commit record lists (an old record: the part files beside it)."""
    files = record.get("files")
    if isinstance(files, Mapping):
        return [join_uri(partition, name) for name in files.get("rows", [])]
    fs, path = fsspec.core.url_to_fs(partition)  # layout before run folders: parts directly in the partition
    names = sorted(posixpath.basename(p) for p in fs.ls(path, detail=False))
    return [join_uri(partition, n) for n in names if n.startswith(PART_PREFIX) and n.endswith(tuple(FORMATS.values()))]


def committed_files(output_dir: str, *, before: str | None = None,
                    run_date: str | None = None) -> Iterator[tuple[str, str]]:
    """``(run_date, part file URI)`` of every committed partition, following each ``_run.json``.

    Parameters
    ----------
    output_dir : str
        The label job's output dir (may not exist: nothing).
    before : str, optional
        Only partitions dated strictly before this ``YYYY-MM-DD`` (the skip join's history).
    run_date : str, optional
        Only this partition.
    """
    for date, partition in list_partitions(output_dir).items():
        if (before is not None and date >= before) or (run_date is not None and date != run_date):
            continue
        record = read_commit(partition)
        if record is None:  # removed between the listing and the read
            continue
        for uri in _row_files(partition, record):
            yield date, uri


def read_index_columns(uri: str, *, columns: Sequence[str] = INDEX_COLUMNS) -> pa.Table:
    """Some string columns of one part file: Parquet column projection, JSON Lines with an explicit schema."""
    fmt = _format_of(uri)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(uri, "rb") as f:
            return pq.read_table(f, columns=list(columns))
    import pyarrow.json as pj

    schema = pa.schema([(c, pa.string()) for c in columns])
    with fsspec.open(uri, "rb") as f:
        data = f.read()
    if not data.strip():
        return schema.empty_table()
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    return pj.read_json(pa.BufferReader(data), parse_options=parse)


def labeled_keys(uri: str, *, model_version: str) -> Iterator[tuple[str, str]]:
    """``(track_id, fingerprint)`` of the rows of one part file that ``model_version`` labeled.

    Reads three columns only; memory is one part file's three columns.
    """
    import pyarrow.compute as pc

    table = read_index_columns(uri)
    table = table.filter(pc.equal(table["model_version"], model_version))
    for track_id, fingerprint in zip(table["track_id"].to_pylist(), table["fingerprint"].to_pylist()):
        if fingerprint:
            yield track_id, fingerprint


def count_rows(partition: str) -> int:
    """Rows in the files a committed partition lists (Parquet footers; JSON Lines counted by lines); 0 if none."""
    record = read_commit(partition)
    if record is None:
        return 0
    total = 0
    for uri in _row_files(partition, record):
        if _format_of(uri) == "parquet":
            import pyarrow.parquet as pq

            with fsspec.open(uri, "rb") as f:
                total += pq.ParquetFile(f).metadata.num_rows
        else:
            with fsspec.open(uri, "rb") as f:
                total += sum(1 for line in f if line.strip())
    return total


def _read_part(uri: str) -> pa.Table | None:
    if _format_of(uri) == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(uri, "rb") as f:
            return pq.read_table(f)
    with fsspec.open(uri, "rb") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        return None
    for row in rows:  # back to the Parquet types, so that both formats read as one table
        if isinstance(row.get("labeled_at"), str):
            row["labeled_at"] = datetime.datetime.fromisoformat(row["labeled_at"])
    return rows_to_table(rows, embeddings="embedding" in rows[0])


def read_labels(output_dir: str, *, run_date: str | None = None) -> pa.Table:
    """The committed label rows as one Arrow table, with a ``run_date`` column.

    Reads exactly the files each partition's ``_run.json`` lists.  A convenience for tests and
    notebooks; at scale read the listed files with pyarrow, DuckDB or BigQuery directly (docs/label.md,
    "Reading the labels").
    """
    tables = []
    for date, uri in committed_files(output_dir, run_date=run_date):
        t = _read_part(uri)
        if t is not None:
            tables.append(t.append_column("run_date", pa.array([date] * t.num_rows, pa.string())))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def remove_legacy_files(output_dir: str, partition: str) -> list[str]:
    """Delete what the layout before run folders left: ``DIR/_staging`` and part files / ``_errors`` directly
    in ``partition`` (call after a commit: the new ``_run.json`` no longer lists them).  Returns what went."""
    removed = []
    fs, path = fsspec.core.url_to_fs(partition)
    try:
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        names = []
    legacy = [join_uri(partition, n) for n in names
              if n == ERRORS_DIR or (n.startswith(PART_PREFIX) and n.endswith(tuple(FORMATS.values())))]
    for uri in [join_uri(output_dir, LEGACY_STAGING_DIR), *legacy]:
        fs_, p = fsspec.core.url_to_fs(uri)
        if fs_.exists(p) and remove_path(uri):
            removed.append(uri)
    return removed
