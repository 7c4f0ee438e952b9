"""Which audio a job reads: glob expansion, manifests, track ids, labels and splits.

Everything here runs in the launcher before the pipeline starts (so a bad pattern or manifest fails
before any work) and is plain Python over fsspec, so it behaves the same on local disks, ``gs://``
(gcsfs), ``s3://`` (s3fs) and ``memory://``.

Glob rules (one rule on every filesystem; Beam's and fsspec's own rules disagree):

- ``*`` and ``?`` and ``[...]`` match within one path component.
- ``**`` as a whole component matches zero or more folders: ``ROOT/**/*.wav`` includes
  ``ROOT/a.wav`` as well as ``ROOT/x/y/a.wav`` (bash ``globstar``, fsspec, pathlib).
- ``**`` glued to a name, Beam style (``ROOT/**.wav``), means the same as ``ROOT/**/*.wav``.
- Brace sets are expanded first: ``ROOT/*/*.{wav,au}`` is ``ROOT/*/*.wav`` plus ``ROOT/*/*.au``.
- A pattern without wildcards names one file, or a folder, which means every file below it.
- Only files are returned; hidden files (name starting with ``.``, e.g. macOS ``._x.wav``) are
  skipped.  Files with an extension that is not audio are returned and become dead letters
  (``unsupported_format``) downstream, so that what was matched is always accounted for.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import posixpath
import re
from typing import Iterable, Sequence

import fsspec

from transforms.spec import SPLITS

__all__ = [
    "TrackRef",
    "expand_inputs",
    "expand_braces",
    "read_manifest",
    "refs_from_uris",
    "assign_split",
    "assign_splits",
    "parse_split_fractions",
    "file_fingerprint",
    "is_local",
    "protocol_of",
]

logger = logging.getLogger(__name__)

_MAGIC = re.compile(r"[*?\[]")
_BRACES = re.compile(r"\{([^{}]*,[^{}]*)\}")


@dataclasses.dataclass(frozen=True)
class TrackRef:
    """One input track, before it is read.

    Attributes
    ----------
    uri : str
        Where the encoded audio is (local path, ``gs://``, ``s3://``, ``memory://``).
    track_id : str
        Stable, unique identifier (see :func:`refs_from_uris`).
    label : str
        Genre label, ``""`` when unlabeled.
    split : str
        ``train``, ``validation``, ``test`` or ``""`` when not assigned yet.
    group : str
        Tracks sharing a group (e.g. an artist) always land in the same split; ``""`` for none.
    """

    uri: str
    track_id: str
    label: str = ""
    split: str = ""
    group: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> "TrackRef":
        return cls(**{f.name: str(data.get(f.name, "") or "") for f in dataclasses.fields(cls)})


# Filesystems -----------------------------------------------------------------------------------
def protocol_of(uri: str) -> str:
    """``"file"`` for plain paths and ``file://``, else the URI scheme (``s3``, ``gs``, ``memory``)."""
    if "://" not in uri:
        return "file"
    scheme = uri.split("://", 1)[0].lower()
    return "file" if scheme in ("file", "local") else scheme


def is_local(uri: str) -> bool:
    """True for paths on the local disk."""
    return protocol_of(uri) == "file"


def _to_uri(fs: fsspec.AbstractFileSystem, path: str, *, local: bool) -> str:
    return path if local else fs.unstrip_protocol(path)


# Globs -----------------------------------------------------------------------------------------
def expand_braces(pattern: str) -> list[str]:
    """Expand brace sets: ``a/*.{wav,au}`` -> ``["a/*.wav", "a/*.au"]`` (nested sets included)."""
    match = _BRACES.search(pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out: list[str] = []
    for option in match.group(1).split(","):
        out.extend(expand_braces(head + option + tail))
    return out


def _normalise_globstar(pattern: str) -> str:
    """Beam-style ``ROOT/**.wav`` -> ``ROOT/**/*.wav``; ``**`` as a whole component is kept."""
    return re.sub(r"(^|/)\*\*(?=[^/])", r"\1**/*", pattern)


def _visible(path: str) -> bool:
    return not posixpath.basename(path.rstrip("/")).startswith(".")


def _expand_one(pattern: str) -> list[str]:
    local = is_local(pattern)
    fs, path = fsspec.core.url_to_fs(pattern)
    if not _MAGIC.search(path):
        if not fs.exists(path):
            return []
        if fs.isdir(path):
            path = path.rstrip("/") + "/**"
        else:
            return [_to_uri(fs, path, local=local)]
    found = fs.glob(_normalise_globstar(path), detail=True)
    files = [p for p, info in found.items() if info.get("type") != "directory" and _visible(p)]
    return [_to_uri(fs, p, local=local) for p in files]


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """Expand glob patterns into the sorted, de-duplicated list of file URIs they match.

    Parameters
    ----------
    patterns : sequence of str
        Glob patterns or paths, on any fsspec filesystem (see the module docstring for the rules).

    Returns
    -------
    list of str
        Local files as absolute paths, others as full URIs (``s3://bucket/key``), sorted.

    Raises
    ------
    ValueError
        When there are no patterns, or when one of them matches no file (naming it).
    """
    if not patterns:
        raise ValueError("no input patterns given")
    uris: set[str] = set()
    for pattern in patterns:
        matched: list[str] = []
        for expanded in expand_braces(pattern):
            matched.extend(_expand_one(expanded))
        if not matched:
            raise ValueError(f"input pattern {pattern!r} matches no files")
        uris.update(matched)
    return sorted(uris)


# Track ids and labels --------------------------------------------------------------------------
def _components(uri: str) -> list[str]:
    path = uri.split("://", 1)[1] if "://" in uri else uri
    return [c for c in path.split("/") if c]


def refs_from_uris(uris: Iterable[str]) -> list[TrackRef]:
    """Track references for files laid out as ``<root>/<label>/<file>`` (the GTZAN layout).

    The label is the name of the file's parent folder.  The track id is the shortest trailing part
    of the path, at least ``<parent>/<file name>``, that is unique among ``uris``:
    ``gtzan/blues/blues.00000.wav`` -> ``blues/blues.00000.wav``.  It does not depend on where the
    collection is stored (local disk or a bucket), so splits hashed from it survive a copy.

    Parameters
    ----------
    uris : iterable of str
        File URIs, e.g. from :func:`expand_inputs`.

    Returns
    -------
    list of TrackRef
        In the order of ``uris``, with empty ``split`` and ``group``.
    """
    uris = list(dict.fromkeys(uris))
    parts = {uri: _components(uri) for uri in uris}
    depth = {uri: min(2, len(p)) for uri, p in parts.items()}
    while True:
        ids: dict[str, list[str]] = {}
        for uri in uris:
            ids.setdefault("/".join(parts[uri][-depth[uri] :]), []).append(uri)
        clashes = [group for group in ids.values() if len(group) > 1]
        grown = False
        for group in clashes:
            for uri in group:
                if depth[uri] < len(parts[uri]):
                    depth[uri] += 1
                    grown = True
        if not clashes or not grown:
            break
    refs = []
    for uri in uris:
        p = parts[uri]
        track_id = "/".join(p[-depth[uri] :]) if p else uri
        if len(ids.get(track_id, [])) > 1:  # only possible for identical paths on two filesystems
            track_id = uri
        refs.append(TrackRef(uri=uri, track_id=track_id, label=p[-2] if len(p) >= 2 else ""))
    return refs


# Manifests -------------------------------------------------------------------------------------
def _resolve(uri: str, base: str) -> str:
    if "://" in uri or uri.startswith("/"):
        return uri
    return posixpath.join(base, uri) if base else uri


def read_manifest(path: str) -> list[TrackRef]:
    """Read a manifest: CSV (``.csv``) or JSON Lines (``.jsonl``, ``.json``, ``.ndjson``).

    Columns: ``uri`` (required), ``label``, ``track_id``, ``split``, ``group`` (optional).  A
    relative ``uri`` is resolved against the manifest's folder.  A missing ``track_id`` is derived
    as in :func:`refs_from_uris`; a missing ``label`` means unlabeled (the folder name is *not*
    used: a manifest says what it means).

    Raises
    ------
    ValueError
        On a missing ``uri`` column or value, an unknown split name, a duplicate ``uri`` or
        ``track_id``, or an empty manifest; messages name the line.
    FileNotFoundError
        When the manifest does not exist.
    """
    with fsspec.open(path, "r", encoding="utf-8") as f:
        text = f.read()
    base = posixpath.dirname(path)
    stripped = text.lstrip()
    is_json = path.lower().endswith((".jsonl", ".json", ".ndjson")) or stripped.startswith("{")
    rows: list[tuple[int, dict]] = []
    if is_json:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object per line")
            rows.append((lineno, row))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "uri" not in [c.strip() for c in reader.fieldnames]:
            raise ValueError(f"{path}: manifest needs a 'uri' column, found {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            rows.append((lineno, {(k or "").strip(): (v or "").strip() for k, v in row.items()}))
    if not rows:
        raise ValueError(f"{path}: manifest has no rows")

    entries = []
    for lineno, row in rows:
        uri = str(row.get("uri") or "").strip()
        if not uri:
            raise ValueError(f"{path}:{lineno}: missing 'uri'")
        split = str(row.get("split") or "").strip()
        if split and split not in SPLITS:
            raise ValueError(f"{path}:{lineno}: split {split!r} is not one of {SPLITS}")
        entries.append(
            (
                lineno,
                _resolve(uri, base),
                str(row.get("track_id") or "").strip(),
                str(row.get("label") or "").strip(),
                split,
                str(row.get("group") or "").strip(),
            )
        )
    seen_uris: dict[str, int] = {}
    for lineno, uri, *_ in entries:
        if uri in seen_uris:
            raise ValueError(f"{path}:{lineno}: uri {uri!r} repeats line {seen_uris[uri]}")
        seen_uris[uri] = lineno
    derived = {r.uri: r.track_id for r in refs_from_uris(e[1] for e in entries)}
    refs, seen_ids = [], {}
    for lineno, uri, track_id, label, split, group in entries:
        track_id = track_id or derived[uri]
        if track_id in seen_ids:
            raise ValueError(f"{path}:{lineno}: track_id {track_id!r} repeats line {seen_ids[track_id]}")
        seen_ids[track_id] = lineno
        refs.append(TrackRef(uri=uri, track_id=track_id, label=label, split=split, group=group))
    return refs


# Splits ----------------------------------------------------------------------------------------
def parse_split_fractions(text: str) -> tuple[float, float, float]:
    """Parse ``"0.8,0.1,0.1"``: three non-negative fractions (train, validation, test) summing to 1.

    Raises
    ------
    ValueError
        With a one-line explanation.
    """
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"split fractions must be numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(values) != len(SPLITS):
        raise ValueError(f"need {len(SPLITS)} split fractions ({','.join(SPLITS)}), got {text!r}")
    if any(not v >= 0 for v in values):
        raise ValueError(f"split fractions must be >= 0, got {text!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {text!r} (sum {sum(values):g})")
    return values  # type: ignore[return-value]


def assign_split(key: str, fractions: Sequence[float]) -> str:
    """Deterministic split of a track or group key.

    The first 8 bytes of ``sha256(key)`` give a number ``u`` uniform in [0, 1); the split is the
    first whose cumulative fraction exceeds ``u``.  Same key, same split, in every process and
    version.

    Parameters
    ----------
    key : str
        The group (when given) or the track id.
    fractions : sequence of 3 float
        Train, validation and test fractions, summing to 1.
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    cumulative = 0.0
    for name, fraction in zip(SPLITS, fractions):
        cumulative += fraction
        if u < cumulative:
            return name
    # u is below 1 and the fractions sum to 1 up to rounding: the last non-empty split.
    return [name for name, fraction in zip(SPLITS, fractions) if fraction > 0][-1]


def assign_splits(refs: Iterable[TrackRef], fractions: Sequence[float]) -> list[TrackRef]:
    """Fill in ``split`` where it is empty, hashing ``group`` if set, else ``track_id``.

    A split given already (a manifest's ``split`` column) is kept.
    """
    return [
        ref if ref.split else dataclasses.replace(ref, split=assign_split(ref.group or ref.track_id, fractions))
        for ref in refs
    ]


# Fingerprints ----------------------------------------------------------------------------------
def file_fingerprint(uri: str) -> str:
    """Cheap identity of a file's current content, without reading it.

    Uses, in order of preference, the object store's checksum or version (``ETag``, GCS
    ``generation``/``md5Hash``), else size and modification time.  Returns ``""`` when the file's
    info cannot be read.
    """
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        info = fs.info(path)
    except Exception as e:  # fingerprints are advisory; never fail a job over one
        logger.debug("no fingerprint for %s: %s", uri, e)
        return ""
    for key in ("ETag", "etag", "md5Hash", "generation", "crc32c"):
        if info.get(key):
            return f"{key.lower()}:{str(info[key]).strip(chr(34))}"
    mtime = info.get("mtime") or info.get("LastModified") or info.get("updated") or info.get("created")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    return f"size:{info.get('size')}:mtime:{mtime}"
