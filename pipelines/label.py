"""The nightly label job: a catalog of audio -> one genre row per track, partitioned by run date.

::

    genreflow label --input 'gs://catalog/**/*.mp3' --model-dir gs://models/genre/v3 \\
        --output gs://labels/genre [--run-date 2026-11-29] [options] [Beam options]

The pipeline, as it reads::

    tracks --SkipLabeled--> AudioToLogMel --segments--> RunInference --CoGroupByKey(track)--> rows
              |                 |                          |                                  |
           skipped        dead letters          failed batches -> dead letters       part-*.parquet

Spectrograms are computed with the parameters in the model dir's ``model.json`` (there are no
spectrogram flags: training and serving cannot disagree).  ``--features DIR`` labels featurize
shards instead of audio, after checking that their ``metadata.json`` parameters equal the model's.

Output: ``OUTPUT/run_date=YYYY-MM-DD/part-*.parquet`` (or ``.jsonl``), ``_run.json`` and
``_errors/``, written to ``OUTPUT/_staging/...`` and published with one atomic rename
(:mod:`transforms.label_store`).  Every input is labeled, skipped or dead-lettered:
``inputs = labeled + skipped + dead_letters`` in ``_run.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import logging
import sys
import time
import uuid
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import fsspec
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference
from apache_beam.utils import shared

from pipelines.options import (add_limit_args, check_job_args, is_dry_run, limits_from_args, needs_in_process,
                               parse_job_args, pipeline_options)
from transforms import label_store
from transforms.beam_audio import METRICS_NAMESPACE, AudioToLogMel, ReadLimits, TrackFeatures
from transforms.deadletters import DeadLetter
from transforms.inference import (
    aggregate_track,
    keyed_model_handler,
    load_model_card,
    stack_segment_predictions,
)
from transforms.metadata import ModelCard, read_metadata, utc_now, write_json_atomic
from transforms.shards import remove_quietly, write_dead_letters
from transforms.sources import TrackRef, expand_inputs, file_fingerprint, read_manifest, refs_from_uris
from transforms.spec import (
    FEATURE_LABEL,
    FEATURE_MEL,
    FEATURE_SEGMENT_INDEX,
    FEATURE_START_SECONDS,
    FEATURE_TRACK_ID,
    FEATURE_URI,
)

__all__ = ["build_parser", "select_inputs", "label_row", "LabelTracks", "LabelJob", "prepare", "launch", "run", "main"]

logger = logging.getLogger(__name__)

SKIPPED = "skipped"
FINGERPRINTS = "fingerprints"
DEAD_LETTERS = "dead_letters"
DEAD_LETTER_FILE = "dead_letters-00000-of-00001.jsonl"


# Options -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The job's own options; anything else is a Beam pipeline option."""
    p = argparse.ArgumentParser(
        prog="genreflow label",
        description="Label a catalog of audio with a trained genre model (Beam RunInference). "
        "Unknown options are passed to Beam (--runner, --project, --direct_num_workers, ...).",
    )
    src = p.add_argument_group("input (one of)")
    src.add_argument("--input", action="append", default=[], metavar="GLOB",
                     help="audio files to label: glob on local disk, gs://, s3:// (** for any depth); repeatable")
    src.add_argument("--manifest", help="CSV or JSON Lines file with a 'uri' column (optional track_id)")
    src.add_argument("--features", metavar="DIR",
                     help="label featurize output (shards + metadata.json) instead of audio; its spectrogram "
                          "parameters must equal the model's")
    p.add_argument("--model-dir", "--model_dir", required=True,
                   help="model dir with the .keras file and model.json (labels, spectrogram parameters)")
    p.add_argument("--output", required=True,
                   help="output dir; rows go to OUTPUT/run_date=YYYY-MM-DD/")
    p.add_argument("--run-date", "--run_date", default=None,
                   help="partition date YYYY-MM-DD (default: today, UTC); rerunning a date replaces it")
    p.add_argument("--format", choices=tuple(label_store.FORMATS), default="parquet",
                   help="output file format (default parquet)")
    p.add_argument("--skip-labeled", "--skip_labeled", dest="skip_labeled", action=argparse.BooleanOptionalAction,
                   default=True,
                   help="skip tracks that an earlier partition labeled with the same model version and the same "
                        "file fingerprint (default on; --no-skip-labeled relabels everything)")
    p.add_argument("--top-k", "--top_k", type=int, default=3, help="genres in the top_k column (default 3)")
    p.add_argument("--embeddings", action="store_true",
                   help="add the per-track mean of the model's embedding layer (model.json embedding_layer)")
    p.add_argument("--min-batch-size", "--min_batch_size", type=int, default=None,
                   help="fewest segments per model call, except at the end of a bundle (default: 32, or "
                        "--max-batch-size if that is smaller; Beam grows batches from here towards the maximum)")
    p.add_argument("--max-batch-size", "--max_batch_size", type=int, default=256,
                   help="most segments per model call (default 256)")
    p.add_argument("--large-model", "--large_model", action="store_true",
                   help="load one model copy per machine, shared by all worker processes, instead of one per "
                        "process (for models that do not fit once per core)")
    p.add_argument("--model-copies", "--model_copies", type=int, default=None,
                   help="exact number of model copies per machine (shared across processes)")
    p.add_argument("--limit", type=int, default=None, help="label at most N inputs (smoke runs; after --sample)")
    p.add_argument("--sample", type=float, default=None, metavar="FRACTION",
                   help="label a deterministic pseudo-random FRACTION of the inputs (hash of the track id)")
    p.add_argument("--num-shards", "--num_shards", type=int, default=0,
                   help="output files per partition (default 0: let the runner decide)")
    add_limit_args(p)
    return p


