"""featurize and label on a real local Flink cluster through Beam's FlinkRunner.

The cluster is the Flink distribution from PyPI started by ``scripts/flink.sh`` (JobManager and
one TaskManager with 2 slots, on 127.0.0.1); the jobs go through Beam's Flink job server, the one
shaded jar ``flink.sh setup`` builds (Beam Java 2.62.0 driving the Beam Python 2.77 SDK).  Each job
runs twice:

- ``LOOPBACK``: the FlinkRunner starts the job server from ``--flink_job_server_jar`` and the
  Python code runs in an SDK harness inside the launching process;
- ``EXTERNAL``: the Python code runs in SDK workers that Beam's worker pool
  (``worker_pool_main``, this venv's python) starts on the TaskManager's request, as on a real
  cluster; featurize is submitted with ``--flink_submit_uber_jar`` (the job server jar plus the
  pipeline, uploaded to the JobManager's REST API), label through the job server.

Each output must equal the in-process FnApiRunner run of the same inputs, and the cluster's REST
API must show the job finished there.  This tier fails, never skips, when Flink cannot be set up
or started: CI must not pass by not running it.  ``scripts/flink.sh setup`` is idempotent (pip +
Maven the first time, a copy from ``~/.cache/genreflow`` in a fresh clone, a no-op after).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import apache_beam
import pytest

import scaleout
from conftest import free_port
from transforms.metadata import read_metadata

pytestmark = [pytest.mark.slow, pytest.mark.flink]

SCRIPT = os.path.join(scaleout.REPO, "scripts", "flink.sh")


def _flink(*args: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["bash", SCRIPT, *args], cwd=scaleout.REPO, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/flink.sh {' '.join(args)} did not finish in {timeout:.0f} s")


def _assignments(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.split())


def _overview(master: str) -> dict:
    with urllib.request.urlopen(f"http://{master}/jobs/overview", timeout=5) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def cluster():
    """Set up and start the local cluster (stopped afterwards unless it was already running)."""
    setup = _flink("setup", timeout=900)
    if setup.returncode != 0:
        pytest.fail(f"Flink setup failed (pip/Maven):\n{setup.stdout}\n{setup.stderr}")
    env = _assignments(_flink("env", timeout=30).stdout)
    was_running = _flink("status", timeout=30).returncode == 0
    up = _flink("up", timeout=300)
    if up.returncode != 0:
        pytest.fail(f"Flink did not start:\n{up.stdout}\n{up.stderr}")
    yield env
    if not was_running:
        down = _flink("down", timeout=120)
        assert down.returncode == 0, down.stderr
        assert _flink("status", timeout=30).returncode != 0, "cluster still answering after flink.sh down"


@pytest.fixture(scope="module")
def world(reference_world, tmp_path_factory):
    """The shared reference world, with this tier's outputs in a folder of its own."""
    return {**reference_world, "base": tmp_path_factory.mktemp("flink")}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """The worker pool of a cluster node: SDK workers for ``--environment_type EXTERNAL``."""
    with scaleout.worker_pool(free_port(), str(tmp_path_factory.mktemp("pool") / "worker_pool.log")) as p:
        yield p


def _flink_args(cluster: dict, *, pool: dict | None = None, uber_jar: bool = False) -> list[str]:
    major, minor = cluster["FLINK_VERSION"].split(".")[:2]
    args = ["--runner", "FlinkRunner", "--flink_master", cluster["FLINK_MASTER"],
            "--flink_version", f"{major}.{minor}", "--flink_job_server_jar", cluster["FLINK_JOB_SERVER_JAR"],
            "--parallelism", "2"]
    if pool is None:
        args += ["--environment_type", "LOOPBACK"]
    else:
        args += ["--environment_type", "EXTERNAL", "--environment_config", f"127.0.0.1:{pool['port']}"]
    return args + (["--flink_submit_uber_jar"] if uber_jar else [])


