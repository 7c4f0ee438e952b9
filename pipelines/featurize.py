"""featurize: audio files -> log-mel spectrogram shards, a Beam job.

    genreflow featurize --input 'gtzan/**/*.wav' --output data/ --format tfrecord
    python -m pipelines.featurize --manifest 'manifests/*.csv' --output s3://bucket/data --format parquet

The launcher only checks options and builds the graph; everything that grows with the catalog
happens in the pipeline::

    patterns | manifest --match / read rows--> tracks --dedup, sample, split--> GroupIntoShards
        --> [read, decode, resample, segment, log-mel, write one shard]  --> track stats
                                                                      \\--> dead letters (sharded files)
    vocabulary (side input) ----------------------------------------------/
    stats + dead letters + counts --> _summary.json

Every file of a run goes to a new folder ``OUTPUT/run_id=<id>/`` under a deterministic name (a
retried bundle writes the same file again).  After the pipeline, the launcher reads the summary,
checks that every input is featurized or dead-lettered and that failures are within
``--max-error-fraction``, and commits by writing ``metadata.json`` last (one atomic write; see
:mod:`transforms.commit`).  A run that fails commits nothing: the previous dataset stays as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import StandardOptions

from genreflow.args import pipeline_failure, report_error
from pipelines.options import (
    add_limit_args,
    add_spectrogram_args,
    check_job_args,
    is_dry_run,
    limits_from_args,
    needs_in_process,
    params_from_args,
    parse_job_args,
    pipeline_options,
)
from transforms import commit, storage
from transforms.beam_audio import ReadLimits, featurize_or_dead_letter
from transforms.deadletters import DEAD_LETTERS, DeadLetter
from transforms.metadata import METADATA_FILE, DatasetMetadata, read_metadata, write_metadata
from transforms.records import make_rows
from transforms.shards import (
    ERRORS_DIR,
    FORMATS,
    SHARD_SUFFIX,
    GroupIntoShards,
    WriteDeadLetters,
    is_dead_letter_file,
    open_shard_writer,
    shard_name,
)
from transforms.sources import (
    ReadTrackRefs,
    TrackRef,
    assign_split,
    check_manifest_header,
    check_patterns,
    parse_split_fractions,
)
from transforms.spec import SPLITS, UNLABELED_INDEX, SpectrogramParams
from transforms.spectrogram import mel_filter

__all__ = [
    "run",
    "main",
    "build_parser",
    "build_pipeline",
    "FeaturizeJob",
    "FeaturizeResult",
    "TooManyFailuresError",
    "write_shard",
    "merge_summary",
    "merge_summaries",
    "empty_summary",
    "FeaturizeShards",
    "format_summary",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_ERROR_FRACTION = 0.1
#: Tracks per shard when ``--num-shards`` is 0 (auto): about 13 MB of float32 mel for 30 s clips.
TRACKS_PER_SHARD = 20
UNKNOWN_LABEL = "unknown_label"
#: Tag of the ``(split, number of shards)`` output of the shard writer.
SHARDS = "shards"


class TooManyFailuresError(RuntimeError):
    """The run failed as a whole (too many failed inputs, no input, or inputs unaccounted for).

    Nothing was committed: the previous ``metadata.json`` and its shards are untouched.
    """


@dataclasses.dataclass
class FeaturizeResult:
    """What :func:`run` returns.

    Attributes
    ----------
    output : str
        The output folder.
    metadata : DatasetMetadata or None
        As committed in ``metadata.json`` (``None`` for a ``--dry_run``).
    elapsed_seconds : float
        Wall time of the whole run.
    runner : str
        The runner used.
    max_error_fraction : float
        The limit the run was checked against.
    """

    output: str
    metadata: DatasetMetadata | None
    elapsed_seconds: float
    runner: str
    max_error_fraction: float = DEFAULT_MAX_ERROR_FRACTION


# Command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genreflow featurize",
        description="Turn audio files into sharded log-mel spectrogram datasets (an Apache Beam job). "
        "Any standard Beam option (--runner, --project, --temp_location, ...) is passed to Beam.",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", action="append", metavar="GLOB",
                     help="audio files: a glob on a local path, gs://, s3:// or memory:// (repeatable). "
                          "'**' matches any number of folders, including none; {a,b} sets are expanded; "
                          "'[[]' is a literal '['. The label is the parent folder's name; the track id is "
                          "the path below the pattern's leading wildcard-free folders")
    src.add_argument("--manifest", metavar="FILE",
                     help="CSV, JSON Lines or Parquet file, or a glob of many, with columns uri (required), "
                          "label, track_id (default: the uri as written), split, group")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="output folder (local, gs://, s3://, memory://) for run_id=*/ shards and "
                             "dead letters, and metadata.json (written last: the commit)")
    parser.add_argument("--format", choices=FORMATS, default="tfrecord",
                        help="shard format: GZIP TFRecord of tf.train.Example, or zstd Parquet (default tfrecord)")
    parser.add_argument("--split", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST",
                        help="train,validation,test fractions, summing to 1; a track goes by a hash of its group "
                             "(or track id); a manifest's split column wins (default 0.8,0.1,0.1)")
    parser.add_argument("--labels", metavar="A,B,...",
                        help="the label vocabulary, comma-separated (default: every label found, sorted); a "
                             f"track whose label is not in it becomes a dead letter {UNKNOWN_LABEL}")
    parser.add_argument("--num-shards", "--num_shards", type=int, default=0, metavar="N",
                        help=f"shards per non-empty split; 0 = one per {TRACKS_PER_SHARD} tracks (default 0)")
    parser.add_argument("--sample", type=float, default=None, metavar="FRACTION",
                        help="featurize a deterministic pseudo-random FRACTION of the inputs (hash of the track id)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="featurize at most N inputs: those with the smallest track ids (after --sample)")
    parser.add_argument("--max-error-fraction", "--max_error_fraction", type=float,
                        default=DEFAULT_MAX_ERROR_FRACTION, metavar="F",
                        help="when more than this fraction of the inputs fail, exit 1 and commit nothing: the "
                             f"previous dataset stays (default {DEFAULT_MAX_ERROR_FRACTION})")
    add_spectrogram_args(parser)
    add_limit_args(parser)
    return parser


@dataclasses.dataclass
class FeaturizeJob:
    """Everything the launcher checked before any work (nothing here grows with the catalog).

    Attributes
    ----------
    patterns, manifest : the inputs, as given.
    output : str
        Output folder (absolute for local paths).
    run_id : str
        This run's id; its files go to ``output/run_id=<run_id>/``.
    fmt : str
        Shard format.
    params : SpectrogramParams
    limits : ReadLimits
    fractions : tuple of 3 float
        Train, validation and test fractions.
    labels : list of str or None
        A fixed vocabulary (``--labels``), else computed in the pipeline.
    num_shards : int
        Shards per split (0 = auto).
    sample, limit : as given.
    max_error_fraction : float
    beam_args : list of str
        Options for Beam.
    """

    patterns: list[str]
    manifest: str | None
    output: str
    run_id: str
    fmt: str
    params: SpectrogramParams
    limits: ReadLimits
    fractions: tuple[float, float, float]
    labels: list[str] | None = None
    num_shards: int = 0
    sample: float | None = None
    limit: int | None = None
    max_error_fraction: float = DEFAULT_MAX_ERROR_FRACTION
    beam_args: list[str] = dataclasses.field(default_factory=list)

    @property
    def run_dir(self) -> str:
        return commit.run_folder(self.output, self.run_id)


def _absolute(uri: str) -> str:
    return uri if storage.split_protocol(uri)[0] else os.path.abspath(uri)


def _parse(argv: Sequence[str] | None) -> FeaturizeJob:
    """Parse and check everything that can be checked before any work; exits 2 on a bad value."""
    parser = build_parser()
    args, beam_args = parse_job_args(parser, argv)
    check_job_args(parser, args)
    try:
        params = params_from_args(args)
        fractions = parse_split_fractions(args.split)
    except ValueError as e:
        parser.error(str(e))
    if not 0.0 <= args.max_error_fraction <= 1.0:
        parser.error(f"--max-error-fraction must be in [0, 1], got {args.max_error_fraction}")
    if args.sample is not None and not 0.0 < args.sample <= 1.0:
        parser.error(f"--sample must be in (0, 1], got {args.sample}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    labels = None
    if args.labels is not None:
        labels = sorted({x.strip() for x in args.labels.split(",") if x.strip()})
        if not labels:
            parser.error("--labels needs at least one label")
    output = _absolute(args.output).rstrip("/")
    patterns = [_absolute(p) for p in args.input or []]
    try:
        if patterns:
            check_patterns(patterns)
        else:
            check_manifest_header(args.manifest)
    except (ValueError, OSError) as e:
        parser.error(str(e).splitlines()[0] if str(e) else repr(e))
    return FeaturizeJob(
        patterns=patterns, manifest=args.manifest, output=output, run_id=commit.new_run_id(), fmt=args.format,
        params=params, limits=limits_from_args(args), fractions=fractions, labels=labels,
        num_shards=args.num_shards, sample=args.sample, limit=args.limit,
        max_error_fraction=args.max_error_fraction, beam_args=list(beam_args),
    )


# Plain functions (unit-tested without Beam) ----------------------------------------------------
def with_split(ref: TrackRef, fractions: Sequence[float]) -> TrackRef:
    """``ref`` with its split: a manifest's ``split`` is kept, else a hash of group or track id."""
    if ref.split:
        return ref
    return dataclasses.replace(ref, split=assign_split(ref.group or ref.track_id, fractions))


