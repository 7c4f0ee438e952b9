"""featurize: audio files -> log-mel spectrogram shards, a Beam job.

    genreflow featurize --input 'gtzan/**/*.wav' --output data/ --format tfrecord
    python -m pipelines.featurize --manifest tracks.csv --output s3://bucket/data --format parquet

The launcher expands the inputs (or reads the manifest), derives labels and track ids, assigns
every track its split and its shard, and writes that plan to a staging folder inside the output.
The pipeline then reads the plan, one element per shard::

    plan -> Reshuffle -> [read, decode, resample, segment, log-mel, write shard] -> track stats
                                                                          \\-> dead letters
    track stats + dead letters -> summary.json        dead letters -> errors/*.jsonl

Every shard is written by one DoFn call under a deterministic name (a retried bundle overwrites
it).  After the pipeline finishes, the launcher reads the summary, replaces the previous output's
shards with the new ones and writes ``metadata.json`` last.  A run that fails leaves the previous
output as it was (and no new ``metadata.json``); a run that fails during that final move leaves no
``metadata.json`` at all, never one describing missing shards.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
import uuid
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import StandardOptions

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
from transforms.beam_audio import DEAD_LETTERS, METRICS_NAMESPACE, ReadLimits, featurize_or_dead_letter
from transforms.deadletters import DeadLetter
from transforms.metadata import METADATA_FILE, DatasetMetadata, write_json_atomic, write_metadata
from transforms.records import make_rows
from transforms.shards import (
    ERRORS_DIR,
    FORMATS,
    SHARD_SUFFIX,
    WriteDeadLetters,
    join_uri,
    open_shard_writer,
    shard_name,
    remove_quietly,
)
from transforms.sources import (
    TrackRef,
    assign_splits,
    expand_inputs,
    parse_split_fractions,
    read_manifest,
    refs_from_uris,
)
from transforms.spec import SPLITS, UNLABELED_INDEX, SpectrogramParams
from transforms.spectrogram import mel_filter

__all__ = [
    "run",
    "main",
    "build_parser",
    "FeaturizeResult",
    "TooManyFailuresError",
    "label_vocabulary",
    "plan_shards",
    "auto_num_shards",
    "write_shard",
    "merge_summary",
    "FeaturizeShards",
    "format_summary",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_ERROR_FRACTION = 0.1
#: Tracks per shard when ``--num-shards`` is 0 (auto); about 130 MB of float32 mel for 30 s clips.
TRACKS_PER_SHARD = 20
MAX_AUTO_SHARDS = 4096
SUMMARY_FILE = "summary.json"
STAGING_PREFIX = "_staging-"


class TooManyFailuresError(RuntimeError):
    """More inputs failed than ``--max-error-fraction`` allows (raised after all output is written)."""


@dataclasses.dataclass
class FeaturizeResult:
    """What :func:`run` returns.

    Attributes
    ----------
    output : str
        The output folder.
    metadata : DatasetMetadata or None
        As written to ``metadata.json`` (``None`` for a ``--dry_run``).
    beam_metrics : dict of str to int
        Beam counters of namespace ``genreflow`` where the runner reports them (may be empty).
    elapsed_seconds : float
        Wall time of the whole run.
    runner : str
        The runner used.
    """

    output: str
    metadata: DatasetMetadata | None
    beam_metrics: dict[str, int]
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
                          "the label is the parent folder's name")
    src.add_argument("--manifest", metavar="FILE",
                     help="CSV or JSON Lines file with columns uri (required), label, track_id, split, group")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="output folder (local, gs://, s3://, memory://) for shards, errors/ and metadata.json")
    parser.add_argument("--format", choices=FORMATS, default="tfrecord",
                        help="shard format: GZIP TFRecord of tf.train.Example, or zstd Parquet (default tfrecord)")
    parser.add_argument("--split", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST",
                        help="train,validation,test fractions, summing to 1; a track goes by a hash of its group "
                             "(or track id); a manifest's split column wins (default 0.8,0.1,0.1)")
    parser.add_argument("--num-shards", "--num_shards", type=int, default=0, metavar="N",
                        help=f"shards per non-empty split; 0 = one per {TRACKS_PER_SHARD} tracks (default 0)")
    parser.add_argument("--max-error-fraction", "--max_error_fraction", type=float,
                        default=DEFAULT_MAX_ERROR_FRACTION, metavar="F",
                        help="exit non-zero (after writing everything) when more than this fraction of the "
                             f"inputs fail (default {DEFAULT_MAX_ERROR_FRACTION})")
    add_spectrogram_args(parser)
    add_limit_args(parser)
    return parser


@dataclasses.dataclass
class _Job:
    args: argparse.Namespace
    params: SpectrogramParams
    limits: ReadLimits
    refs: list[TrackRef]
    labels: list[str]
    output: str
    beam_args: list[str]


def _parse(argv: Sequence[str] | None) -> _Job:
    """Parse and check everything that can be checked before any work; exits 2 on a bad value."""
    parser = build_parser()
    args, beam_args = parse_job_args(parser, argv)
    check_job_args(parser, args)
    try:
        params = params_from_args(args)
        fractions = parse_split_fractions(args.split)
    except ValueError as e:
        parser.error(str(e))
    if args.num_shards < 0:
        parser.error(f"--num-shards must be >= 0, got {args.num_shards}")
    if not 0.0 <= args.max_error_fraction <= 1.0:
        parser.error(f"--max-error-fraction must be in [0, 1], got {args.max_error_fraction}")
    try:
        refs = read_manifest(args.manifest) if args.manifest else refs_from_uris(expand_inputs(args.input))
    except (ValueError, OSError) as e:
        parser.error(str(e).splitlines()[0] if str(e) else repr(e))
    refs = assign_splits(refs, fractions)
    output = args.output if "://" in args.output else os.path.abspath(args.output)
    return _Job(args, params, limits_from_args(args), refs, label_vocabulary(refs), output.rstrip("/"), list(beam_args))


# Plain functions (unit-tested without Beam) ----------------------------------------------------
def label_vocabulary(refs: Iterable[TrackRef]) -> list[str]:
    """Sorted distinct non-empty labels: ``label_index`` is a position in this list."""
    return sorted({r.label for r in refs if r.label})


def auto_num_shards(n_tracks: int) -> int:
    """Shards for a split of ``n_tracks`` tracks when ``--num-shards`` is 0."""
    return 0 if n_tracks == 0 else min(MAX_AUTO_SHARDS, max(1, math.ceil(n_tracks / TRACKS_PER_SHARD)))


def plan_shards(refs: Sequence[TrackRef], *, num_shards: int = 0) -> dict[str, list[list[TrackRef]]]:
    """Assign tracks to shards: ``{split: [refs of shard 0, refs of shard 1, ...]}``.

    Tracks of a split are sorted by track id and dealt round-robin, so shards are balanced to
    within one track and mix labels.  A split with tracks gets ``num_shards`` shards (or
    :func:`auto_num_shards`), some possibly empty; a split without tracks gets none.  All segments
    of a track are in its one shard.
    """
    plan: dict[str, list[list[TrackRef]]] = {}
    for split in SPLITS:
        members = sorted((r for r in refs if r.split == split), key=lambda r: r.track_id)
        n = (num_shards or auto_num_shards(len(members))) if members else 0
        shards: list[list[TrackRef]] = [[] for _ in range(n)]
        for i, ref in enumerate(members):
            shards[i % n].append(ref)
        plan[split] = shards
    return plan


def write_shard(
    refs: Sequence[TrackRef],
    *,
    uri: str,
    fmt: str,
    params: SpectrogramParams,
    labels: Sequence[str],
    mel: Any = None,
    limits: ReadLimits = ReadLimits(),
) -> Iterator[dict[str, Any] | DeadLetter]:
    """Featurize ``refs`` in order and stream their segments into one shard file at ``uri``.

    Yields, per track, a stats dict ``{"track_id", "split", "label", "segments", "seconds"}`` or a
    :class:`DeadLetter`.  The file is complete (and closed) once the generator is exhausted; a
    shard whose tracks all fail is still written, empty.  Errors writing the file propagate.
    """
    index = {label: i for i, label in enumerate(labels)}
    writer = open_shard_writer(uri, fmt=fmt, params=params)
    try:
        for ref in refs:
            result = featurize_or_dead_letter(ref, params=params, mel=mel, limits=limits)
            if isinstance(result, DeadLetter):
                yield result
                continue
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
            yield {
                "track_id": ref.track_id,
                "split": ref.split,
                "label": ref.label,
                "segments": int(len(result.mels)),
                "seconds": float(result.duration_seconds),
            }
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _empty_summary() -> dict[str, Any]:
    return {"counts": {}, "failures": {}, "featurized": 0, "failed": 0}


def _add_counts(into: dict[str, Any], split: str, label: str, tracks: int, segments: int, seconds: float) -> None:
    s = into.setdefault(split, {"tracks": 0, "segments": 0, "seconds": 0.0, "by_label": {}})
    for target in (s, s["by_label"].setdefault(label, {"tracks": 0, "segments": 0, "seconds": 0.0})):
        target["tracks"] += tracks
        target["segments"] += segments
        target["seconds"] += seconds


def merge_summary(summary: dict[str, Any], item: dict[str, Any] | DeadLetter) -> dict[str, Any]:
    """Add one track's stats or one dead letter to a summary (in place; returns it)."""
    if isinstance(item, DeadLetter):
        summary["failed"] += 1
        summary["failures"][item.reason] = summary["failures"].get(item.reason, 0) + 1
    else:
        summary["featurized"] += 1
        _add_counts(summary["counts"], item["split"], item["label"], 1, item["segments"], item["seconds"])
    return summary


