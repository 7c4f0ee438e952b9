"""featurize and label on a real local Flink cluster through Beam's FlinkRunner.

The cluster is the Flink distribution from PyPI started by ``scripts/flink.sh`` (JobManager and
one TaskManager with 2 slots, on 127.0.0.1); the jobs go through Beam's Flink job server (a Java
process started by the FlinkRunner from ``--flink_job_server_jar``) and run their Python code in
a LOOPBACK SDK harness.  Each output must equal the in-process reference run of the same inputs,
and the cluster's REST API must show the jobs finished there.

This tier fails, never skips, when Flink cannot be set up or started: CI must not pass by not
running it.  ``scripts/flink.sh setup`` is idempotent (pip + Maven the first time, a no-op after).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest

import scaleout
from pipelines import featurize, label
from transforms.metadata import read_metadata

pytestmark = [pytest.mark.slow, pytest.mark.flink]

SCRIPT = os.path.join(scaleout.REPO, "scripts", "flink.sh")


def _flink(*args: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["bash", SCRIPT, *args], cwd=scaleout.REPO, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/flink.sh {' '.join(args)} did not finish in {timeout:.0f} s")


def _overview(master: str) -> dict:
    with urllib.request.urlopen(f"http://{master}/jobs/overview", timeout=5) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def cluster():
    """Set up and start the local cluster (stopped afterwards unless it was already running)."""
    setup = _flink("setup", timeout=900)
    if setup.returncode != 0:
        pytest.fail(f"Flink setup failed (pip/Maven):\n{setup.stdout}\n{setup.stderr}")
    env = dict(line.split("=", 1) for line in _flink("env", timeout=30).stdout.split())
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
def world(tmp_path_factory):
    w = scaleout.make_world(tmp_path_factory.mktemp("flink"))
    base, audio, model = w["base"], w["audio"], w["model"]
    ref_features = str(base / "ref-features")
    featurize.run(scaleout.featurize_argv(audio, ref_features, num_shards=2) + scaleout.IN_PROCESS)
    ref_labels = str(base / "ref-labels")
    label.run(scaleout.label_argv(audio, model, ref_labels) + scaleout.IN_PROCESS)
    return {"base": base, "audio": audio, "model": model, "features": ref_features, "labels": ref_labels}


def _flink_args(cluster: dict) -> list[str]:
    major, minor = cluster["FLINK_VERSION"].split(".")[:2]
    return ["--runner", "FlinkRunner", "--flink_master", cluster["FLINK_MASTER"],
            "--flink_version", f"{major}.{minor}", "--flink_job_server_jar", cluster["FLINK_JOB_SERVER_JAR"],
            "--environment_type", "LOOPBACK", "--parallelism", "2"]


def _finished_jobs(cluster: dict) -> list[dict]:
    return [j for j in _overview(cluster["FLINK_MASTER"])["jobs"] if j["state"] == "FINISHED"]


def test_featurize_on_flink_equals_the_local_run(cluster, world):
    before = {j["jid"] for j in _finished_jobs(cluster)}
    out = str(world["base"] / "flink-features")
    scaleout.run_job("pipelines.featurize", scaleout.featurize_argv(world["audio"], out, num_shards=2)
                     + _flink_args(cluster))
    new = [j for j in _finished_jobs(cluster) if j["jid"] not in before]
    assert len(new) == 1, "the job did not finish on the Flink cluster"
    scaleout.assert_same_features(out, world["features"])
    md = read_metadata(out)
    assert md.inputs == {"matched": 5, "featurized": 4, "failed": 1}
    assert md.extra["runner"] == "FlinkRunner"


def test_label_on_flink_equals_the_local_run(cluster, world):
    before = {j["jid"] for j in _finished_jobs(cluster)}
    out = str(world["base"] / "flink-labels")
    scaleout.run_job("pipelines.label", scaleout.label_argv(world["audio"], world["model"], out)
                     + _flink_args(cluster))
    new = [j for j in _finished_jobs(cluster) if j["jid"] not in before]
    assert len(new) == 1, "the job did not finish on the Flink cluster"
    scaleout.assert_same_labels(out, world["labels"])
    manifest = scaleout.label_run_manifest(out)
    assert manifest["counts"]["inputs"] == 5
    assert manifest["counts"]["labeled"] == 4
    assert manifest["counts"]["dead_letters"] == 1
    assert manifest["runner"] == "FlinkRunner"