def write_shard(
    refs: Sequence[TrackRef],
    *,
    uri: str,
    fmt: str,
    params: SpectrogramParams,
    labels: Sequence[str],
    mel: Any = None,
    limits: ReadLimits = ReadLimits(),
    fixed_vocabulary: bool = False,
) -> Iterator[dict[str, Any] | DeadLetter]:
    """Featurize ``refs`` in order and stream their segments into one shard file at ``uri``.

    Yields, per track, a stats dict ``{"track_id", "split", "label", "segments", "seconds"}`` or a
    :class:`DeadLetter`.  Every segment of a track is in this one file, contiguous and in time
    order.  The file is complete (and closed) once the generator is exhausted; a shard whose
    tracks all fail is still written, empty.  Errors writing the file propagate.  With
    ``fixed_vocabulary``, a track whose non-empty label is not in ``labels`` is a dead letter.
    """
    index = {label: i for i, label in enumerate(labels)}
    writer = open_shard_writer(uri, fmt=fmt, params=params)
    try:
        for ref in refs:
            yield _write_track(writer, ref, index=index, params=params, mel=mel, limits=limits,
                               fixed_vocabulary=fixed_vocabulary)
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _write_track(writer: Any, ref: TrackRef, *, index: dict[str, int], params: SpectrogramParams, mel: Any,
                 limits: ReadLimits, fixed_vocabulary: bool) -> dict[str, Any] | DeadLetter:
    """Featurize one track and append its segment rows to ``writer``; -> its stats or its dead letter."""
    if fixed_vocabulary and ref.label and ref.label not in index:
        return DeadLetter(uri=ref.uri, stage="label", reason=UNKNOWN_LABEL, track_id=ref.track_id,
                          message=f"label {ref.label!r} is not in --labels")
    result = featurize_or_dead_letter(ref, params=params, mel=mel, limits=limits)
    if isinstance(result, DeadLetter):
        return result
    writer.write(
        make_rows(
            result.mels,
            params=params,
            track_id=ref.track_id,
            uri=ref.uri,
            label=ref.label,
            label_index=index.get(ref.label, UNLABELED_INDEX),
            split=ref.split,
            starts=result.starts,
        )
    )
    return {
        "track_id": ref.track_id,
        "split": ref.split,
        "label": ref.label,
        "segments": int(len(result.mels)),
        "seconds": float(result.duration_seconds),
    }