DEFAULT_MIN_BATCH_SIZE = 32


def _in_sample(track_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(track_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def select_inputs(refs: Sequence[TrackRef], *, sample: float | None = None, limit: int | None = None) -> list[TrackRef]:
    """``--sample`` then ``--limit``: the same tracks on every run (hash of the track id, then order).

    Parameters
    ----------
    refs : sequence of TrackRef
    sample : float, optional
        Keep a track when the first 8 bytes of ``sha256(track_id)``, as a fraction of 2**64, are
        below ``sample``.
    limit : int, optional
        Keep the first ``limit`` tracks (in ``refs`` order) after sampling.
    """
    out = list(refs)
    if sample is not None:
        if not 0.0 < sample <= 1.0:
            raise ValueError(f"--sample must be in (0, 1], got {sample}")
        out = [r for r in out if _in_sample(r.track_id, sample)]
    if limit is not None:
        if limit < 0:
            raise ValueError(f"--limit must be >= 0, got {limit}")
        out = out[:limit]
    return out


# Plain functions the DoFns call ------------------------------------------------------------------
def label_row(
    *,
    track_id: str,
    uri: str,
    fingerprint: str,
    content_hash: str,
    duration_seconds: float,
    predictions: Iterable[tuple[int, dict[str, np.ndarray]]],
    card: ModelCard,
    labeled_at: datetime.datetime,
    top_k: int,
) -> dict[str, Any]:
    """One output row from a track's ``(segment_index, prediction)`` pairs (see :func:`aggregate_track`).

    Raises
    ------
    ValueError
        When there are no predictions.
    """
    probs, emb, _ = stack_segment_predictions(predictions)
    agg = aggregate_track(probs, labels=card.labels, k=top_k, embeddings=emb)
    row = {
        "track_id": track_id,
        "uri": uri,
        "fingerprint": fingerprint,
        "content_hash": content_hash,
        "model_version": card.model_version,
        "labeled_at": labeled_at,
        "genre": agg["genre"],
        "score": agg["score"],
        "top_k": agg["top_k"],
        "probabilities": agg["probabilities"],
        "n_segments": agg["n_segments"],
        "duration_seconds": float(duration_seconds),
    }
    if "embedding" in agg:
        row["embedding"] = agg["embedding"]
    return row


class _SkipLabeledFn(beam.DoFn):
    """TrackRef or TrackFeatures -> itself (to label), ``skipped`` (track id) and ``fingerprints``.

    The index of already-labeled tracks is read once per worker process (``shared.Shared``) from the
    output dir's partitions before the run date.
    """

    def __init__(self, *, output_dir: str, model_version: str, run_date: str, enabled: bool) -> None:
        self._output_dir = output_dir
        self._model_version = model_version
        self._run_date = run_date
        self._enabled = enabled
        self._shared = shared.Shared()
        self._index = None
        self._inputs = Metrics.counter(METRICS_NAMESPACE, "label_inputs")
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "label_skipped")

    def setup(self) -> None:
        if not self._enabled:
            return
        key = f"{self._output_dir}|{self._model_version}|{self._run_date}"
        self._index = self._shared.acquire(
            lambda: label_store.LabeledIndex.load(
                self._output_dir, model_version=self._model_version, before=self._run_date
            ),
            tag=key,
        )

    def process(self, element: TrackRef | TrackFeatures) -> Iterator:
        ref = element.ref if isinstance(element, TrackFeatures) else element
        self._inputs.inc()
        fingerprint = file_fingerprint(ref.uri)
        if not fingerprint and isinstance(element, TrackFeatures):
            fingerprint = "content:" + element.fingerprint  # audio not reachable: hash of the features
        if self._index is not None and self._index.contains(ref.track_id, fingerprint):
            self._skipped.inc()
            return iter([beam.pvalue.TaggedOutput(SKIPPED, ref.track_id)])
        return iter([beam.pvalue.TaggedOutput(FINGERPRINTS, (ref.track_id, fingerprint)), element])


def _segments(features: TrackFeatures) -> Iterator[tuple[tuple[str, int], np.ndarray]]:
    for i, mel in enumerate(features.mels):
        yield (features.ref.track_id, i), mel


def _track_info(features: TrackFeatures) -> tuple[str, dict[str, Any]]:
    return features.ref.track_id, {
        "uri": features.ref.uri,
        "n_segments": int(len(features.mels)),
        "duration_seconds": float(features.duration_seconds),
        "content_hash": features.fingerprint,
    }


def _prediction_by_track(keyed: tuple[tuple[str, int], Any]) -> tuple[str, tuple[int, dict]]:
    (track_id, index), result = keyed
    return track_id, (int(index), result.inference)


def _failed_batch_tracks(failure: Any) -> Iterator[tuple[str, str]]:
    """``(batch, (type, message, traceback))`` from RunInference's dead-letter output -> track ids."""
    batch, error = failure
    message = error[1] if isinstance(error, tuple) and len(error) > 1 else str(error)
    for key, _ in batch:
        yield key[0], str(message)


class _AssembleFn(beam.DoFn):
    """CoGroupByKey result per track -> one label row, or a dead letter (``stage="infer"``)."""

    def __init__(self, *, card: ModelCard, labeled_at: datetime.datetime, top_k: int) -> None:
        self._card = card
        self._labeled_at = labeled_at
        self._top_k = top_k

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator:
        track_id, grouped = element
        infos, preds, fails, fps = grouped["info"], grouped["pred"], grouped["fail"], grouped["fp"]
        if not infos:  # failed before inference: its dead letter came from AudioToLogMel
            return iter(())
        info = infos[0]
        if fails or len(preds) != info["n_segments"]:
            reason = "inference_error" if fails else "missing_segments"
            message = fails[0] if fails else f"{len(preds)} of {info['n_segments']} segment predictions"
            Metrics.counter(METRICS_NAMESPACE, f"failed_{reason}").inc()
            letter = DeadLetter(uri=info["uri"], stage="infer", reason=reason, message=message[:2000],
                                track_id=track_id)
            return iter([beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)])
        row = label_row(
            track_id=track_id,
            uri=info["uri"],
            fingerprint=fps[0] if fps else "",
            content_hash=info["content_hash"],
            duration_seconds=info["duration_seconds"],
            predictions=preds,
            card=self._card,
            labeled_at=self._labeled_at,
            top_k=self._top_k,
        )
        return iter([row])


