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
output called ``out[12]`` can never touch ``out1``.  Paths, JSON files and deletion are
:mod:`transforms.storage`'s.
"""

from __future__ import annotations

import datetime
import logging
import posixpath
import re
import uuid
from typing import Iterable

import fsspec

from transforms.storage import join_uri, remove_path

__all__ = [
    "RUN_PREFIX",
    "SUMMARY_FILE",
    "new_run_id",
    "run_folder",
    "run_folders",
    "remove_other_runs",
]

logger = logging.getLogger(__name__)

RUN_PREFIX = "run_id="
SUMMARY_FILE = "_summary.json"
_RUN_NAME = re.compile(r"^run_id=(\d{8}T\d{6}Z-[0-9a-f]{8})$")


def new_run_id(now: datetime.datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-<8 hex>``: sorts by start time, unique across launchers."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def run_folder(output: str, run_id: str) -> str:
    """``OUTPUT/run_id=<run_id>``."""
    return join_uri(output, RUN_PREFIX + run_id)


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
