"""setup.py builds an sdist and a wheel holding every module the workers import.

The sdist is what Dataflow workers install from ``--setup_file ./setup.py`` (Beam runs
``setup.py sdist``, or ``python -m build --sdist`` where installed); the wheel is what the custom
container (``Dockerfile``) installs.  Both are built offline (``--no-build-isolation``) from the
working tree and compared with the source tree file by file; the sdist is then unpacked and its
own ``setup.py`` must still describe the package.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tarfile

import pytest

import package_contents

pytestmark = pytest.mark.slow

REPO = package_contents.REPO


def _run(cmd: list[str], *, cwd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_source_tree_has_the_worker_packages():
    modules = package_contents.source_modules()
    for package in package_contents.PACKAGES:
        assert f"{package}/__init__.py" in modules, f"{package} is not a package"
    for required in ("pipelines/featurize.py", "pipelines/label.py", "transforms/spectrogram.py"):
        assert required in modules


def test_sdist_holds_every_module(tmp_path):
    # What Beam's stager runs for --setup_file when `build` is not installed.
    _run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=REPO)
    (sdist,) = glob.glob(str(tmp_path / "genreflow-*.tar.gz"))
    missing = set(package_contents.source_modules()) - set(package_contents.sdist_modules(sdist))
    assert not missing, f"not in the sdist: {sorted(missing)}"
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (unpacked,) = glob.glob(str(tmp_path / "x" / "genreflow-*"))
    # The unpacked sdist still describes the package (setup.py reads genreflow/__init__.py).
    version = _run([sys.executable, "setup.py", "--version"], cwd=unpacked).stdout.strip().splitlines()[-1]
    from genreflow import __version__

    assert version == __version__


def test_wheel_holds_every_module_and_the_console_script(tmp_path):
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp_path)], cwd=REPO)
    (wheel,) = glob.glob(str(tmp_path / "genreflow-*.whl"))
    missing = set(package_contents.source_modules()) - set(package_contents.wheel_modules(wheel))
    assert not missing, f"not in the wheel: {sorted(missing)}"
    import zipfile

    with zipfile.ZipFile(wheel) as whl:
        entry_points = next(n for n in whl.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert "genreflow = genreflow.cli:main" in whl.read(entry_points).decode()
        metadata = whl.read(next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: apache-beam==2.77.0" in metadata


def test_flex_template_metadata_names_real_options():
    """Every parameter of the Flex Template is an option of the job it launches."""
    from pipelines import label

    with open(os.path.join(REPO, "dataflow", "flex_template_metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["name"] and metadata["parameters"]
    parser = label.build_parser()
    known = {opt.lstrip("-") for action in parser._actions for opt in action.option_strings}
    for param in metadata["parameters"]:
        assert param["name"] in known, f"{param['name']} is not an option of pipelines.label"
        assert param["label"] and param["helpText"]
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional", False)}
    assert {"model_dir", "output"} <= required


def test_dockerfile_builds_on_the_beam_sdk_image():
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = f.read()
    from apache_beam.version import __version__ as beam_version

    assert f"apache/beam_python3.11_sdk:{beam_version}" in text
    assert "libsndfile1" in text
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE" in text
    launcher = os.path.join(REPO, "dataflow", "label_main.py")
    assert os.path.exists(launcher)
