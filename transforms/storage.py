"""Paths and files on any filesystem: the one place that joins URIs, names protocols and hashes files.

Everything goes through fsspec, so the same call works on a local path, ``file://``, ``gs://``,
``s3://`` and ``memory://``.  Nothing here globs a path it is given: an output called
``out[12]`` is that folder, never a pattern.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from typing import Any, Callable, Iterator

import fsspec

__all__ = ["join_uri", "split_protocol", "protocol_of", "is_local", "listed_uri", "read_json",
           "write_json_atomic", "put_file_atomic", "remove_path", "file_sha256", "local_copy"]

logger = logging.getLogger(__name__)

_WILDCARD = re.compile(r"[*?\[]")


def join_uri(root: str, *names: str) -> str:
    """Join path parts onto a local path or a URI with ``/`` (no globbing, no normalisation)."""
    return posixpath.join(root.rstrip("/") or "/", *names)


def split_protocol(uri: str) -> tuple[str, str]:
    """``("s3", "bucket/key")`` for ``s3://bucket/key``; ``("", path)`` for a plain path."""
    if "://" not in uri:
        return "", uri
    scheme, path = uri.split("://", 1)
    return scheme, path


def protocol_of(uri: str) -> str:
    """``"file"`` for plain paths and ``file://``, else the URI scheme (``s3``, ``gs``, ``memory``)."""
    scheme = split_protocol(uri)[0].lower()
    return "file" if scheme in ("", "file", "local") else scheme


def is_local(uri: str) -> bool:
    """True for paths on the local disk (plain paths, ``file://``)."""
    return protocol_of(uri) == "file"


def listed_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URI of a path an fsspec listing returned: as listed on the local disk, else with its
    protocol put back (``bucket/a.wav`` -> ``s3://bucket/a.wav``)."""
    uri = fs.unstrip_protocol(path)
    return path if is_local(uri) else uri


def read_json(uri: str) -> Any:
    """Parse a JSON file through fsspec (``FileNotFoundError`` when it is absent)."""
    with fsspec.open(uri, "r", encoding="utf-8") as f:
        return json.load(f)


def _publish(uri: str, write: Callable[[fsspec.AbstractFileSystem, str], None]) -> None:
    """Make ``uri`` appear whole: a reader sees the old file or the new one, never half of it.

    Local and ``memory://`` paths are written (``write(fs, path)``) to a hidden partial name in the
    same folder, ``.<name>.<8 hex>.tmp``, and renamed; object stores publish an object only when
    its upload completes, which is atomic already, so ``write`` goes to ``uri`` itself.
    """
    fs, path = fsspec.core.url_to_fs(uri)
    if protocol_of(uri) not in ("file", "memory"):
        write(fs, path)
        return
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    partial = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    write(fs, partial)
    fs.mv(partial, path)


def write_json_atomic(uri: str, data: Any) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of it (see :func:`_publish`)."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    _publish(uri, lambda fs, path: fs.pipe_file(path, text.encode("utf-8")))


def put_file_atomic(local: str, uri: str) -> None:
    """Upload the local file ``local`` to ``uri`` so a reader never sees part of it (see :func:`_publish`)."""
    _publish(uri, lambda fs, path: fs.put_file(local, path))


def remove_path(uri: str) -> bool:
    """Delete one file or folder tree, the path taken literally; False, with a warning, when that fails.

    fsspec's ``rm`` expands wildcards, so a path holding ``[``, ``*`` or ``?`` (an output called
    ``out[12]``) is removed file by file from a listing instead, never matched as a pattern.
    """
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if not _WILDCARD.search(path):
            if fs.exists(path):
                fs.rm(path, recursive=True)
        elif is_local(uri):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
        elif fs.exists(path):
            if not fs.isdir(path):
                fs.rm_file(path)
            else:
                entries = fs.find(path, withdirs=True, detail=True)  # a listing: no pattern matching
                for name, info in entries.items():
                    if info.get("type") != "directory":
                        fs.rm_file(name)
                folders = [n for n, i in entries.items() if i.get("type") == "directory"] + [path]
                for name in sorted(folders, key=len, reverse=True):  # stores with real folders (memory://)
                    try:
                        fs.rmdir(name)
                    except (OSError, NotImplementedError):
                        pass
        return True
    except Exception as e:  # cleanup is best effort: a leftover run folder is never read
        logger.warning("could not remove %s: %s", uri, e)
        return False


def file_sha256(uri: str) -> str:
    """SHA-256 (64 hex digits) of a file's bytes, read in 1 MiB blocks (local or any fsspec URL)."""
    digest = hashlib.sha256()
    with fsspec.open(uri, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path for ``uri``: the path itself on the local disk, else a temporary copy (removed
    on exit) with the same extension, for libraries that open only local files (Keras)."""
    fs, path = fsspec.core.url_to_fs(uri)
    if is_local(uri):
        yield path
        return
    fd, local = tempfile.mkstemp(suffix=posixpath.splitext(path)[1])
    os.close(fd)
    try:
        fs.get_file(path, local)
        yield local
    finally:
        if os.path.exists(local):
            os.remove(local)