def _merge_two(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    a["featurized"] += b["featurized"]
    a["failed"] += b["failed"]
    for reason, n in b["failures"].items():
        a["failures"][reason] = a["failures"].get(reason, 0) + n
    for split, s in b["counts"].items():
        for label, c in s["by_label"].items():
            _add_counts(a["counts"], split, label, c["tracks"], c["segments"], c["seconds"])
    return a


# Beam ------------------------------------------------------------------------------------------
class _WriteShardDoFn(beam.DoFn):
    """Shard task -> shard file in staging; yields track stats, dead letters tagged."""

    def __init__(
        self, *, staging: str, fmt: str, params: SpectrogramParams, labels: Sequence[str], limits: ReadLimits
    ) -> None:
        self._staging, self._fmt, self._params, self._labels = staging, fmt, params, list(labels)
        self._limits = limits
        self._mel = None
        self._matched = Metrics.counter(METRICS_NAMESPACE, "matched")
        self._decoded = Metrics.counter(METRICS_NAMESPACE, "decoded")
        self._segments = Metrics.counter(METRICS_NAMESPACE, "segments")
        self._audio_ms = Metrics.counter(METRICS_NAMESPACE, "audio_ms")
        self._shards = Metrics.counter(METRICS_NAMESPACE, "shards_written")

    def setup(self) -> None:
        self._mel = mel_filter(self._params)

    def process(self, task: dict[str, Any]) -> Iterator:
        with fsspec.open(task["plan"], "r") as f:
            refs = [TrackRef.from_dict(d) for d in json.load(f)]
        uri = join_uri(self._staging, shard_name(task["split"], task["index"], task["num_shards"], fmt=self._fmt))
        for item in write_shard(
            refs, uri=uri, fmt=self._fmt, params=self._params, labels=self._labels, mel=self._mel, limits=self._limits
        ):
            self._matched.inc()
            if isinstance(item, DeadLetter):
                Metrics.counter(METRICS_NAMESPACE, f"failed_{item.reason}").inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, item)
            else:
                self._decoded.inc()
                self._segments.inc(item["segments"])
                self._audio_ms.inc(int(round(item["seconds"] * 1000)))
                yield item
        self._shards.inc()


