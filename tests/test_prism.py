"""Prism, Beam's portable local runner, and the rule that makes the local runner explicit.

Beam 2.77's DirectRunner tries to download Prism from GitHub and, offline, silently falls back to
another runner; genreflow resolves the local runner itself (``pipelines.options.resolve_runner``)
and logs which one runs.  The first tests check that rule without Beam running anything; the
slow ones run both jobs on the Prism binary ``make prism-setup`` builds (``.prism/bin/prism``, Go
module proxy) and compare with the in-process FnApiRunner.  They fail, never skip, when Prism is
not installed: ``make test`` installs it first.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess

import apache_beam
import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

import scaleout
from pipelines.options import DEFAULT_LOCAL_RUNNER, INSTALLED_PRISM, pipeline_options, resolve_runner
from transforms.metadata import read_metadata


@pytest.fixture
def fake_prism(tmp_path):
    """An executable file standing in for an installed Prism binary (resolution only checks it exists)."""
    path = tmp_path / "prism"
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("given", [[], ["--runner", "DirectRunner"], ["--runner=direct"],
                                   ["--runner", "apache_beam.runners.direct.direct_runner.DirectRunner"]])
def test_no_runner_or_direct_runner_resolves_to_the_fnapi_runner(given):
    choice = resolve_runner(given + ["--direct_num_workers", "3"], installed_prism=None)
    options = PipelineOptions(choice.args)
    assert choice.runner == DEFAULT_LOCAL_RUNNER == options.view_as(StandardOptions).runner
    assert options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert options.view_as(DirectOptions).direct_num_workers == 3
    assert "FnApiRunner, multi_processing, 3 workers" in choice.reason
    assert "Prism is installed" not in choice.reason


def test_memory_paths_force_the_in_process_mode():
    choice = resolve_runner(["--direct_running_mode", "multi_processing"], needs_in_process=True, installed_prism=None)
    assert PipelineOptions(choice.args).view_as(DirectOptions).direct_running_mode == "in_memory"
    assert choice.reason.startswith("FnApiRunner, in_memory, 1 workers")


def test_prism_location_selects_prism_and_an_installed_binary_is_named(fake_prism):
    default = resolve_runner([], installed_prism=fake_prism)
    assert default.runner == DEFAULT_LOCAL_RUNNER, "an installed Prism must not change the default silently"
    assert f"--prism_location {fake_prism}" in default.reason
    for given in ([], ["--runner", "DirectRunner"]):
        choice = resolve_runner(given + [f"--prism_location={fake_prism}"], installed_prism=None)
        assert choice.runner == "PrismRunner"
        assert PipelineOptions(choice.args).view_as(StandardOptions).runner == "PrismRunner"
        assert not any(a.startswith("--direct_") for a in choice.args)


def test_prism_runner_without_a_location_uses_the_installed_binary(fake_prism):
    choice = resolve_runner(["--runner", "PrismRunner"], installed_prism=fake_prism)
    assert choice.args[-2:] == ["--prism_location", fake_prism]
    bare = resolve_runner(["--runner", "PrismRunner"], installed_prism=None)
    assert bare.args == ["--runner", "PrismRunner"]
    assert "downloads Prism from GitHub" in bare.reason


def test_other_runners_pass_through_unchanged():
    given = ["--runner", "FlinkRunner", "--flink_master", "localhost:8081", "--parallelism", "2"]
    choice = resolve_runner(given, installed_prism=None)
    assert (choice.runner, choice.args) == ("FlinkRunner", given)


def test_the_runner_is_in_the_log(caplog):
    with caplog.at_level(logging.INFO, logger="pipelines.options"):
        pipeline_options(["--runner", "DirectRunner", "--direct_running_mode", "in_memory"])
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("runner: ")]
    assert line.startswith("runner: FnApiRunner, in_memory (--runner DirectRunner;")


# --- Both jobs on Prism ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prism():
    """The installed Prism binary; fails (never skips) when ``make prism-setup`` has not run."""
    if not os.access(INSTALLED_PRISM, os.X_OK):
        pytest.fail(f"Prism is not installed at {INSTALLED_PRISM}: run make prism-setup (make test does)")
    return INSTALLED_PRISM


@pytest.fixture(scope="module")
def world(reference_world, tmp_path_factory):
    """The shared reference world, with this tier's outputs in a folder of its own."""
    return {**reference_world, "base": tmp_path_factory.mktemp("prism")}


@pytest.mark.slow
def test_prism_is_the_release_of_the_python_sdk(prism):
    """Prism and the Python SDK come from the same Beam release (Go's build info names the module)."""
    go = shutil.which("go")
    assert go, "Go is needed to build Prism (make prism-setup)"
    info = subprocess.run([go, "version", "-m", prism], capture_output=True, text=True, check=True).stdout
    found = re.search(r"^\s*mod\s+github\.com/apache/beam/sdks/v2\s+v(\S+)", info, re.M)
    assert found, info
    assert found.group(1) == apache_beam.__version__


def _prism_args(prism: str) -> list[str]:
    return ["--runner", "PrismRunner", "--prism_location", prism]


@pytest.mark.slow
def test_featurize_on_prism_equals_the_fnapi_runner(prism, world):
    out = str(world["base"] / "prism-features")
    proc = scaleout.run_job("pipelines.featurize",
                            scaleout.featurize_argv(world["audio"], out, num_shards=2) + _prism_args(prism))
    assert "runner: PrismRunner (--runner)" in proc.stderr
    scaleout.assert_same_features(out, world["features"])
    md = read_metadata(out)
    assert md.inputs == {"matched": 5, "featurized": 4, "failed": 1}
    assert md.extra["runner"] == "PrismRunner"


@pytest.mark.slow
def test_label_on_prism_equals_the_fnapi_runner(prism, world):
    out = str(world["base"] / "prism-labels")
    # No --runner: --prism_location alone selects Prism.
    proc = scaleout.run_job("pipelines.label", scaleout.label_argv(world["audio"], world["model"], out)
                            + ["--prism_location", prism])
    assert f"runner: PrismRunner at {prism} (no --runner, --prism_location given)" in proc.stderr
    scaleout.assert_same_labels(out, world["labels"])
    manifest = scaleout.label_run_manifest(out)
    assert (manifest["counts"]["inputs"], manifest["counts"]["labeled"], manifest["counts"]["dead_letters"]) == (5, 4, 1)
    assert manifest["runner"] == "PrismRunner"
