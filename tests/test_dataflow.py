"""Both jobs translate for Dataflow offline (``--dry_run``), with the knobs a cluster user sets.

``--dry_run=True`` makes Beam's DataflowRunner build the whole Dataflow job (every transform
pickled and translated) and stop before talking to Google Cloud, so it needs no credentials.  The
bucket name must have 3+ characters (otherwise Beam tries to create a default bucket and hangs),
and ``--dry_run`` takes a string (``--dry_run=False`` is still a dry run).  Inputs are local files,
matched by the pipeline itself.

The job each run built is captured from the runner and checked: its steps, its worker-pool
options (``--num_workers``, ``--max_num_workers``, ``--number_of_worker_harness_threads``, which
bounds the audio in flight per worker), the custom container (``--sdk_container_image``) and the
package Beam built from ``--setup_file`` (every module the workers import must be in it).
"""

from __future__ import annotations

import os

import pytest

import package_contents
from dataflow_capture import captured_dataflow_jobs
import scaleout
from pipelines import featurize, label

pytestmark = pytest.mark.slow

IMAGE = "us-docker.pkg.dev/genreflow-dev/genreflow/genreflow-worker:0.1"
DATAFLOW = [
    "--runner", "DataflowRunner", "--dry_run=True", "--project", "genreflow-dev", "--region", "us-central1",
    "--temp_location", "gs://bucket-xyz/tmp", "--setup_file", os.path.join(scaleout.REPO, "setup.py"),
    "--num_workers", "3", "--max_num_workers", "7", "--number_of_worker_harness_threads", "2",
    "--sdk_container_image", IMAGE,
]


@pytest.fixture()
def captured_jobs():
    """The Dataflow jobs built by ``DataflowRunner.run_pipeline`` during the test."""
    with captured_dataflow_jobs() as jobs:
        yield jobs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return scaleout.make_world(tmp_path_factory.mktemp("dataflow"))


def _check_job(job, *, steps: list[str]) -> None:
    """The job's transforms, container image, staged package and worker options."""
    from apache_beam.portability.api import beam_runner_api_pb2

    pipeline = job.proto_pipeline
    names = {t.unique_name.split("/")[-1] for t in pipeline.components.transforms.values()}
    for step in steps:
        assert step in names, f"step {step!r} missing from the Dataflow job"
    (env,) = pipeline.components.environments.values()
    assert env.urn == "beam:env:docker:v1"
    assert beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image == IMAGE
    staged = {}
    for dep in env.dependencies:
        name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name
        staged[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
    # --setup_file: Beam built the package (python setup.py sdist) and stages it as workflow.tar.gz;
    # it must hold every module the workers import.
    assert "workflow.tar.gz" in staged, sorted(staged)
    missing = set(package_contents.source_modules()) - set(package_contents.sdist_modules(staged["workflow.tar.gz"]))
    assert not missing, f"modules missing from the staged package: {sorted(missing)}"
    options = job.options.get_all_options()
    assert (options["num_workers"], options["max_num_workers"]) == (3, 7)
    assert options["number_of_worker_harness_threads"] == 2
    assert options["setup_file"].endswith("setup.py")


def test_featurize_translates_for_dataflow(world, captured_jobs):
    out = str(world["base"] / "features")
    result = featurize.run(scaleout.featurize_argv(world["audio"], out, num_shards=4) + DATAFLOW)
    assert result.metadata is None and result.runner == "DataflowRunner"
    assert len(captured_jobs) == 1
    _check_job(captured_jobs[0], steps=["FeaturizeAndWrite", "Summarize", "WriteDeadLetters", "WriteSummary"])
    assert not os.path.exists(os.path.join(out, "metadata.json")), "a dry run published output"


def test_label_translates_for_dataflow(world, captured_jobs, capsys):
    out = str(world["base"] / "labels")
    # from the command line entry point: a dry run prints what it did and exits 0
    assert label.main(scaleout.label_argv(world["audio"], world["model"], out) + ["--large-model"] + DATAFLOW) == 0
    assert "dry run, nothing written" in capsys.readouterr().out
    assert not os.path.exists(out), "a dry run wrote output"
    assert len(captured_jobs) == 1
    _check_job(captured_jobs[0], steps=["Match", "JoinEarlier", "Split", "AudioToLogMel", "RunInference",
                                        "JoinTrack", "Assemble", "WriteParts", "WriteLetters", "WriteSummary"])
