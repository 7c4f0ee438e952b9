"""The commit protocol both jobs use: immutable run folders, one small record written last.

A run never renames, copies or overwrites published data, so the same protocol holds on a local
disk and on object stores (``s3://``, ``gs://``), which have no atomic folder rename::

    OUT/run_id=20261201T101500Z-1a2b3c4d/...    every file of one run, written once, never moved
    OUT/<commit record>                         small JSON, written last, names the run's files

1. A run writes all its files into its own new folder ``run_id=<id>`` (ids sort by start time).
2. The pipeline writes ``_summary.json`` (counts and file lists, computed from the data) into it.
3. The launcher checks the summary (every input accounted for, failures within the limit) and
   *commits* by writing the commit record (``metadata.json`` for featurize, ``_run.json`` for a
   label partition) in one atomic write: a temporary name and a rename on local disks, a single
   object upload on object stores (an object becomes visible only when its upload completes).
4. Only then are older run folders deleted: superseded runs, and runs that died or failed
   (best effort; a reader never needs them gone).

A reader follows the commit record and reads exactly the files it lists.  Before step 3 it sees
the previous commit (the previous dataset or partition, complete); after, the new one.  A run
that fails, is killed, or exceeds ``--max-error-fraction`` commits nothing and leaves the previous
output as it was.  One run at a time per output: a second concurrent run may delete the first's
run folder as stale.

Nothing here globs a path the user gave: folders are listed and names matched exactly, so an
output called ``out[12]`` can never touch ``out1``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import posixpath
import re
import shutil
import uuid
from typing import Any, Iterable

import fsspec

__all__ = [
    "RUN_PREFIX",
    "SUMMARY_FILE",
    "new_run_id",
    "run_folder",
    "join_uri",
    "protocol_of",
    "read_json",
    "write_json_atomic",
    "run_folders",
    "remove_other_runs",
    "remove_path",
]

logger = logging.getLogger(__name__)

RUN_PREFIX = "run_id="
SUMMARY_FILE = "_summary.json"
_WILDCARD = re.compile(r"[*?\[]")
_RUN_NAME = re.compile(r"^run_id=(\d{8}T\d{6}Z-[0-9a-f]{8})$")


def new_run_id(now: datetime.datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-<8 hex>``: sorts by start time, unique across launchers."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def join_uri(root: str, *names: str) -> str:
    """Join path parts onto a local path or a URI with ``/`` (no globbing, no normalisation)."""
    return posixpath.join(root.rstrip("/") or "/", *names)


def run_folder(output: str, run_id: str) -> str:
    """``OUTPUT/run_id=<run_id>``."""
    return join_uri(output, RUN_PREFIX + run_id)


def protocol_of(uri: str) -> str:
    """``"file"`` for plain paths and ``file://``, else the URI scheme (``s3``, ``gs``, ``memory``)."""
    if "://" not in uri:
        return "file"
    scheme = uri.split("://", 1)[0].lower()
    return "file" if scheme in ("file", "local") else scheme


def read_json(uri: str) -> Any:
    """Parse a JSON file through fsspec (``FileNotFoundError`` when it is absent)."""
    with fsspec.open(uri, "r", encoding="utf-8") as f:
        return json.load(f)


def write_json_atomic(uri: str, data: Any) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of it.

    Local and ``memory://`` paths are written to a unique temporary name and renamed; object
    stores publish an object only when its upload completes, which is atomic already.
    """
    fs, path = fsspec.core.url_to_fs(uri)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if protocol_of(uri) in ("file", "memory"):
        parent = posixpath.dirname(path)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with fs.open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        fs.mv(tmp, path)
    else:
        with fs.open(path, "w", encoding="utf-8") as f:
            f.write(text)


def run_folders(output: str) -> list[str]:
    """Run ids of the ``run_id=...`` folders directly inside ``output`` (listed, never globbed)."""
    fs, path = fsspec.core.url_to_fs(output)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    ids = []
    for entry in entries:
        m = _RUN_NAME.match(posixpath.basename(entry.rstrip("/")))
        if m:
            ids.append(m.group(1))
    return sorted(set(ids))


def remove_path(uri: str) -> bool:
    """Delete one file or folder tree, the path taken literally; False, with a warning, when that fails.

    fsspec's ``rm`` expands wildcards, so a path holding ``[``, ``*`` or ``?`` (an output called
    ``out[12]``) is removed file by file from a listing instead, never matched as a pattern.
    """
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if not _WILDCARD.search(path):
            if fs.exists(path):
                fs.rm(path, recursive=True)
        elif protocol_of(uri) == "file":
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
        elif fs.exists(path):
            if not fs.isdir(path):
                fs.rm_file(path)
            else:
                entries = fs.find(path, withdirs=True, detail=True)  # a listing: no pattern matching
                for name, info in entries.items():
                    if info.get("type") != "directory":
                        fs.rm_file(name)
                folders = [n for n, i in entries.items() if i.get("type") == "directory"] + [path]
                for name in sorted(folders, key=len, reverse=True):  # stores with real folders (memory://)
                    try:
                        fs.rmdir(name)
                    except (OSError, NotImplementedError):
                        pass
        return True
    except Exception as e:  # cleanup is best effort: a leftover run folder is never read
        logger.warning("could not remove %s: %s", uri, e)
        return False


def remove_other_runs(output: str, *, keep: Iterable[str]) -> list[str]:
    """Delete the run folders in ``output`` whose id is not in ``keep``; returns the ids removed.

    Called after a commit (``keep`` = the committed run) and before a run starts (``keep`` = the
    committed run and the new one), so folders of superseded, failed and killed runs go.
    """
    keep = set(keep)
    removed = []
    for run_id in run_folders(output):
        if run_id not in keep and remove_path(run_folder(output, run_id)):
            removed.append(run_id)
    if removed:
        logger.info("removed %d run folders of superseded or unfinished runs in %s", len(removed), output)
    return removed
