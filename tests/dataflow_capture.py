"""The Dataflow jobs a launcher builds in a dry run (``--runner DataflowRunner --dry_run=True``).

Shared by ``tests/test_dataflow.py`` and ``benchmarks/launcher_bench.py`` (which loads this file by
path, so it works whichever checkout's ``pipelines`` it measures).  Imports only Beam.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def captured_dataflow_jobs() -> Iterator[list[Any]]:
    """Collect the ``Job`` of every ``DataflowRunner.run_pipeline`` call made inside the block."""
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    jobs: list[Any] = []
    original = DataflowRunner.run_pipeline

    def run_pipeline(self, pipeline, options):
        result = original(self, pipeline, options)
        jobs.append(result.job)
        return result

    DataflowRunner.run_pipeline = run_pipeline
    try:
        yield jobs
    finally:
        DataflowRunner.run_pipeline = original