class _SummaryFn(beam.CombineFn):
    def create_accumulator(self) -> dict[str, Any]:
        return _empty_summary()

    def add_input(self, acc: dict[str, Any], item: Any) -> dict[str, Any]:
        return merge_summary(acc, item)

    def merge_accumulators(self, accs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        out = _empty_summary()
        for acc in accs:
            _merge_two(out, acc)
        return out

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


class FeaturizeShards(beam.PTransform):
    """Shard tasks -> shard files, ``errors/`` and ``summary.json`` under ``staging``.

    Parameters
    ----------
    staging : str
        Folder the files are written to (the launcher moves them into place afterwards).
    fmt : str
        ``"tfrecord"`` or ``"parquet"``.
    params : SpectrogramParams
        Spectrogram parameters.
    labels : sequence of str
        Sorted label vocabulary.
    limits : ReadLimits
        Per-input size and duration bounds.

    The input elements are ``{"split", "index", "num_shards", "plan"}`` where ``plan`` is a JSON
    file holding the shard's list of :class:`TrackRef` dicts.
    """

    def __init__(
        self,
        *,
        staging: str,
        fmt: str,
        params: SpectrogramParams,
        labels: Sequence[str],
        limits: ReadLimits = ReadLimits(),
    ) -> None:
        super().__init__()
        self._staging, self._fmt, self._params, self._labels = staging, fmt, params, list(labels)
        self._limits = limits

    def expand(self, tasks):
        results = (
            tasks
            | "Distribute" >> beam.Reshuffle()
            | "FeaturizeAndWrite"
            >> beam.ParDo(
                _WriteShardDoFn(
                    staging=self._staging, fmt=self._fmt, params=self._params, labels=self._labels, limits=self._limits
                )
            ).with_outputs(DEAD_LETTERS, main="stats")
        )
        summary_path = join_uri(self._staging, SUMMARY_FILE)
        summary = (
            (results.stats, results[DEAD_LETTERS])
            | "AllResults" >> beam.Flatten()
            | "Summarize" >> beam.CombineGlobally(_SummaryFn())
            | "WriteSummary" >> beam.Map(lambda s: write_json_atomic(summary_path, s) or summary_path)
        )
        errors = results[DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(self._staging)
        return summary, errors


# Launcher --------------------------------------------------------------------------------------
def _write_plan(plan: dict[str, list[list[TrackRef]]], staging: str) -> list[dict[str, Any]]:
    tasks = []
    for split, shards in plan.items():
        for index, refs in enumerate(shards):
            path = join_uri(staging, "plan", f"{split}-{index:05d}.json")
            with fsspec.open(path, "w") as f:
                json.dump([r.to_dict() for r in refs], f)
            tasks.append({"split": split, "index": index, "num_shards": len(shards), "plan": path})
    return tasks


def _shard_names(plan: dict[str, list[list[TrackRef]]], fmt: str) -> dict[str, list[str]]:
    return {split: [shard_name(split, i, len(shards), fmt=fmt) for i in range(len(shards))] for split, shards in plan.items()}


def _old_outputs(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Files of a previous featurize run in ``root`` (shards and dead letters), fsspec paths."""
    old = []
    for split in SPLITS:
        for suffix in SHARD_SUFFIX.values():
            old += fs.glob(f"{root}/{split}-?????-of-?????{suffix}")
    old += fs.glob(f"{root}/{ERRORS_DIR}/dead_letters-*.jsonl")
    return old


def _finalize(job: _Job, staging: str, shards: dict[str, list[str]], summary: dict[str, Any],
              extra: dict[str, Any]) -> DatasetMetadata:
    """Replace the previous output with the staged one; metadata.json last."""
    fs, root = fsspec.core.url_to_fs(job.output)
    _, staged = fsspec.core.url_to_fs(staging)
    counts = {split: {"tracks": 0, "segments": 0, "seconds": 0.0, "by_label": {}} for split in SPLITS}
    counts.update(summary["counts"])
    for s in counts.values():
        s["seconds"] = round(s["seconds"], 3)
        for c in s["by_label"].values():
            c["seconds"] = round(c["seconds"], 3)
    metadata = DatasetMetadata(
        spectrogram=job.params,
        labels=job.labels,
        format=job.args.format,
        shards=shards,
        counts=counts,
        inputs={"matched": len(job.refs), "featurized": summary["featurized"], "failed": summary["failed"]},
        failures=dict(sorted(summary["failures"].items())),
        extra=extra,
    )
    if fs.exists(f"{root}/{METADATA_FILE}"):
        fs.rm(f"{root}/{METADATA_FILE}")
    for path in _old_outputs(fs, root):
        fs.rm(path)
    for names in shards.values():
        for name in names:
            fs.mv(f"{staged}/{name}", f"{root}/{name}")
    errors = f"{ERRORS_DIR}/dead_letters-00000-of-00001.jsonl"
    fs.makedirs(f"{root}/{ERRORS_DIR}", exist_ok=True)
    fs.mv(f"{staged}/{errors}", f"{root}/{errors}")
    write_metadata(job.output, metadata)
    return metadata


def _beam_counters(result: Any) -> dict[str, int]:
    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # some runners do not report metrics
        return {}
    out: dict[str, int] = {}
    for c in counters:
        if c.key.metric.namespace == METRICS_NAMESPACE:
            value = c.committed if c.committed is not None else c.attempted
            out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))


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
        When more than ``--max-error-fraction`` of the inputs failed; all output, including
        ``metadata.json``, has been written.
    """
    started = time.time()
    job = _parse(argv)
    args = job.args
    in_process = needs_in_process([r.uri for r in job.refs] + [job.output])
    options = pipeline_options(job.beam_args, needs_in_process=in_process)
    runner = str(options.view_as(StandardOptions).runner)
    staging = join_uri(job.output, f"{STAGING_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")
    plan = plan_shards(job.refs, num_shards=args.num_shards)
    shards = _shard_names(plan, args.format)
    logger.info(
        "featurize: %d inputs, %d labels, shards %s, runner %s, staging %s",
        len(job.refs), len(job.labels), {k: len(v) for k, v in shards.items()}, runner, staging,
    )
    dry_run = is_dry_run(options)
    try:
        tasks = _write_plan(plan, staging)
        pipeline = beam.Pipeline(options=options)
        _ = (
            pipeline
            | "ShardTasks" >> beam.Create(tasks, reshuffle=False)
            | "Featurize" >> FeaturizeShards(
                staging=staging, fmt=args.format, params=job.params, labels=job.labels, limits=job.limits
            )
        )
        result = pipeline.run()
        state = result.wait_until_finish()
        if dry_run:
            logger.info("dry run: pipeline translated, nothing written")
            remove_quietly(staging)
            return FeaturizeResult(job.output, None, {}, time.time() - started, runner, args.max_error_fraction)
        if state not in ("DONE", beam.runners.runner.PipelineState.DONE):
            raise RuntimeError(f"pipeline ended in state {state}")
        with fsspec.open(join_uri(staging, SUMMARY_FILE), "r") as f:
            summary = json.load(f)
        if summary["featurized"] + summary["failed"] != len(job.refs):
            raise RuntimeError(
                f"accounting error: {len(job.refs)} inputs matched but {summary['featurized']} featurized "
                f"+ {summary['failed']} failed; output not published"
            )
        extra = {
            "inputs": args.input or [],
            "manifest": args.manifest or "",
            "split_fractions": [float(v) for v in args.split.split(",")],
            "runner": runner,
            "elapsed_seconds": round(time.time() - started, 3),
        }
        metadata = _finalize(job, staging, shards, summary, extra)
    finally:
        remove_quietly(staging)
    outcome = FeaturizeResult(job.output, metadata, _beam_counters(result), time.time() - started, runner,
                              args.max_error_fraction)
    failed, matched = metadata.inputs["failed"], metadata.inputs["matched"]
    if matched and failed / matched > args.max_error_fraction:
        err = TooManyFailuresError(
            f"{failed} of {matched} inputs failed ({failed / matched:.1%}), more than --max-error-fraction "
            f"{args.max_error_fraction:g}; see {join_uri(job.output, ERRORS_DIR)}/"
        )
        err.result = outcome  # type: ignore[attr-defined]
        raise err
    return outcome


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
            f"{_hms(c.get('seconds', 0.0)):>13}{len(md.shards.get(split, [])):>8}"
        )
    shown = ", ".join(md.labels[:12]) + (f", ... ({len(md.labels)} in all)" if len(md.labels) > 12 else "")
    lines += ["", f"labels ({len(md.labels)}): {shown or '(none)'}"]
    empty = [label for label in md.labels
             if not any(label in md.counts.get(split, {}).get("by_label", {}) for split in SPLITS)]
    if empty:
        lines.append(f"warning: no track of these labels was featurized: {', '.join(empty)}")
    if md.failures:
        reasons = ", ".join(f"{reason} {n}" for reason, n in md.failures.items())
        lines.append(f"failures: {reasons}  (details: {join_uri(result.output, ERRORS_DIR)}/)")
    if result.beam_metrics:
        lines.append("beam counters: " + ", ".join(f"{k}={v}" for k, v in result.beam_metrics.items()))
    lines.append(f"{result.elapsed_seconds:.1f} s on {result.runner}; metadata: {join_uri(result.output, METADATA_FILE)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run, print the summary, return the exit status (0, 1 too many failures)."""
    try:
        result = run(argv)
    except TooManyFailuresError as e:
        print(format_summary(e.result))  # type: ignore[attr-defined]
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    from genreflow.logs import configure_logging

    configure_logging()
    sys.exit(main())