def empty_summary() -> dict[str, Any]:
    """The summary of nothing: see :func:`merge_summary`."""
    return {"inputs": 0, "featurized": 0, "failed": 0, "counts": {}, "failures": {}, "num_shards": {},
            "dead_letter_files": []}


def _add_counts(into: dict[str, Any], split: str, label: str, tracks: int, segments: int, seconds: float) -> None:
    s = into.setdefault(split, {"tracks": 0, "segments": 0, "seconds": 0.0, "by_label": {}})
    for target in (s, s["by_label"].setdefault(label, {"tracks": 0, "segments": 0, "seconds": 0.0})):
        target["tracks"] += tracks
        target["segments"] += segments
        target["seconds"] += seconds


def merge_summary(summary: dict[str, Any], item: tuple[str, Any]) -> dict[str, Any]:
    """Add one tagged item to a summary (in place; returns it).

    Items: ``("input", n)`` inputs counted, ``("track", stats)`` a featurized track,
    ``("dead", DeadLetter)`` a failed input, ``("shard", (split, n))`` a split's shard count,
    ``("dead_file", name)`` a dead-letter file written.
    """
    kind, value = item
    if kind == "input":
        summary["inputs"] += int(value)
    elif kind == "track":
        summary["featurized"] += 1
        _add_counts(summary["counts"], value["split"], value["label"], 1, value["segments"], value["seconds"])
    elif kind == "dead":
        summary["failed"] += 1
        summary["failures"][value.reason] = summary["failures"].get(value.reason, 0) + 1
    elif kind == "shard":
        split, n = value
        summary["num_shards"][split] = int(n)
    elif kind == "dead_file":
        summary["dead_letter_files"].append(value)
    else:
        raise ValueError(f"unknown summary item {kind!r}")
    return summary


