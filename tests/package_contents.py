"""What a built genreflow package holds, compared with the source tree.

Dataflow workers install the package that Beam builds from ``--setup_file`` (``setup.py sdist``);
a module that is not in it (a folder without ``__init__.py``, a package left out of
``find_packages``) imports on the launcher and fails only on the workers.
"""

from __future__ import annotations

import os
import tarfile
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The top-level packages the Beam jobs and the trainer import on workers.
PACKAGES = ("genreflow", "pipelines", "transforms", "training")


def source_modules(root: str = REPO) -> list[str]:
    """Every ``.py`` file under :data:`PACKAGES` in the source tree, as a path relative to ``root``."""
    found = []
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            found += [os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
                      for f in files if f.endswith(".py")]
    return sorted(found)


def _modules(names: list[str]) -> list[str]:
    return sorted(n for n in names if n.endswith(".py") and n.split("/", 1)[0] in PACKAGES)


def sdist_modules(path: str) -> list[str]:
    """``.py`` files of :data:`PACKAGES` in an sdist (``name-version/`` prefix removed)."""
    with tarfile.open(path) as tar:
        return _modules([m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name])


def wheel_modules(path: str) -> list[str]:
    """``.py`` files of :data:`PACKAGES` in a wheel."""
    with zipfile.ZipFile(path) as whl:
        return _modules(whl.namelist())
