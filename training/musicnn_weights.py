"""Where the musicnn checkpoints live, and the one command that puts them there.

The pretrained musicnn models (Pons & Serra 2019) ship as TF1 checkpoints inside the PyPI wheel
``musicnn==0.1.0`` (ISC licence, ``LICENSE.md`` in the wheel).  That package declares
``numpy<1.17`` and ``tensorflow>=1.14``, so it must never be installed next to genreflow; instead
``make install`` runs::

    python -m training.musicnn_weights          # = pip download --no-deps musicnn==0.1.0, then extract

which downloads the wheel (from PyPI or pip's cache), checks its SHA-256, and extracts the two
musicnn checkpoint folders and the licence into the cache::

    $GENREFLOW_CACHE/musicnn/MSD_musicnn/{model.index,model.data-00000-of-00001,model.meta,config.json}
    $GENREFLOW_CACHE/musicnn/MTT_musicnn/...
    $GENREFLOW_CACHE/musicnn/LICENSE.md

``GENREFLOW_CACHE`` defaults to ``.cache`` in the source checkout (git-ignored).  Nothing here runs
at training or labeling time: a missing cache is an error that names this command.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Sequence

from transforms.storage import file_sha256

__all__ = [
    "WHEEL",
    "WHEEL_SHA256",
    "CHECKPOINTS",
    "INSTALL_COMMAND",
    "WeightsMissingError",
    "cache_dir",
    "checkpoint_prefix",
    "fetch",
    "main",
]

logger = logging.getLogger(__name__)

#: The pip requirement whose wheel holds the checkpoints.
WHEEL = "musicnn==0.1.0"
#: SHA-256 of ``musicnn-0.1.0-py3-none-any.whl`` on PyPI.
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
#: Checkpoint folders extracted from the wheel (the two musicnn models; the VGG ones are not used).
CHECKPOINTS = ("MSD_musicnn", "MTT_musicnn")
#: Files of one checkpoint folder in the wheel (its TF1 checkpoint prefix is ``<folder>/``, files
#: without a stem) -> names in the cache (prefix ``<folder>/model``, which ``tf.train.load_checkpoint``
#: takes as a prefix, not as a folder that needs a ``checkpoint`` file).
CHECKPOINT_FILES = {
    ".index": "model.index",
    ".data-00000-of-00001": "model.data-00000-of-00001",
    ".meta": "model.meta",
    "config.json": "config.json",
}
#: What a user runs when the weights are missing.
INSTALL_COMMAND = "make install  (or: python -m training.musicnn_weights)"
_COMPLETE = ".complete"


class WeightsMissingError(FileNotFoundError):
    """The musicnn checkpoints are not in the cache."""


def cache_dir() -> pathlib.Path:
    """The musicnn cache folder: ``$GENREFLOW_CACHE/musicnn``, default ``<checkout>/.cache/musicnn``."""
    root = os.environ.get("GENREFLOW_CACHE")
    base = pathlib.Path(root) if root else pathlib.Path(__file__).resolve().parents[1] / ".cache"
    return base / "musicnn"


def checkpoint_prefix(name: str, *, root: pathlib.Path | None = None) -> str:
    """The TF1 checkpoint prefix of ``name`` (one of :data:`CHECKPOINTS`) in the cache
    (``<cache>/<name>/model``; the ``.meta`` graph is ``<prefix>.meta``).

    Raises
    ------
    WeightsMissingError
        In one line, naming the command that installs the weights.
    """
    if name not in CHECKPOINTS:
        raise ValueError(f"unknown musicnn checkpoint {name!r}; choose one of {CHECKPOINTS}")
    folder = (root or cache_dir()) / name
    if not (folder / "model.index").is_file() or not (folder.parent / _COMPLETE).is_file():
        raise WeightsMissingError(
            f"musicnn weights not found in {folder.parent}; install them with: {INSTALL_COMMAND}"
        )
    return str(folder / "model")


def extract(wheel: pathlib.Path, *, root: pathlib.Path) -> pathlib.Path:
    """Extract :data:`CHECKPOINTS` and ``LICENSE.md`` from the wheel file into ``root``.

    The folder is replaced as a whole (written next to it, then renamed), so a reader sees either
    the old complete cache or the new one.
    """
    digest = file_sha256(str(wheel))
    if digest != WHEEL_SHA256:
        raise ValueError(f"{wheel.name}: SHA-256 {digest} is not the expected {WHEEL_SHA256}")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".musicnn-", dir=root.parent))
    staging.chmod(0o755)
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for ckpt in CHECKPOINTS:
                (staging / ckpt).mkdir()
                for fname, target in CHECKPOINT_FILES.items():
                    member = f"musicnn/{ckpt}/{fname}"
                    if member not in names:
                        raise ValueError(f"{wheel.name} has no {member}")
                    (staging / ckpt / target).write_bytes(zf.read(member))
            licence = next(n for n in names if n.endswith(".dist-info/LICENSE.md"))
            (staging / "LICENSE.md").write_bytes(zf.read(licence))
        (staging / _COMPLETE).write_text(f"{WHEEL} sha256={digest}\n")
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root


def fetch(*, root: pathlib.Path | None = None, force: bool = False) -> pathlib.Path:
    """Download the wheel with ``pip download --no-deps`` (nothing is installed) and extract it.

    Parameters
    ----------
    root : pathlib.Path, optional
        Target folder; :func:`cache_dir` when omitted.
    force : bool
        Download and extract again even when the cache is complete.

    Returns
    -------
    pathlib.Path
        The cache folder.
    """
    root = root or cache_dir()
    if (root / _COMPLETE).is_file() and not force:
        logger.info("musicnn weights already in %s", root)
        return root
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
             "--dest", tmp, WHEEL],
            check=True,
        )
        wheel = next(pathlib.Path(tmp).glob("musicnn-*.whl"))
        extract(wheel, root=root)
    logger.info("extracted musicnn checkpoints %s into %s", CHECKPOINTS, root)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.musicnn_weights [--force]``: fill the cache; prints its path."""
    p = argparse.ArgumentParser(
        prog="python -m training.musicnn_weights",
        description=f"Download {WHEEL} with `pip download --no-deps` (not installed) and extract its "
        "musicnn checkpoints into $GENREFLOW_CACHE/musicnn (default: .cache/musicnn in the checkout).",
    )
    p.add_argument("--force", action="store_true", help="download and extract again")
    args = p.parse_args(argv)
    print(fetch(force=args.force))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
