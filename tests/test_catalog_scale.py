"""Nothing in a launcher grows with the catalog: Dataflow dry runs from manifests of 10^3 and 10^6 rows.

Each launch runs in its own process (``benchmarks/launcher_bench.py --one``), so its peak memory is
its own.  A million-row manifest is ~50 MB of CSV; holding its rows as track records would take
hundreds of MB in the launcher and put megabytes into the job graph (6 MB per million tracks, when
inputs were ``beam.Create``d), so the bounds below fail loudly on any launcher that reads the rows.
"""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import launcher_bench  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("job", ["featurize", "label"])
def test_dry_run_graph_and_launcher_memory_do_not_grow_with_the_manifest(job, tmp_path):
    small = launcher_bench.measure(job, 1_000, work=str(tmp_path))
    big = launcher_bench.measure(job, 1_000_000, work=str(tmp_path))
    manifest_mb = os.path.getsize(tmp_path / "manifest-1000000.csv") / 2**20
    assert manifest_mb > 40
    assert abs(big["graph_bytes"] - small["graph_bytes"]) < 0.1 * small["graph_bytes"], (small, big)
    # the launcher may read the header, never the rows: its peak memory moves by far less than the file
    assert big["peak_rss_mb"] - small["peak_rss_mb"] < 0.25 * manifest_mb, (small, big, manifest_mb)
