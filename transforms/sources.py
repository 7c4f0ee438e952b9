"""Which audio a job reads: glob patterns and manifests, read *inside* the pipeline.

The launcher only checks that options make sense (:func:`check_patterns`,
:func:`check_manifest_header`); matching files, reading manifest rows, deriving track ids and
labels, removing duplicates and sampling all happen on workers (:class:`ReadTrackRefs`), so
nothing in the launcher grows with the catalog.  Each piece is a plain function, unit-tested
without Beam; everything goes through fsspec, so it behaves the same on local disks, ``gs://``,
``s3://`` and ``memory://``.

Glob rules (one rule on every filesystem; Beam's and fsspec's own rules disagree):

- ``*`` and ``?`` and ``[...]`` match within one path component; ``[[]`` is a literal ``[``
  (what Python's ``glob.escape`` writes).  A pattern that names an existing file or folder as
  written (``/music/live [2019]``) is taken literally.
- ``**`` as a whole component matches zero or more folders: ``ROOT/**/*.wav`` includes
  ``ROOT/a.wav`` as well as ``ROOT/x/y/a.wav`` (bash ``globstar``, fsspec, pathlib).
- ``**`` glued to a name, Beam style (``ROOT/**.wav``), means the same as ``ROOT/**/*.wav``.
- Brace sets are expanded first: ``ROOT/*/*.{wav,au}`` is ``ROOT/*/*.wav`` plus ``ROOT/*/*.au``.
- A pattern without wildcards names one file, or a folder, which means every file below it.
- Only files are returned; hidden files (name starting with ``.``, e.g. macOS ``._x.wav``) are
  skipped.  Files with an extension that is not audio are returned and become dead letters
  (``unsupported_format``) downstream, so that what was matched is always accounted for.  A
  folder that cannot be listed becomes one dead letter (``unreadable_folder``).

Track ids (the rule depends on one file only, so adding inputs never renames a track):

- ``--input``: the file's path relative to the pattern's *base*, the leading folders that hold
  no wildcard: ``gtzan/**/*.wav`` gives ``gtzan/blues/blues.00000.wav`` the id
  ``blues/blues.00000.wav``; a pattern naming one file gives its file name.  The id does not
  depend on where the collection is stored, so hashed splits survive a copy to a bucket.
- ``--manifest``: the ``track_id`` column, else the ``uri`` exactly as written in the manifest.

The label of a ``--input`` file is its parent folder's name; a manifest's label is its ``label``
column (a manifest says what it means; folders are not guessed).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import posixpath
import re
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import fsspec

from transforms.deadletters import DEAD_LETTERS, DeadLetter
from transforms.spec import SPLITS
from transforms.storage import join_uri, listed_uri, split_protocol

__all__ = [
    "TrackRef",
    "ReadTrackRefs",
    "DeduplicateTracks",
    "expand_braces",
    "pattern_base",
    "pattern_regex",
    "match_pattern",
    "expand_inputs",
    "refs_from_pattern",
    "check_patterns",
    "manifest_files",
    "check_manifest_header",
    "manifest_rows",
    "ref_from_manifest_row",
    "read_manifest",
    "listing_version",
    "in_sample",
    "unit_hash",
    "assign_split",
    "assign_splits",
    "parse_split_fractions",
    "DUPLICATE",
]

logger = logging.getLogger(__name__)

_MAGIC = re.compile(r"[*?\[]")
_BRACES = re.compile(r"\{([^{}]*,[^{}]*)\}")
#: Dead-letter reason for a second input with an id (or manifest uri) that is already taken.
DUPLICATE = "duplicate_track_id"


@dataclasses.dataclass(frozen=True)
class TrackRef:
    """One input track, before it is read.

    Attributes
    ----------
    uri : str
        Where the encoded audio is (local path, ``gs://``, ``s3://``, ``memory://``).
    track_id : str
        Stable, unique identifier (see the module docstring).
    label : str
        Genre label, ``""`` when unlabeled.
    split : str
        ``train``, ``validation``, ``test`` or ``""`` when not assigned yet.
    group : str
        Tracks sharing a group (e.g. an artist) always land in the same split; ``""`` for none.
    listing : str
        What the file listing (or the manifest) said about the file's version, without reading
        it: ``etag:...``, ``size:N:mtime:T`` (see :func:`listing_version`); ``""`` unknown.
        The label job skips a track labeled earlier with the same value.
    """

    uri: str
    track_id: str
    label: str = ""
    split: str = ""
    group: str = ""
    listing: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> "TrackRef":
        return cls(**{f.name: str(data.get(f.name, "") or "") for f in dataclasses.fields(cls)})


# Filesystems -----------------------------------------------------------------------------------
def listing_version(info: dict[str, Any]) -> str:
    """A file's version from its listing entry (fsspec ``info``/``ls`` detail), reading no bytes.

    The object store's checksum or generation (``ETag``, GCS ``md5Hash``/``generation``) when there
    is one, else size and modification time.
    """
    for key in ("ETag", "etag", "md5Hash", "generation", "crc32c"):
        if info.get(key):
            return f"{key.lower()}:{str(info[key]).strip(chr(34))}"
    mtime = info.get("mtime") or info.get("LastModified") or info.get("updated") or info.get("created")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    return f"size:{info.get('size')}:mtime:{mtime}"


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


def _split_path(path: str) -> tuple[str, list[str]]:
    """``("/", [...])`` for absolute paths, ``("", [...])`` for bucket paths, components."""
    lead = "/" if path.startswith("/") else ""
    return lead, [c for c in path.split("/") if c]


def pattern_base(pattern: str) -> str:
    """The leading folders of a pattern (one brace option) that hold no wildcard.

    ``/data/gtzan/**/*.wav`` -> ``/data/gtzan``; ``s3://b/x/*/*.mp3`` -> ``s3://b/x``.  For a
    pattern without wildcards, the pattern itself (a file or a folder).
    """
    scheme, rest = split_protocol(pattern)
    lead, comps = _split_path(rest)
    fixed = []
    for c in comps:
        if _MAGIC.search(c):
            break
        fixed.append(c)
    base = lead + "/".join(fixed)
    return f"{scheme}://{base}" if scheme else base


def _component_regex(comp: str) -> str:
    out, i = [], 0
    while i < len(comp):
        ch = comp[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = i + 1
            if j < len(comp) and comp[j] in "!^":
                j += 1
            if j < len(comp) and comp[j] == "]":
                j += 1
            while j < len(comp) and comp[j] != "]":
                j += 1
            if j >= len(comp):
                out.append(re.escape(ch))
            else:
                body = comp[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
                i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def pattern_regex(relative: str) -> re.Pattern:
    """Regex over paths relative to the base for the wildcard part of a pattern.

    ``**/*.wav`` matches ``a.wav`` and ``x/y/a.wav``; ``*/*.wav`` only ``x/a.wav``; a trailing
    ``**`` matches every file below.
    """
    comps = [c for c in relative.split("/") if c] or ["**"]
    parts = []
    for k, c in enumerate(comps):
        last = k == len(comps) - 1
        if c == "**":
            parts.append("(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*")
        else:
            parts.append(_component_regex(c) + ("" if last else "/"))
    return re.compile("".join(parts) + r"\Z")


def _visible(path: str) -> bool:
    return not posixpath.basename(path.rstrip("/")).startswith(".")


@dataclasses.dataclass(frozen=True)
class Match:
    """One file a pattern matched: ``uri``, its path ``relative`` to the pattern base, listing info."""

    uri: str
    relative: str
    listing: str


def match_pattern(pattern: str, *, exclude: Sequence[str] = ()) -> Iterator[Match | DeadLetter]:
    """Stream the files one pattern (brace sets allowed) matches, folder by folder.

    Memory is bounded by one folder's listing, whatever the number of files.  A folder that
    cannot be listed yields a :class:`DeadLetter` (``unreadable_folder``) instead of vanishing.

    Parameters
    ----------
    pattern : str
        Glob pattern or path on any fsspec filesystem (see the module docstring for the rules).
    exclude : sequence of str
        Folders (URIs) whose files are never matched, e.g. the job's own output.
    """
    for option in expand_braces(pattern):
        yield from _match_one(_normalise_globstar(option), exclude=exclude)


def _under(path: str, folders: Sequence[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def _literal(pattern: str) -> bool:
    """A pattern with wildcard characters that names an existing path is taken as written."""
    fs, path = fsspec.core.url_to_fs(pattern)
    return bool(_MAGIC.search(path)) and fs.exists(path)


def _match_one(pattern: str, *, exclude: Sequence[str]) -> Iterator[Match | DeadLetter]:
    base_uri = pattern if _literal(pattern) else pattern_base(pattern)
    fs, base = fsspec.core.url_to_fs(base_uri)
    excluded = [fsspec.core.url_to_fs(e)[1].rstrip("/") for e in exclude]
    base = base.rstrip("/") or "/"
    relative_pattern = pattern[len(base_uri):].lstrip("/")
    if not relative_pattern:  # no wildcard: one file, or every file below a folder
        try:
            info = fs.info(base)
        except FileNotFoundError:
            return
        except OSError as e:
            yield DeadLetter(uri=base_uri, stage="match", reason="unreadable_folder", message=f"{type(e).__name__}: {e}")
            return
        if info.get("type") != "directory":
            if _visible(base) and not _under(base, excluded):
                yield Match(listed_uri(fs, base), posixpath.basename(base), listing_version(info))
            return
        relative_pattern = "**"
    regex = pattern_regex(relative_pattern)
    depth = None if "**" in relative_pattern else len([c for c in relative_pattern.split("/") if c])
    for folder, entries in _walk(fs, base, maxdepth=depth):
        if isinstance(entries, BaseException):
            yield DeadLetter(uri=listed_uri(fs, folder), stage="match", reason="unreadable_folder",
                             message=f"{type(entries).__name__}: {entries}")
            continue
        for info in entries:
            path = info["name"].rstrip("/")
            if not _visible(path) or _under(path, excluded):
                continue
            rel = path[len(base):].lstrip("/")
            if regex.match(rel):
                yield Match(listed_uri(fs, path), rel, listing_version(info))


def _walk(fs: fsspec.AbstractFileSystem, top: str, *, maxdepth: int | None):
    """Depth-first ``(folder, [file infos])``, or ``(folder, error)`` for a folder that cannot be
    listed (fsspec's own ``walk`` drops errors below the top folder).  One listing in memory at a time."""
    pending = [(top, 1)]
    while pending:
        folder, level = pending.pop()
        try:
            listing = fs.ls(folder, detail=True)
        except FileNotFoundError:
            continue
        except OSError as e:
            yield folder, e
            continue
        files, subfolders = [], []
        for info in listing:
            name = info["name"].rstrip("/")
            if info.get("type") == "directory":
                if name != folder.rstrip("/") and (maxdepth is None or level < maxdepth):
                    subfolders.append(name)
            else:
                files.append(info)
        yield folder, sorted(files, key=lambda i: i["name"])
        pending.extend((d, level + 1) for d in sorted(subfolders, reverse=True))


def _label_of(uri: str) -> str:
    path = split_protocol(uri)[1]
    parts = [c for c in path.split("/") if c]
    return parts[-2] if len(parts) >= 2 else ""


def refs_from_pattern(pattern: str, *, exclude: Sequence[str] = ()) -> Iterator[TrackRef | DeadLetter]:
    """:func:`match_pattern` as :class:`TrackRef` (id relative to the base, label = parent folder)."""
    for m in match_pattern(pattern, exclude=exclude):
        if isinstance(m, DeadLetter):
            yield m
        else:
            yield TrackRef(uri=m.uri, track_id=m.relative, label=_label_of(m.uri), listing=m.listing)


def expand_inputs(patterns: Sequence[str]) -> list[str]:
    """All file URIs the patterns match, sorted and de-duplicated (small collections and tests).

    Raises
    ------
    ValueError
        When there are no patterns, or one of them matches no file (naming it).
    """
    if not patterns:
        raise ValueError("no input patterns given")
    uris: set[str] = set()
    for pattern in patterns:
        found = [m.uri for m in match_pattern(pattern) if isinstance(m, Match)]
        if not found:
            raise ValueError(f"input pattern {pattern!r} matches no files")
        uris.update(found)
    return sorted(uris)


def check_patterns(patterns: Sequence[str]) -> None:
    """Launcher check: every pattern's base folder (or file) exists.  One metadata call each.

    Raises
    ------
    ValueError
        Naming the pattern whose base does not exist.
    """
    if not patterns:
        raise ValueError("no input patterns given")
    for pattern in patterns:
        for option in expand_braces(pattern):
            base = pattern_base(_normalise_globstar(option))
            fs, path = fsspec.core.url_to_fs(base)
            if not fs.exists(path.rstrip("/") or "/"):
                raise ValueError(f"input pattern {pattern!r}: {base} does not exist")


# Manifests -------------------------------------------------------------------------------------
_MANIFEST_COLUMNS = ("uri", "track_id", "label", "split", "group", "listing")


def _manifest_kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    return "csv"


def manifest_files(pattern: str) -> list[str]:
    """The manifest files a ``--manifest`` value names: one file or a glob of many (sorted URIs)."""
    fs, path = fsspec.core.url_to_fs(pattern)
    if not _MAGIC.search(path):
        return [listed_uri(fs, path)] if fs.isfile(path) else []
    return sorted(listed_uri(fs, p) for p in fs.glob(path) if fs.isfile(p) and _visible(p))


def check_manifest_header(pattern: str) -> list[str]:
    """Launcher check: the manifest exists and its first file has a ``uri`` column.

    Reads the file list and one header (CSV first line, first JSON line or the Parquet schema),
    never the rows.  Returns the manifest files.

    Raises
    ------
    ValueError
        When no file matches or the header has no ``uri`` column.
    """
    files = manifest_files(pattern)
    if not files:
        raise ValueError(f"manifest {pattern!r} matches no file")
    first = files[0]
    kind = _manifest_kind(first)
    if kind == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(first, "rb") as f:
            columns = pq.ParquetFile(f).schema_arrow.names
    else:
        with fsspec.open(first, "r", encoding="utf-8") as f:
            line = next((ln for ln in f if ln.strip()), "")
        if kind == "jsonl" or line.lstrip().startswith("{"):
            try:
                columns = list(json.loads(line)) if line.strip() else []
            except json.JSONDecodeError as e:
                raise ValueError(f"{first}:1: not valid JSON ({e.msg})") from None
        else:
            columns = [c.strip() for c in next(csv.reader([line]), [])]
    if "uri" not in columns:
        raise ValueError(f"{first}: manifest needs a 'uri' column, found {columns}")
    return files


def manifest_rows(path: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Stream ``(line number, row)`` from one CSV, JSON Lines or Parquet manifest file.

    A JSON line that does not parse yields ``(line, error message)`` instead of a dict.  Memory is
    one Parquet row group or one line at a time.
    """
    kind = _manifest_kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            names = [c for c in pf.schema_arrow.names if c in _MANIFEST_COLUMNS]
            lineno = 0
            for batch in pf.iter_batches(batch_size=4096, columns=names):
                for row in batch.to_pylist():
                    lineno += 1
                    yield lineno, row
        return
    with fsspec.open(path, "r", encoding="utf-8", newline="") as f:
        first = f.readline()
        f.seek(0)
        if kind == "jsonl" or first.lstrip().startswith("{"):
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield lineno, f"not valid JSON ({e.msg})"
                    continue
                yield lineno, row if isinstance(row, dict) else "expected a JSON object per line"
        else:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}


def _resolve(uri: str, base: str) -> str:
    if split_protocol(uri)[0] or uri.startswith("/"):
        return uri
    return join_uri(base, uri) if base else uri


def ref_from_manifest_row(row: dict[str, Any] | str, *, path: str, lineno: int) -> TrackRef | DeadLetter:
    """One manifest row -> :class:`TrackRef`, or a ``bad_manifest_row`` dead letter naming the line.

    A relative ``uri`` is resolved against the manifest's folder; the track id is the
    ``track_id`` column, else the ``uri`` as written.
    """
    where = f"{path}:{lineno}"

    def bad(message: str) -> DeadLetter:
        return DeadLetter(uri=where, stage="manifest", reason="bad_manifest_row", message=f"{where}: {message}")

    if isinstance(row, str):
        return bad(row)
    written = str(row.get("uri") or "").strip()
    if not written:
        return bad("missing 'uri'")
    split = str(row.get("split") or "").strip()
    if split and split not in SPLITS:
        return bad(f"split {split!r} is not one of {SPLITS}")
    return TrackRef(
        uri=_resolve(written, posixpath.dirname(path)),
        track_id=str(row.get("track_id") or "").strip() or written,
        label=str(row.get("label") or "").strip(),
        split=split,
        group=str(row.get("group") or "").strip(),
        listing=str(row.get("listing") or "").strip(),
    )


def read_manifest(pattern: str) -> list[TrackRef]:
    """Every row of a manifest as :class:`TrackRef` (small manifests and tests; jobs stream it).

    Raises
    ------
    ValueError
        On a bad header, a bad row (naming its line), a repeated ``uri`` or ``track_id``, or no rows.
    """
    refs: list[TrackRef] = []
    seen: dict[str, str] = {}
    for path in check_manifest_header(pattern):
        for lineno, row in manifest_rows(path):
            ref = ref_from_manifest_row(row, path=path, lineno=lineno)
            if isinstance(ref, DeadLetter):
                raise ValueError(ref.message)
            for key, what in ((ref.uri, "uri"), (ref.track_id, "track_id")):
                if (what, key) in seen:
                    raise ValueError(f"{path}:{lineno}: {what} {key!r} repeats {seen[(what, key)]}")
                seen[(what, key)] = f"{path}:{lineno}"
            refs.append(ref)
    if not refs:
        raise ValueError(f"{pattern}: manifest has no rows")
    return refs


# Sampling --------------------------------------------------------------------------------------
def unit_hash(key: str) -> float:
    """The first 8 bytes of ``sha256(key)`` as a number in [0, 1): same key, same value, anywhere."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_sample(track_id: str, fraction: float) -> bool:
    """``--sample``: keep a track when :func:`unit_hash` of its id is below ``fraction``."""
    return unit_hash(track_id) < fraction


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
    u = unit_hash(key)
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



# Beam ------------------------------------------------------------------------------------------
def _refs_of_pattern(item: tuple[int, str], exclude: Sequence[str]) -> Iterator:
    order, pattern = item
    for ref in refs_from_pattern(pattern, exclude=exclude):
        if isinstance(ref, DeadLetter):
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, ref)
        else:
            yield ((order, 0), ref, False)


def _refs_of_manifest(item: tuple[int, str]) -> Iterator:
    order, path = item
    for lineno, row in manifest_rows(path):
        ref = ref_from_manifest_row(row, path=path, lineno=lineno)
        if isinstance(ref, DeadLetter):
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, ref)
        else:
            yield ((order, lineno), ref, True)


def _manifest_files_of(pattern: str) -> Iterator[tuple[int, str]]:
    yield from enumerate(manifest_files(pattern))


def pick_unique(
    candidates: Iterable[tuple[tuple[int, int], TrackRef, bool]],
) -> tuple[TrackRef | None, list[DeadLetter]]:
    """Of the inputs that share a key, keep the first (pattern order, then manifest line).

    Inputs are ``(order, ref, from_manifest)``.  A file that several patterns match is one input
    (the first pattern's ref is kept, the others vanish: they are the same file).  Any other
    repeat (a second file with the same track id, a manifest row repeating a uri or an id) is an
    input of its own and becomes a ``duplicate_track_id`` dead letter.
    """
    ordered = sorted(candidates, key=lambda c: (c[0], c[1].uri))
    if not ordered:
        return None, []
    _, keep, _ = ordered[0]
    letters = []
    for _, ref, from_manifest in ordered[1:]:
        if ref.uri == keep.uri and not from_manifest:
            continue  # the same file, matched by two patterns
        letters.append(DeadLetter(uri=ref.uri, stage="match", reason=DUPLICATE, track_id=ref.track_id,
                                  message=f"track id {ref.track_id!r} or uri is taken by {keep.uri}"))
    return keep, letters


def _unique_by(keyed: tuple[str, Iterable]) -> Iterator:
    _, candidates = keyed
    keep, letters = pick_unique(list(candidates))
    for letter in letters:
        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
    if keep is not None:
        yield keep


class DeduplicateTracks(beam.PTransform):
    """``(order, TrackRef, from_manifest)`` -> unique :class:`TrackRef` (main) and dead letters.

    Two shuffles of small records: by uri (a file matched twice is one input), then by track id
    (two files may not share an id).  See :func:`pick_unique`.
    """

    def expand(self, candidates):
        by_uri = (
            candidates
            | "ByUri" >> beam.Map(lambda c: (c[1].uri, c))
            | "GroupUri" >> beam.GroupByKey()
            | "UniqueUri" >> beam.FlatMap(_unique_by).with_outputs(DEAD_LETTERS, main="refs")
        )
        by_id = (
            by_uri.refs
            | "ById" >> beam.Map(lambda r: (r.track_id, ((0, 0), r, True)))
            | "GroupId" >> beam.GroupByKey()
            | "UniqueId" >> beam.FlatMap(_unique_by).with_outputs(DEAD_LETTERS, main="refs")
        )
        dead = (by_uri[DEAD_LETTERS], by_id[DEAD_LETTERS]) | "DuplicateLetters" >> beam.Flatten()
        return {"refs": by_id.refs, DEAD_LETTERS: dead}


class ReadTrackRefs(beam.PTransform):
    """Patterns or a manifest -> :class:`TrackRef` per input, inside the pipeline.

    Parameters
    ----------
    patterns : sequence of str, optional
        ``--input`` glob patterns (each listed on one worker, folder by folder, then spread out).
    manifest : str, optional
        ``--manifest``: one CSV / JSON Lines / Parquet file or a glob of many (each file read by
        one worker, streaming).
    exclude : sequence of str
        Folders never matched by patterns (the job's own output).
    sample : float, optional
        Keep tracks whose :func:`unit_hash` of the id is below ``sample``.
    limit : int, optional
        After sampling, keep the ``limit`` tracks with the smallest ids (deterministic).

    Returns a dict: ``"refs"`` (unique tracks) and ``"dead_letters"`` (bad manifest rows,
    unreadable folders, duplicate ids).  Every input is in exactly one of them, except those
    ``--sample``/``--limit`` leave out on purpose.
    """

    def __init__(self, *, patterns: Sequence[str] = (), manifest: str | None = None, exclude: Sequence[str] = (),
                 sample: float | None = None, limit: int | None = None) -> None:
        super().__init__()
        if bool(patterns) == bool(manifest):
            raise ValueError("give patterns or a manifest, not both")
        self._patterns = list(patterns)
        self._manifest = manifest
        self._exclude = list(exclude)
        self._sample = sample
        self._limit = limit

    def expand(self, pbegin):
        if self._patterns:
            found = (
                pbegin
                | "Patterns" >> beam.Create(list(enumerate(self._patterns)))
                | "Match" >> beam.FlatMap(_refs_of_pattern, exclude=self._exclude).with_outputs(DEAD_LETTERS, main="refs")
            )
        else:
            found = (
                pbegin
                | "Manifest" >> beam.Create([self._manifest])
                | "ManifestFiles" >> beam.FlatMap(_manifest_files_of)
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadRows" >> beam.FlatMap(_refs_of_manifest).with_outputs(DEAD_LETTERS, main="refs")
            )
        unique = found.refs | "Spread" >> beam.Reshuffle() | "Deduplicate" >> DeduplicateTracks()
        refs = unique["refs"]
        if self._sample is not None:
            refs = refs | "Sample" >> beam.Filter(lambda r, s=self._sample: in_sample(r.track_id, s))
        if self._limit is not None:
            refs = (
                refs
                | "Limit" >> beam.combiners.Top.Of(self._limit, key=lambda r: r.track_id, reverse=True)
                | "Unlist" >> beam.FlatMap(lambda refs: refs)
            )
        dead = (found[DEAD_LETTERS], unique[DEAD_LETTERS]) | "InputLetters" >> beam.Flatten()
        return {"refs": refs, DEAD_LETTERS: dead}