# Reading featurize shards ------------------------------------------------------------------------
def _shard_rows(path: str, *, fmt: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Segment rows of one featurize shard, keyed by track id."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from transforms.records import table_to_rows

        with fsspec.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=256):
                for row in table_to_rows(pa.Table.from_batches([batch])):
                    yield row[FEATURE_TRACK_ID], row
    else:
        import tensorflow as tf

        from transforms.records import decode_example

        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            row = decode_example(record.numpy())
            yield row[FEATURE_TRACK_ID], row


def _features_from_rows(
    item: tuple[str, Iterable[dict[str, Any]]], *, sample_rate: int, segment_seconds: float
) -> TrackFeatures:
    """A track's segment rows (any order) -> :class:`TrackFeatures` (duration from the last segment)."""
    track_id, rows = item
    rows = sorted(rows, key=lambda r: r[FEATURE_SEGMENT_INDEX])
    mels = np.stack([np.asarray(r[FEATURE_MEL], np.float32) for r in rows])
    starts = [int(round(r[FEATURE_START_SECONDS] * sample_rate)) for r in rows]
    content = hashlib.blake2b(mels.tobytes(), digest_size=8).hexdigest()
    return TrackFeatures(
        ref=TrackRef(uri=rows[0][FEATURE_URI], track_id=track_id, label=rows[0].get(FEATURE_LABEL, "")),
        mels=mels,
        starts=starts,
        duration_seconds=rows[-1][FEATURE_START_SECONDS] + segment_seconds,
        fingerprint=content,
    )