def merge_summaries(summaries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Combine partial summaries (what :func:`merge_summary` built on different workers)."""
    out = empty_summary()
    for b in summaries:
        out["inputs"] += b["inputs"]
        out["featurized"] += b["featurized"]
        out["failed"] += b["failed"]
        for reason, n in b["failures"].items():
            out["failures"][reason] = out["failures"].get(reason, 0) + n
        for split, s in b["counts"].items():
            for label, c in s["by_label"].items():
                _add_counts(out["counts"], split, label, c["tracks"], c["segments"], c["seconds"])
        out["num_shards"].update(b["num_shards"])
        out["dead_letter_files"] += b["dead_letter_files"]
    out["dead_letter_files"].sort()
    return out


# Beam ------------------------------------------------------------------------------------------
class _WriteShardDoFn(beam.DoFn):
    """``((split, index, n), [TrackRef])`` -> one shard file.

    Outputs: per-track stats (main), :class:`DeadLetter` (``dead_letters``), and ``(split, n)``
    once per split (``shards``).
    """

    def __init__(self, *, run_dir: str, fmt: str, params: SpectrogramParams, limits: ReadLimits,
                 fixed_vocabulary: bool) -> None:
        self._run_dir, self._fmt, self._params, self._limits = run_dir, fmt, params, limits
        self._fixed = fixed_vocabulary
        self._mel = None

    def setup(self) -> None:
        self._mel = mel_filter(self._params)

    def process(self, shard: tuple[tuple[str, int, int], list[TrackRef]], labels: list[str]) -> Iterator:
        (split, index, n), refs = shard
        uri = storage.join_uri(self._run_dir, shard_name(split, index, n, fmt=self._fmt))
        for item in write_shard(sorted(refs, key=lambda r: r.track_id), uri=uri, fmt=self._fmt,
                                params=self._params, labels=labels, mel=self._mel, limits=self._limits,
                                fixed_vocabulary=self._fixed):
            if isinstance(item, DeadLetter):
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, item)
            else:
                yield item
        if index == 0:
            yield beam.pvalue.TaggedOutput(SHARDS, (split, n))


class _SummaryFn(beam.CombineFn):
    def create_accumulator(self) -> dict[str, Any]:
        return empty_summary()

    def add_input(self, acc: dict[str, Any], item: tuple[str, Any]) -> dict[str, Any]:
        return merge_summary(acc, item)

    def merge_accumulators(self, accs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        return merge_summaries(accs)

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


def _vocabulary(labels: Iterable[str]) -> list[str]:
    return sorted(set(labels))


def _write_summary(summary: dict[str, Any], labels: list[str], *, path: str) -> str:
    storage.write_json_atomic(path, {**summary, "labels": labels})
    return path


class FeaturizeShards(beam.PTransform):
    """Unique :class:`TrackRef` (split assigned) -> shard files, dead letters, ``_summary.json``.

    Parameters
    ----------
    run_dir : str
        The run's folder (``OUTPUT/run_id=<id>``); every file goes below it.
    fmt : str
        ``"tfrecord"`` or ``"parquet"``.
    params : SpectrogramParams
        Spectrogram parameters.
    labels : sequence of str, optional
        A fixed vocabulary; ``None`` computes it from the tracks (a side input).
    num_shards : int
        Shards per non-empty split (0: one per :data:`TRACKS_PER_SHARD` tracks).
    limits : ReadLimits
        Per-input size and duration bounds.

    The input is a dict with ``"refs"`` (tracks) and ``"dead_letters"`` (inputs that failed
    before featurizing).  Returns a dict of PCollections: ``tracks`` (the stats dict of each track
    written, see :func:`write_shard`), ``dead_letters`` (every :class:`DeadLetter`, early ones
    included) and ``summary`` (the path of ``_summary.json``, one element).
    """

    def __init__(self, *, run_dir: str, fmt: str, params: SpectrogramParams, labels: Sequence[str] | None = None,
                 num_shards: int = 0, limits: ReadLimits = ReadLimits()) -> None:
        super().__init__()
        self._run_dir, self._fmt, self._params = run_dir, fmt, params
        self._labels = sorted(labels) if labels is not None else None
        self._num_shards, self._limits = num_shards, limits

    def expand(self, inputs):
        refs, early_dead = inputs["refs"], inputs[DEAD_LETTERS]
        vocab = self._vocabulary(refs)
        written = self._write_shards(refs, vocab)
        dead = (early_dead, written[DEAD_LETTERS]) | "AllDeadLetters" >> beam.Flatten()
        summary = self._summarize(refs, early_dead, written, dead, vocab)
        return {"tracks": written.tracks, DEAD_LETTERS: dead, "summary": summary}

    def _vocabulary(self, refs):
        """-> one sorted label list: the fixed ``labels``, or every label of ``refs``."""
        if self._labels is not None:
            return refs.pipeline | "FixedLabels" >> beam.Create([self._labels])
        return (
            refs
            | "Labels" >> beam.Map(lambda r: r.label)
            | "Labeled" >> beam.Filter(bool)
            | "DistinctLabels" >> beam.Distinct()
            | "LabelList" >> beam.combiners.ToList()
            | "Vocabulary" >> beam.Map(_vocabulary)
        )

    def _write_shards(self, refs, vocab):
        """-> outputs ``tracks`` (stats), ``dead_letters`` and ``shards`` of :class:`_WriteShardDoFn`."""
        return (
            refs
            | "Shard" >> GroupIntoShards(group_fn=lambda r: r.split, id_fn=lambda r: r.track_id,
                                         num_shards=self._num_shards, per_shard=TRACKS_PER_SHARD)
            | "FeaturizeAndWrite" >> beam.ParDo(
                _WriteShardDoFn(run_dir=self._run_dir, fmt=self._fmt, params=self._params, limits=self._limits,
                                fixed_vocabulary=self._labels is not None),
                labels=beam.pvalue.AsSingleton(vocab),
            ).with_outputs(DEAD_LETTERS, SHARDS, main="tracks")
        )

    def _summarize(self, refs, early_dead, written, dead, vocab):
        """Write the dead-letter files, then ``_summary.json`` from every count (see :func:`merge_summary`)."""
        dead_files = dead | "WriteDeadLetters" >> WriteDeadLetters(storage.join_uri(self._run_dir, ERRORS_DIR))
        counted = (
            (refs | "CountTracks" >> beam.combiners.Count.Globally(),
             early_dead | "CountEarly" >> beam.combiners.Count.Globally())
            | "InputCounts" >> beam.Flatten()
            | "AsInput" >> beam.Map(lambda n: ("input", n))
        )
        items = (
            written.tracks | "TagTracks" >> beam.Map(lambda t: ("track", t)),
            written[SHARDS] | "TagShards" >> beam.Map(lambda s: ("shard", s)),
            counted,
            dead | "TagDead" >> beam.Map(lambda d: ("dead", d)),
            dead_files | "TagFiles" >> beam.Map(lambda f: ("dead_file", storage.join_uri(ERRORS_DIR, f["file"]))),
        )
        return (
            items
            | "AllItems" >> beam.Flatten()
            | "Summarize" >> beam.CombineGlobally(_SummaryFn())
            | "WriteSummary" >> beam.Map(_write_summary, beam.pvalue.AsSingleton(vocab),
                                         path=storage.join_uri(self._run_dir, commit.SUMMARY_FILE))
        )


def build_pipeline(pipeline: beam.Pipeline, job: FeaturizeJob) -> dict[str, Any]:
    """Add the featurize graph for ``job`` to ``pipeline``; returns :class:`FeaturizeShards`' PCollections
    (``tracks``, ``dead_letters``, ``summary``).

    The graph's size does not depend on the number of inputs: patterns or the manifest path are
    its only data.
    """
    inputs = pipeline | "Inputs" >> ReadTrackRefs(patterns=job.patterns, manifest=job.manifest, exclude=[job.output],
                                                  sample=job.sample, limit=job.limit)
    refs = inputs["refs"] | "AssignSplit" >> beam.Map(with_split, job.fractions)
    return {"refs": refs, DEAD_LETTERS: inputs[DEAD_LETTERS]} | "Featurize" >> FeaturizeShards(
        run_dir=job.run_dir, fmt=job.fmt, params=job.params, labels=job.labels, num_shards=job.num_shards,
        limits=job.limits)


# Launcher --------------------------------------------------------------------------------------
def _committed_run(output: str) -> str:
    try:
        return read_metadata(output).run_id
    except (FileNotFoundError, ValueError, KeyError):
        return ""


_LEGACY_SHARD = "|".join(f"{s}-\\d{{5}}-of-\\d{{5}}" for s in SPLITS)


def remove_legacy_outputs(output: str) -> None:
    """Remove files of runs made before run folders: ``_staging-*`` folders of killed runs, and
    shards and ``errors/`` directly in the output folder (listed and matched by name, no glob)."""
    fs, root = fsspec.core.url_to_fs(output)
    suffixes = "|".join(re.escape(s) for s in SHARD_SUFFIX.values())
    shard = re.compile(f"^(?:{_LEGACY_SHARD})(?:{suffixes})$")
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        is_dir = entry.get("type") == "directory"
        if (is_dir and name.startswith("_staging-")) or (not is_dir and shard.match(name)):
            storage.remove_path(storage.join_uri(output, name))
        elif is_dir and name == ERRORS_DIR:
            inside = [p.rsplit("/", 1)[-1] for p in fs.ls(entry["name"], detail=False)]
            if all(is_dead_letter_file(n) for n in inside):
                storage.remove_path(storage.join_uri(output, name))


def _check_summary(job: FeaturizeJob, summary: dict[str, Any]) -> None:
    inputs, done, failed = summary["inputs"], summary["featurized"], summary["failed"]
    where = storage.join_uri(job.run_dir, ERRORS_DIR)
    if inputs == 0:
        raise TooManyFailuresError("no input: the patterns or manifest matched no file; nothing committed")
    if done + failed != inputs:
        raise TooManyFailuresError(
            f"accounting error: {inputs} inputs but {done} featurized + {failed} dead letters; nothing committed")
    if failed / inputs > job.max_error_fraction:
        raise TooManyFailuresError(
            f"{failed} of {inputs} inputs failed ({failed / inputs:.1%}), more than --max-error-fraction "
            f"{job.max_error_fraction:g}; nothing committed, the previous dataset is unchanged; "
            f"dead letters of this run: {where}/")
    if done == 0:
        raise TooManyFailuresError(f"no input was featurized; nothing committed; dead letters: {where}/")


def _metadata(job: FeaturizeJob, summary: dict[str, Any], extra: dict[str, Any]) -> DatasetMetadata:
    counts = {split: {"tracks": 0, "segments": 0, "seconds": 0.0, "by_label": {}} for split in SPLITS}
    counts.update(summary["counts"])
    for s in counts.values():
        s["seconds"] = round(s["seconds"], 3)
        for c in s["by_label"].values():
            c["seconds"] = round(c["seconds"], 3)
    folder = commit.RUN_PREFIX + job.run_id
    return DatasetMetadata(
        spectrogram=job.params,
        labels=list(summary["labels"]),
        format=job.fmt,
        counts=counts,
        inputs={"matched": summary["inputs"], "featurized": summary["featurized"], "failed": summary["failed"]},
        failures=dict(sorted(summary["failures"].items())),
        extra=extra,
        run_id=job.run_id,
        num_shards={s: summary["num_shards"][s] for s in SPLITS if summary["num_shards"].get(s)},
        dead_letters=[storage.join_uri(folder, name) for name in summary["dead_letter_files"]],
    )


def launch(job: FeaturizeJob) -> FeaturizeResult:
    """Run the pipeline of a checked job and commit its output (see the module docstring)."""
    started = time.time()
    options = pipeline_options(job.beam_args, needs_in_process=needs_in_process(
        [*job.patterns, job.manifest or "", job.output]))
    runner = str(options.view_as(StandardOptions).runner)
    dry_run = is_dry_run(options)
    logger.info("featurize: inputs %s, run %s, runner %s", job.patterns or job.manifest, job.run_dir, runner)
    if not dry_run:
        commit.remove_other_runs(job.output, keep=[_committed_run(job.output)])
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, job)
    state = pipeline.run().wait_until_finish()
    if dry_run:
        logger.info("dry run: pipeline translated, nothing written")
        return FeaturizeResult(job.output, None, time.time() - started, runner, job.max_error_fraction)
    if state not in ("DONE", beam.runners.runner.PipelineState.DONE):
        raise RuntimeError(f"pipeline ended in state {state}; nothing committed")
    summary = storage.read_json(storage.join_uri(job.run_dir, commit.SUMMARY_FILE))
    metadata = _metadata(job, summary, {
        "inputs": job.patterns,
        "manifest": job.manifest or "",
        "split_fractions": list(job.fractions),
        "runner": runner,
        "elapsed_seconds": round(time.time() - started, 3),
    })
    outcome = FeaturizeResult(job.output, metadata, time.time() - started, runner, job.max_error_fraction)
    try:
        _check_summary(job, summary)
    except TooManyFailuresError as err:
        err.result = outcome  # type: ignore[attr-defined]
        raise
    write_metadata(job.output, metadata)  # the commit
    commit.remove_other_runs(job.output, keep=[job.run_id])
    remove_legacy_outputs(job.output)
    return outcome


def run(argv: Sequence[str] | None = None) -> FeaturizeResult:
    """Run the featurize job; see ``genreflow featurize --help``.

    Returns
    -------
    FeaturizeResult

    Raises
    ------
    SystemExit
        Exit status 2 for a bad command line (before any work).
    TooManyFailuresError
        When the run failed as a whole; nothing was committed.
    """
    return launch(_parse(argv))


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_summary(result: FeaturizeResult) -> str:
    """A one-screen human summary of a finished run."""
    md = result.metadata
    if md is None:
        return f"featurize: dry run with {result.runner}, nothing written"
    inputs = md.inputs
    rate = inputs["failed"] / inputs["matched"] if inputs["matched"] else 0.0
    lines = [
        f"featurize: {inputs['matched']} inputs matched, {inputs['featurized']} featurized, "
        f"{inputs['failed']} failed ({rate:.1%}; limit {result.max_error_fraction:.0%})",
        f"output: {result.output}  ({md.format}, mel {md.spectrogram.mel_shape[0]}x{md.spectrogram.mel_shape[1]} "
        f"per {md.spectrogram.segment_seconds:g} s segment)",
        "",
        f"{'split':<12}{'tracks':>8}{'segments':>10}{'audio h:m:s':>13}{'shards':>8}",
    ]
    for split in SPLITS:
        c = md.counts.get(split, {})
        lines.append(
            f"{split:<12}{c.get('tracks', 0):>8}{c.get('segments', 0):>10}"
            f"{_hms(c.get('seconds', 0.0)):>13}{len(md.shard_names(split)):>8}"
        )
    shown = ", ".join(md.labels[:12]) + (f", ... ({len(md.labels)} in all)" if len(md.labels) > 12 else "")
    lines += ["", f"labels ({len(md.labels)}): {shown or '(none)'}"]
    empty = [label for label in md.labels
             if not any(label in md.counts.get(split, {}).get("by_label", {}) for split in SPLITS)]
    if empty:
        lines.append(f"warning: no track of these labels was featurized: {', '.join(empty)}")
    if md.failures:
        reasons = ", ".join(f"{reason} {n}" for reason, n in md.failures.items())
        where = storage.join_uri(result.output, commit.RUN_PREFIX + md.run_id, ERRORS_DIR)
        lines.append(f"failures: {reasons}  (details: {where}/)")
    lines.append(f"{result.elapsed_seconds:.1f} s on {result.runner}; "
                 f"metadata: {storage.join_uri(result.output, METADATA_FILE)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run, print the summary, return the exit status (0, 1 too many failures)."""
    try:
        result = run(argv)
    except TooManyFailuresError as e:
        if getattr(e, "result", None) is not None:
            print(format_summary(e.result))  # type: ignore[attr-defined]
        return report_error("genreflow featurize", e, status=1)
    except Exception as e:  # the pipeline (or the commit write) failed: nothing was committed
        logger.error("the featurize pipeline failed", exc_info=True)
        return report_error("genreflow featurize", pipeline_failure(e), status=1)
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    from genreflow.logs import configure_logging

    configure_logging()
    sys.exit(main())