def _finished_jobs(cluster: dict) -> list[dict]:
    return [j for j in _overview(cluster["FLINK_MASTER"])["jobs"] if j["state"] == "FINISHED"]


def _run_on_flink(cluster: dict, module: str, argv: list[str], *, pool: dict | None, uber_jar: bool) -> None:
    """Run ``module`` on the cluster; assert it finished there (and ran in the pool's workers)."""
    before = {j["jid"] for j in _finished_jobs(cluster)}
    started = scaleout.workers_started(pool) if pool else 0
    scaleout.run_job(module, argv + _flink_args(cluster, pool=pool, uber_jar=uber_jar))
    new = [j for j in _finished_jobs(cluster) if j["jid"] not in before]
    assert len(new) == 1, "the job did not finish on the Flink cluster"
    if pool is not None:
        assert scaleout.workers_started(pool) > started, "the worker pool started no SDK worker"


def test_the_job_server_is_the_documented_beam_java_release_for_this_beam_python(cluster):
    """The version skew in use is named, and the README states it (fails when either drifts)."""
    versions = _assignments(_flink("versions", timeout=60).stdout)
    java, python = versions["BEAM_JAVA_VERSION"], versions["BEAM_PYTHON_VERSION"]
    assert python == apache_beam.__version__, versions
    assert cluster["FLINK_VERSION"] == versions["FLINK_VERSION"]
    with open(os.path.join(scaleout.REPO, "README.md")) as f:
        readme = " ".join(f.read().split())
    stated = f"Beam Java {java} job server driving the Beam Python {python} SDK"
    assert stated in readme, f"README does not state the versions in use: {stated!r}"
    assert f"Flink {versions['FLINK_VERSION']}" in readme


def test_setup_fails_loudly_when_the_job_server_cannot_be_built(tmp_path):
    """A Beam Java release Maven does not serve: setup stops with Maven's reason and leaves no jar."""
    flink_dir = tmp_path / "flink"
    proc = _flink("jobserver", timeout=300, env={"GENREFLOW_BEAM_JAVA_VERSION": "2.62.99",
                                                 "GENREFLOW_FLINK_DIR": str(flink_dir),
                                                 "GENREFLOW_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode != 0
    assert "could not build the Beam 2.62.99 Flink 1.19 job server" in proc.stderr
    # Maven's reason: "Could not find artifact ...", or that the miss is cached in ~/.m2 from an earlier run.
    assert "Could not resolve dependencies" in proc.stderr and "beam-runners-flink-1.19:jar:2.62.99" in proc.stderr
    assert not list(flink_dir.glob("jobserver/*.jar")) and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("mode", ["loopback", "external-uber-jar"])
def test_featurize_on_flink_equals_the_local_run(cluster, world, pool, mode):
    out = str(world["base"] / f"flink-features-{mode}")
    external = mode != "loopback"
    _run_on_flink(cluster, "pipelines.featurize", scaleout.featurize_argv(world["audio"], out, num_shards=2),
                  pool=pool if external else None, uber_jar=external)
    scaleout.assert_same_features(out, world["features"])
    md = read_metadata(out)
    assert md.inputs == {"matched": 5, "featurized": 4, "failed": 1}
    assert md.extra["runner"] == "FlinkRunner"


@pytest.mark.parametrize("mode", ["loopback", "external"])
def test_label_on_flink_equals_the_local_run(cluster, world, pool, mode):
    out = str(world["base"] / f"flink-labels-{mode}")
    _run_on_flink(cluster, "pipelines.label", scaleout.label_argv(world["audio"], world["model"], out),
                  pool=pool if mode == "external" else None, uber_jar=False)
    scaleout.assert_same_labels(out, world["labels"])
    manifest = scaleout.label_run_manifest(out)
    assert manifest["counts"]["inputs"] == 5
    assert manifest["counts"]["labeled"] == 4
    assert manifest["counts"]["dead_letters"] == 1
    assert manifest["runner"] == "FlinkRunner"