# The pipeline ------------------------------------------------------------------------------------
class LabelTracks(beam.PTransform):
    """Tracks to label -> tagged outputs ``rows`` (dicts), ``dead_letters`` and ``skipped`` (track ids).

    Parameters
    ----------
    model_dir : str
    card : ModelCard
        From :func:`transforms.inference.load_model_card`.
    output_dir : str
        Where earlier partitions are (for ``skip_labeled``).
    run_date : str
    labeled_at : datetime.datetime
    skip_labeled, embeddings : bool
    top_k, min_batch_size, max_batch_size : int
    large_model : bool
    model_copies : int or None
    from_features : bool
        The input PCollection holds :class:`TrackFeatures` (``--features``) instead of
        :class:`TrackRef`.
    limits : ReadLimits
        Per-input size and duration bounds for the audio path.
    """

    def __init__(self, *, model_dir: str, card: ModelCard, output_dir: str, run_date: str,
                 labeled_at: datetime.datetime, skip_labeled: bool = True, embeddings: bool = False,
                 top_k: int = 3, min_batch_size: int | None = None, max_batch_size: int | None = None,
                 large_model: bool = False, model_copies: int | None = None, from_features: bool = False,
                 limits: ReadLimits = ReadLimits()) -> None:
        super().__init__()
        self._model_dir = model_dir
        self._card = card
        self._output_dir = output_dir
        self._run_date = run_date
        self._labeled_at = labeled_at
        self._skip = skip_labeled
        self._embeddings = embeddings
        self._top_k = top_k
        self._batch = (min_batch_size, max_batch_size)
        self._large_model = large_model
        self._model_copies = model_copies
        self._from_features = from_features
        self._limits = limits

    def expand(self, tracks):
        checked = tracks | "SkipLabeled" >> beam.ParDo(
            _SkipLabeledFn(output_dir=self._output_dir, model_version=self._card.model_version,
                           run_date=self._run_date, enabled=self._skip)
        ).with_outputs(SKIPPED, FINGERPRINTS, main="todo")
        if self._from_features:
            features, audio_dead = checked.todo, None
        else:
            audio = checked.todo | "AudioToLogMel" >> AudioToLogMel(params=self._card.spectrogram, limits=self._limits)
            features, audio_dead = audio.features, audio.dead_letters

        handler = keyed_model_handler(
            self._model_dir, card=self._card, embeddings=self._embeddings,
            min_batch_size=self._batch[0], max_batch_size=self._batch[1],
            large_model=self._large_model, model_copies=self._model_copies,
        )
        predictions, failed = (
            features
            | "Segments" >> beam.FlatMap(_segments)
            | "RunInference" >> RunInference(handler).with_exception_handling()
        )
        grouped = (
            {
                "info": features | "TrackInfo" >> beam.Map(_track_info),
                "pred": predictions | "ByTrack" >> beam.Map(_prediction_by_track),
                "fail": failed.failed_inferences | "FailedTracks" >> beam.FlatMap(_failed_batch_tracks),
                "fp": checked[FINGERPRINTS],
            }
            | "JoinTrack" >> beam.CoGroupByKey()
        )
        assembled = grouped | "Assemble" >> beam.ParDo(
            _AssembleFn(card=self._card, labeled_at=self._labeled_at, top_k=self._top_k)
        ).with_outputs(DEAD_LETTERS, main="rows")
        dead = [assembled[DEAD_LETTERS]] + ([audio_dead] if audio_dead is not None else [])
        return {
            "rows": assembled.rows,
            DEAD_LETTERS: tuple(dead) | "AllDeadLetters" >> beam.Flatten(),
            SKIPPED: checked[SKIPPED],
        }


