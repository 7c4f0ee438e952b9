"""featurize and label under PortableRunner with an external pool of separate worker processes.

This is how a cluster runs Python workers: the pipeline is pickled in the launcher and unpickled
in SDK harness processes started by a worker pool
(``python -m apache_beam.runners.worker.worker_pool_main``), so a DoFn that only works in the
launcher's process (closure over unpicklable state, a module not installed, a ``sys.path`` edit)
fails here although the in-process runner passes.  The outputs must equal the in-process run.

The label run also exercises ``--large-model`` (one model copy per machine, shared by the worker
processes through Beam's multi-process shared object) and featurize ``--num-shards``.
"""

from __future__ import annotations

import os

import pytest

import scaleout
from conftest import free_port
from pipelines import featurize, label
from transforms.metadata import read_metadata

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory):
    """A worker pool on 127.0.0.1 whose workers are this venv's python (as on a cluster node)."""
    with scaleout.worker_pool(free_port(), str(tmp_path_factory.mktemp("pool") / "worker_pool.log")) as pool:
        yield pool


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return scaleout.make_world(tmp_path_factory.mktemp("portable"))


def _portable_args(pool: dict) -> list[str]:
    return ["--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "EXTERNAL",
            "--environment_config", f"localhost:{pool['port']}"]


def test_featurize_with_external_workers_equals_the_local_run(worker_pool, world):
    ref = str(world["base"] / "ref-features")
    featurize.run(scaleout.featurize_argv(world["audio"], ref, fmt="tfrecord", num_shards=3) + scaleout.IN_PROCESS)
    started = scaleout.workers_started(worker_pool)
    out = str(world["base"] / "portable-features")
    scaleout.run_job("pipelines.featurize",
                     scaleout.featurize_argv(world["audio"], out, fmt="tfrecord", num_shards=3)
                     + _portable_args(worker_pool))
    assert scaleout.workers_started(worker_pool) > started, "no worker process was started by the pool"
    scaleout.assert_same_features(out, ref)
    md = read_metadata(out)
    assert md.inputs == {"matched": 5, "featurized": 4, "failed": 1}
    # --num-shards: every split with tracks gets exactly that many shard files.
    for split, names in md.shards.items():
        assert len(names) in (0, 3), (split, names)
        for name in names:
            assert os.path.exists(os.path.join(out, name)), name


def test_label_with_external_workers_and_a_shared_model_equals_the_local_run(worker_pool, world):
    ref = str(world["base"] / "ref-labels")
    label.run(scaleout.label_argv(world["audio"], world["model"], ref) + scaleout.IN_PROCESS)
    started = scaleout.workers_started(worker_pool)
    out = str(world["base"] / "portable-labels")
    scaleout.run_job("pipelines.label", scaleout.label_argv(world["audio"], world["model"], out)
                     + ["--large-model"] + _portable_args(worker_pool))
    assert scaleout.workers_started(worker_pool) > started, "no worker process was started by the pool"
    scaleout.assert_same_labels(out, ref)
    counts = scaleout.label_run_manifest(out)["counts"]
    assert (counts["inputs"], counts["labeled"], counts["dead_letters"]) == (5, 4, 1)