def _write_rows(rows, *, staging: str, fmt: str, embeddings: bool, num_shards: int):
    prefix = label_store.join_uri(staging, label_store.PART_PREFIX)
    suffix = label_store.FORMATS[fmt]
    if fmt == "parquet":
        return rows | "WriteParquet" >> beam.io.WriteToParquet(
            prefix, label_store.label_schema(embeddings=embeddings), codec="zstd",
            file_name_suffix=suffix, num_shards=num_shards,
        )
    return (
        rows
        | "ToJson" >> beam.Map(label_store.row_to_json)
        | "WriteJsonl" >> beam.io.WriteToText(prefix, file_name_suffix=suffix, num_shards=num_shards)
    )


def _write_dead_letters(letters: list[DeadLetter], path: str) -> int:
    write_dead_letters(path, letters)
    return len(letters)


# Launcher ----------------------------------------------------------------------------------------
def _metric_counters(result: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for c in result.metrics().query(MetricsFilter())["counters"]:
            out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(c.committed or c.attempted or 0)
    except Exception as e:  # metrics are a report, not a result
        logger.warning("could not read Beam metrics: %s", e)
    return out


def _metric_distributions(result: Any) -> dict[str, dict[str, float]]:
    out = {}
    try:
        for d in result.metrics().query(MetricsFilter())["distributions"]:
            v = d.committed or d.attempted
            if v is not None and v.count:
                out[d.key.metric.name] = {"count": v.count, "sum": v.sum, "min": v.min, "max": v.max}
    except Exception as e:
        logger.warning("could not read Beam metrics: %s", e)
    return out


def _read_dead_letters(path: str) -> list[DeadLetter]:
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return []
    with fs.open(p, "r") as f:
        return [DeadLetter.from_json(line) for line in f if line.strip()]


@dataclasses.dataclass
class LabelJob:
    """Everything :func:`prepare` checked before any work: options, model card, inputs."""

    args: argparse.Namespace
    beam_args: list[str]
    card: ModelCard
    run_date: str
    refs: list[TrackRef]
    feature_files: list[str]
    feature_format: str = ""


def prepare(argv: Sequence[str] | None = None) -> LabelJob:
    """Parse options and check the model dir, ``--features`` data and inputs; nothing is written.

    Raises
    ------
    SystemExit
        On bad options (argparse, exit status 2).
    FileNotFoundError, transforms.inference.ModelDirError, transforms.spec.ParameterMismatchError,
    ValueError
        For a model dir without ``model.json`` or with an unusable one, ``--features`` data whose
        spectrogram parameters differ from the model's, a bad run date, or inputs that match nothing.
    """
    parser = build_parser()
    args, beam_args = parse_job_args(parser, argv)
    check_job_args(parser, args)
    if sum([bool(args.input), bool(args.manifest), bool(args.features)]) != 1:
        parser.error("give exactly one of --input, --manifest or --features")
    if args.top_k < 1:
        parser.error("--top-k must be >= 1")
    if args.min_batch_size is None:
        args.min_batch_size = min(DEFAULT_MIN_BATCH_SIZE, args.max_batch_size)
    if not 1 <= args.min_batch_size <= args.max_batch_size:
        parser.error(f"need 1 <= --min-batch-size <= --max-batch-size, got {args.min_batch_size} and "
                     f"{args.max_batch_size}")
    if args.features and args.limit is not None:
        parser.error("--limit applies to audio inputs; use --sample with --features")
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    run_date = label_store.parse_run_date(args.run_date or today)
    card = load_model_card(args.model_dir, embeddings=args.embeddings)
    if args.features:
        metadata = read_metadata(args.features)
        card.spectrogram.check_compatible(
            metadata.spectrogram,
            what=f"--features data in {args.features} (model {card.model_version} was trained on other parameters)",
        )
        files = [label_store.join_uri(args.features, name) for names in metadata.shards.values() for name in names]
        return LabelJob(args, list(beam_args), card, run_date, [], files, metadata.format)
    refs = read_manifest(args.manifest) if args.manifest else refs_from_uris(expand_inputs(args.input))
    refs = select_inputs(refs, sample=args.sample, limit=args.limit)
    return LabelJob(args, list(beam_args), card, run_date, refs, [])


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Check, label, publish the partition; returns the ``_run.json`` contents.

    Raises
    ------
    Exception
        What :func:`prepare` raises (before any work), or the pipeline's failure (the partition of
        the run date is then left as it was; the run's staging folder is removed by the next run).
    """
    return launch(prepare(argv))


def launch(job: LabelJob) -> dict[str, Any]:
    """Run the pipeline for a prepared job, write ``_run.json`` and publish the partition."""
    t0 = time.perf_counter()
    args, beam_args, card, run_date = job.args, job.beam_args, job.card, job.run_date
    refs, feature_files = job.refs, job.feature_files
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    labeled_at = started

    index_t = time.perf_counter()
    index = (
        label_store.LabeledIndex.load(args.output, model_version=card.model_version, before=run_date)
        if args.skip_labeled else label_store.LabeledIndex.empty(card.model_version)
    )
    index_seconds = time.perf_counter() - index_t
    logger.info("model %s; %s inputs; %d tracks already labeled by this model in %d earlier partitions",
                card.model_version, len(refs) if refs else "featurized", len(index), len(index.partitions))

    run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    stale = label_store.remove_stale_staging(args.output, run_date)
    if stale:
        logger.warning("removed %d staging folders of runs of %s that did not finish: %s", len(stale), run_date, stale)
    staging = label_store.staging_dir(args.output, run_date, run_id)
    staging_fs, staging_path = fsspec.core.url_to_fs(staging)
    staging_fs.makedirs(staging_path, exist_ok=True)
    dead_path = label_store.join_uri(staging, label_store.ERRORS_DIR, DEAD_LETTER_FILE)

    uris = [args.output, args.model_dir] + [r.uri for r in refs[:1000]] + feature_files
    options = pipeline_options(beam_args, needs_in_process=needs_in_process(uris))
    pipeline_t = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        if args.features:
            sample = args.sample
            tracks = (
                p
                | "ShardFiles" >> beam.Create(feature_files)
                | "ReadShards" >> beam.FlatMap(_shard_rows, fmt=job.feature_format)
                | "GroupSegments" >> beam.GroupByKey()
                | "ToTrack" >> beam.Map(_features_from_rows, sample_rate=card.spectrogram.sample_rate,
                                        segment_seconds=card.spectrogram.segment_seconds)
            )
            if sample is not None:
                tracks = tracks | "Sample" >> beam.Filter(lambda t, s=sample: _in_sample(t.ref.track_id, s))
        else:
            tracks = p | "Tracks" >> beam.Create(refs)
        out = tracks | "Label" >> LabelTracks(
            model_dir=args.model_dir, card=card, output_dir=args.output, run_date=run_date,
            labeled_at=labeled_at, skip_labeled=args.skip_labeled, embeddings=args.embeddings,
            top_k=args.top_k, min_batch_size=args.min_batch_size, max_batch_size=args.max_batch_size,
            large_model=args.large_model, model_copies=args.model_copies, from_features=bool(args.features),
            limits=limits_from_args(args),
        )
        _write_rows(out["rows"], staging=staging, fmt=args.format, embeddings=args.embeddings,
                    num_shards=args.num_shards)
        _ = (
            out[DEAD_LETTERS]
            | "GatherDeadLetters" >> beam.combiners.ToList()
            | "WriteDeadLetters" >> beam.Map(_write_dead_letters, dead_path)
        )
    result = p.result
    pipeline_seconds = time.perf_counter() - pipeline_t
    if is_dry_run(options):
        logger.info("dry run: pipeline translated, nothing published")
        remove_quietly(staging)
        label_store.remove_empty_staging(args.output, run_date)
        return {"run_date": run_date, "status": "dry_run", "model_version": card.model_version}

    counters = _metric_counters(result)
    distributions = _metric_distributions(result)
    labeled = label_store.count_rows(staging)
    letters = _read_dead_letters(dead_path)
    by_reason: dict[str, int] = {}
    for letter in letters:
        by_reason[letter.reason] = by_reason.get(letter.reason, 0) + 1
    skipped = counters.get("label_skipped", 0)
    inputs = len(refs) if not args.features else counters.get("label_inputs", labeled + skipped + len(letters))
    balanced = inputs == labeled + skipped + len(letters)
    if not balanced:
        raise RuntimeError(
            f"accounting error: inputs {inputs} != labeled {labeled} + skipped {skipped} + dead letters "
            f"{len(letters)}; partition {run_date} not published (staging left in {staging})"
        )
    latency = distributions.get("inference_batch_latency_micro_secs", {})
    manifest = {
        "run_id": run_id,
        "run_date": run_date,
        "status": "complete",
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished": utc_now(),
        "model_dir": args.model_dir,
        "model_version": card.model_version,
        "labels": card.labels,
        "spectrogram": card.spectrogram.to_dict(),
        "format": args.format,
        "source": {"input": args.input, "manifest": args.manifest, "features": args.features,
                   "sample": args.sample, "limit": args.limit},
        "skip_labeled": args.skip_labeled,
        "embeddings": args.embeddings,
        "counts": {
            "inputs": inputs,
            "labeled": labeled,
            "skipped": skipped,
            "dead_letters": len(letters),
            "segments": counters.get("segments", 0),
            "index_rows": len(index),
            "balanced": balanced,
        },
        "failures": dict(sorted(by_reason.items())),
        "timings": {
            "index_seconds": round(index_seconds, 3),
            "pipeline_seconds": round(pipeline_seconds, 3),
            "inference_seconds": round(latency.get("sum", 0) / 1e6, 3),
            "inference_batches": latency.get("count", 0),
            "total_seconds": None,
        },
        "runner": options.get_all_options().get("runner"),
    }
    manifest["timings"]["total_seconds"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(label_store.join_uri(staging, label_store.RUN_MANIFEST), manifest)
    partition = label_store.publish_partition(staging, label_store.partition_dir(args.output, run_date))
    label_store.remove_empty_staging(args.output, run_date)
    logger.info("published %s: %d labeled, %d skipped, %d dead letters", partition, labeled, skipped, len(letters))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run and print a one-line summary.

    Returns 0 on success and 2, with a one-line ``genreflow label: error: ...``, when the checks
    before any work fail (bad model dir, mismatched ``--features`` data, inputs matching nothing).
    """
    try:
        job = prepare(argv)
    except (FileNotFoundError, ValueError) as e:  # ModelDirError, ParameterMismatchError are ValueErrors
        print(f"genreflow label: error: {e}", file=sys.stderr)
        return 2
    manifest = launch(job)
    c = manifest["counts"]
    print(
        f"run_date={manifest['run_date']} model {manifest['model_version']}: {c['inputs']} inputs, "
        f"{c['labeled']} labeled, {c['skipped']} skipped, {c['dead_letters']} dead letters "
        f"({json.dumps(manifest['failures'])}) in {manifest['timings']['total_seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    from genreflow.logs import configure_logging

    configure_logging()
    sys.exit(main())
