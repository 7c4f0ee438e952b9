"""The nightly label job: a catalog of audio -> one genre row per track, partitioned by run date.

::

    genreflow label --input 'gs://catalog/**/*.mp3' --model-dir gs://models/genre/v3 \\
        --output gs://labels/genre [--run-date 2026-11-29] [options] [Beam options]

The pipeline, as it reads::

    ReadTrackRefs --CoGroupByKey(track_id) with earlier labels--> AudioToLogMel --segments--> RunInference
         |                        |                                   |                         |
    dead letters               skipped                           dead letters     failed batches -> dead letters
                                                                                                |
        part-*.parquet <--GroupIntoShards-- rows <--CoGroupByKey(track)-------------------------+
        _errors/dead_letters-*.jsonl, _summary.json (counts computed from the PCollections)

Everything that grows with the catalog happens on workers: matching the patterns or reading the
manifest, the skip-labeled join against earlier partitions, sharding, counting and the dead letters.
The launcher parses options, checks the model dir, submits the graph, reads the run's small
``_summary.json`` and commits.

Spectrograms are computed with the parameters in the model dir's ``model.json`` (there are no
spectrogram flags: training and serving cannot disagree).  ``--features DIR`` labels featurize
shards instead of audio, after checking that their ``metadata.json`` parameters equal the model's.

Output (:mod:`transforms.label_store`)::

    OUTPUT/run_date=D/run_id=<id>/part-0000i-of-0000N.parquet (or .jsonl), _errors/, _summary.json
    OUTPUT/run_date=D/_run.json      the commit: written last, lists the run's files

Every input is labeled, skipped or dead-lettered: ``inputs = labeled + skipped + dead_letters``.  A
run whose accounting does not balance, that has no inputs, or whose dead letters exceed
``--max-error-fraction`` commits nothing: the date's previous ``_run.json`` and its files stay.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import sys
import time
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference

from genreflow.args import pipeline_failure, report_error
from pipelines.options import (add_limit_args, check_job_args, is_dry_run, limits_from_args, needs_in_process,
                               parse_job_args, pipeline_options)
from transforms import label_store
from transforms.beam_audio import AudioToLogMel, ReadLimits, TrackFeatures, content_hash
from transforms.commit import RUN_PREFIX, SUMMARY_FILE, new_run_id, remove_other_runs, run_folder
from transforms.deadletters import DEAD_LETTERS, DeadLetter
from transforms.inference import aggregate_track, keyed_model_handler, stack_segment_predictions
from transforms.metadata import ModelCard, read_metadata, utc_now
from transforms.model_dir import DEFAULT_INFERENCE_BATCH_SIZE, load_model_card
from transforms.shard_reader import dataset_shards, read_segment_rows
from transforms.shards import GroupIntoShards, WriteDeadLetters
from transforms.sources import ReadTrackRefs, TrackRef, check_manifest_header, check_patterns, in_sample
from transforms.storage import join_uri, read_json, write_json_atomic
from transforms.spec import (
    FEATURE_LABEL,
    FEATURE_MEL,
    FEATURE_SEGMENT_INDEX,
    FEATURE_START_SECONDS,
    FEATURE_TRACK_ID,
    FEATURE_URI,
)

__all__ = [
    "build_parser",
    "label_row",
    "split_labeled",
    "shard_tracks",
    "SkipLabeled",
    "ReadFeatureTracks",
    "WriteLabelRows",
    "build_pipeline",
    "summarize",
    "LabelTracks",
    "LabelOptions",
    "LabelJob",
    "commit_record",
    "LabelRunError",
    "prepare",
    "launch",
    "run",
    "main",
]

logger = logging.getLogger(__name__)

SKIPPED = "skipped"
DEFAULT_MIN_BATCH_SIZE = 32
DEFAULT_MAX_ERROR_FRACTION = 0.1
#: Label rows per part file when ``--num-shards`` is 0 (about 20-60 MB of Parquet with embeddings).
ROWS_PER_PART = 100_000
#: Prefix of the ``listing`` of a track read from featurize shards: a hash of its log-mel segments.
CONTENT_FINGERPRINT = "content:"


class LabelRunError(RuntimeError):
    """The pipeline ran but its output is not committed (no inputs, too many failures, bad accounting)."""


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
                     help="audio files to label: glob on local disk, gs://, s3:// (** for any depth); repeatable. "
                          "Matched inside the pipeline; the track id is the path below the pattern's fixed folders")
    src.add_argument("--manifest", help="CSV, JSON Lines or Parquet file (or a glob of them) with a 'uri' column "
                                        "(optional track_id, listing); read inside the pipeline")
    src.add_argument("--features", metavar="DIR",
                     help="label featurize output (shards + metadata.json) instead of audio; its spectrogram "
                          "parameters must equal the model's")
    p.add_argument("--model-dir", "--model_dir", required=True,
                   help="model dir with the .keras file and model.json (labels, spectrogram parameters)")
    p.add_argument("--output", required=True,
                   help="output dir; rows go to OUTPUT/run_date=YYYY-MM-DD/run_id=<id>/, committed by "
                        "OUTPUT/run_date=YYYY-MM-DD/_run.json")
    p.add_argument("--run-date", "--run_date", default=None,
                   help="partition date YYYY-MM-DD (default: today, UTC); rerunning a date replaces it")
    p.add_argument("--format", choices=tuple(label_store.FORMATS), default="parquet",
                   help="output file format (default parquet)")
    p.add_argument("--skip-labeled", "--skip_labeled", dest="skip_labeled", action=argparse.BooleanOptionalAction,
                   default=True,
                   help="skip tracks that an earlier partition labeled with the same model version and the same "
                        "file version (its listing version: ETag/generation, or size and mtime) "
                        "(default on; --no-skip-labeled relabels everything)")
    p.add_argument("--top-k", "--top_k", type=int, default=3, help="genres in the top_k column (default 3)")
    p.add_argument("--embeddings", action="store_true",
                   help="add the per-track mean of the model's embedding layer (model.json embedding_layer)")
    p.add_argument("--min-batch-size", "--min_batch_size", type=int, default=None,
                   help="fewest segments per model call, except at the end of a bundle (default: 32, or "
                        "--max-batch-size if that is smaller; Beam grows batches from here towards the maximum)")
    p.add_argument("--max-batch-size", "--max_batch_size", type=int, default=None,
                   help="most segments per model call (default: the model's model.json "
                        "inference_batch_size, e.g. 32 for a musicnn backbone, else 256)")
    p.add_argument("--large-model", "--large_model", action="store_true",
                   help="load one model copy per machine, shared by all worker processes, instead of one per "
                        "process (for models that do not fit once per core)")
    p.add_argument("--model-copies", "--model_copies", type=int, default=None,
                   help="exact number of model copies per machine (shared across processes)")
    p.add_argument("--limit", type=int, default=None,
                   help="label at most N inputs: the N smallest track ids, after --sample (smoke runs; audio only)")
    p.add_argument("--sample", type=float, default=None, metavar="FRACTION",
                   help="label a deterministic pseudo-random FRACTION of the inputs (hash of the track id)")
    p.add_argument("--num-shards", "--num_shards", type=int, default=0,
                   help=f"part files per run (default 0: one per {ROWS_PER_PART:,} labeled rows, at least one)")
    p.add_argument("--max-error-fraction", "--max_error_fraction", type=float, default=DEFAULT_MAX_ERROR_FRACTION,
                   help="commit nothing and exit 1 when more than this fraction of the inputs became dead letters "
                        f"(default {DEFAULT_MAX_ERROR_FRACTION}); the date's previous partition stays")
    add_limit_args(p)
    return p


@dataclasses.dataclass(frozen=True)
class LabelOptions:
    """How :class:`LabelTracks` labels tracks: the model, its batching, the skip join and the rows.

    Attributes
    ----------
    model_dir : str
    card : ModelCard
        From :func:`transforms.model_dir.load_model_card`.
    output_dir : str
        Where earlier partitions are (for ``skip_labeled``).
    run_date : str
        Partitions dated before it are the history of the skip join.
    labeled_at : datetime.datetime
        The ``labeled_at`` of every row.
    skip_labeled : bool
        Skip tracks an earlier partition labeled with this model version and file version.
    embeddings : bool
        Add the per-track mean embedding to each row.
    top_k : int
        Genres in the ``top_k`` column.
    min_batch_size, max_batch_size : int or None
        Segments per model call.
    large_model : bool
        One model copy per machine, shared by its processes.
    model_copies : int or None
        Exact number of model copies per machine.
    from_features : bool
        The input PCollection holds :class:`TrackFeatures` (``--features``) instead of
        :class:`TrackRef`.
    limits : ReadLimits
        Per-input size and duration bounds for the audio path.
    """

    model_dir: str
    card: ModelCard
    output_dir: str
    run_date: str
    labeled_at: datetime.datetime
    skip_labeled: bool = True
    embeddings: bool = False
    top_k: int = 3
    min_batch_size: int | None = None
    max_batch_size: int | None = None
    large_model: bool = False
    model_copies: int | None = None
    from_features: bool = False
    limits: ReadLimits = ReadLimits()


@dataclasses.dataclass
class LabelJob:
    """Everything :func:`prepare` checked before any work; nothing here grows with the catalog.

    Attributes
    ----------
    label : LabelOptions
        The model, the run date, the output dir, ``labeled_at`` (the run's start) and how to label.
    run_id : str
        This run's id; its files go to ``OUTPUT/run_date=D/run_id=<run_id>/``.
    patterns, manifest, features : list of str, str or None, str or None
        The input, as given: audio patterns, a manifest, or a featurize output (exactly one).
    fmt : str
        Output file format.
    sample, limit : float or None, int or None
        As given.
    num_shards : int
        Part files per run (0: one per :data:`ROWS_PER_PART` rows).
    max_error_fraction : float
    beam_args : list of str
        Options for Beam.
    """

    label: LabelOptions
    run_id: str
    patterns: list[str] = dataclasses.field(default_factory=list)
    manifest: str | None = None
    features: str | None = None
    fmt: str = "parquet"
    sample: float | None = None
    limit: int | None = None
    num_shards: int = 0
    max_error_fraction: float = DEFAULT_MAX_ERROR_FRACTION
    beam_args: list[str] = dataclasses.field(default_factory=list)

    @property
    def card(self) -> ModelCard:
        return self.label.card

    @property
    def run_date(self) -> str:
        return self.label.run_date

    @property
    def output(self) -> str:
        return self.label.output_dir

    @property
    def partition(self) -> str:
        """``OUTPUT/run_date=D``."""
        return label_store.partition_dir(self.output, self.run_date)

    @property
    def run_dir(self) -> str:
        """``OUTPUT/run_date=D/run_id=<run_id>``: every file of the run goes below it."""
        return run_folder(self.partition, self.run_id)


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



def split_labeled(
    track_id: str, inputs: Iterable[TrackRef | TrackFeatures], labeled: Iterable[str]
) -> tuple[list[TrackRef | TrackFeatures], list[str]]:
    """One key of the skip join: which inputs to label and which track ids to skip.

    Parameters
    ----------
    track_id : str
    inputs : iterable of TrackRef or TrackFeatures
        This run's inputs with that id (one after de-duplication; none when only history has it).
    labeled : iterable of str
        Fingerprints that earlier partitions recorded for the id with this model version.

    Returns
    -------
    (to_label, skipped_ids)
        An input is skipped when its ``listing`` is known (not empty) and equals one of ``labeled``.
    """
    done = set(labeled)
    todo, skipped = [], []
    for item in inputs:
        listing = item.ref.listing if isinstance(item, TrackFeatures) else item.listing
        if listing and listing in done:
            skipped.append(track_id)
        else:
            todo.append(item)
    return todo, skipped


def _skip_or_label(joined: tuple[str, dict[str, list]]) -> Iterator:
    track_id, grouped = joined
    todo, skipped = split_labeled(track_id, grouped["input"], grouped["labeled"])
    yield from todo
    for t in skipped:
        yield beam.pvalue.TaggedOutput(SKIPPED, t)


def _track_id_of(item: TrackRef | TrackFeatures) -> str:
    return item.ref.track_id if isinstance(item, TrackFeatures) else item.track_id


def _earlier_files(output_dir: str, *, before: str) -> Iterator[str]:
    for _, uri in label_store.committed_files(output_dir, before=before):
        yield uri


def _segments(features: TrackFeatures) -> Iterator[tuple[tuple[str, int], np.ndarray]]:
    for i, mel in enumerate(features.mels):
        yield (features.ref.track_id, i), mel


def _track_info(features: TrackFeatures) -> tuple[str, dict[str, Any]]:
    return features.ref.track_id, {
        "uri": features.ref.uri,
        "fingerprint": features.ref.listing,
        "n_segments": int(len(features.mels)),
        "duration_seconds": float(features.duration_seconds),
        "content_hash": features.content_hash,
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
        infos, preds, fails = grouped["info"], grouped["pred"], grouped["fail"]
        if not infos:  # failed before inference: its dead letter came from AudioToLogMel
            return iter(())
        info = infos[0]
        if fails or len(preds) != info["n_segments"]:
            reason = "inference_error" if fails else "missing_segments"
            message = fails[0] if fails else f"{len(preds)} of {info['n_segments']} segment predictions"
            letter = DeadLetter(uri=info["uri"], stage="infer", reason=reason, message=message[:2000],
                                track_id=track_id)
            return iter([beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)])
        row = label_row(
            track_id=track_id,
            uri=info["uri"],
            fingerprint=info["fingerprint"],
            content_hash=info["content_hash"],
            duration_seconds=info["duration_seconds"],
            predictions=preds,
            card=self._card,
            labeled_at=self._labeled_at,
            top_k=self._top_k,
        )
        return iter([row])


# Reading featurize shards ------------------------------------------------------------------------
def _features_of(rows: list[dict[str, Any]], *, sample_rate: int, segment_seconds: float) -> TrackFeatures:
    mels = np.stack([np.asarray(r[FEATURE_MEL], np.float32) for r in rows])
    content = content_hash(mels.tobytes())
    first = rows[0]
    return TrackFeatures(
        ref=TrackRef(uri=first[FEATURE_URI], track_id=first[FEATURE_TRACK_ID], label=first.get(FEATURE_LABEL, ""),
                     listing=CONTENT_FINGERPRINT + content),
        mels=mels,
        starts=[int(round(r[FEATURE_START_SECONDS] * sample_rate)) for r in rows],
        duration_seconds=rows[-1][FEATURE_START_SECONDS] + segment_seconds,
        content_hash=content,
    )


def shard_tracks(
    rows: Iterable[dict[str, Any]], *, shard: str, sample_rate: int, segment_seconds: float
) -> Iterator[TrackFeatures | DeadLetter]:
    """Segment rows of one shard -> one :class:`TrackFeatures` per track, holding one track at a time.

    featurize writes a track's segments contiguously, in segment order, in one shard.  A track
    whose segments are not numbered ``0, 1, 2, ...`` or that reappears later in the shard becomes a
    ``bad_segments`` dead letter (stage ``features``) instead of a label from part of its audio.

    Parameters
    ----------
    rows : iterable of dict
        Decoded segment rows (:func:`transforms.records.table_to_rows`), in file order.
    shard : str
        The shard's URI, for messages.
    sample_rate : int
        Of the spectrogram parameters (segment start in samples).
    segment_seconds : float
        The duration is the last segment's start plus this.
    """
    seen: set[str] = set()
    current: list[dict[str, Any]] = []
    broken = ""

    def finish() -> Iterator[TrackFeatures | DeadLetter]:
        if not current:
            return
        track_id = current[0][FEATURE_TRACK_ID]
        seen.add(track_id)
        if broken:
            yield DeadLetter(uri=current[0][FEATURE_URI], stage="features", reason="bad_segments",
                             message=f"{shard}: {broken}", track_id=track_id)
        else:
            yield _features_of(current, sample_rate=sample_rate, segment_seconds=segment_seconds)

    for row in rows:
        track_id = row[FEATURE_TRACK_ID]
        if current and track_id != current[0][FEATURE_TRACK_ID]:
            yield from finish()
            current, broken = [], ""
        if not current and track_id in seen:
            broken = f"segments of track {track_id!r} are not contiguous in the shard"
            seen.discard(track_id)  # report the second run of rows as its own dead letter
        expected = len(current)
        if not broken and int(row[FEATURE_SEGMENT_INDEX]) != expected:
            broken = f"segment {row[FEATURE_SEGMENT_INDEX]} where segment {expected} was expected"
        current.append(row)
    yield from finish()


def _read_shard(item: tuple[str, str], *, sample_rate: int, segment_seconds: float) -> Iterator:
    path, fmt = item
    try:
        for out in shard_tracks(read_segment_rows(path, fmt=fmt), shard=path, sample_rate=sample_rate,
                                segment_seconds=segment_seconds):
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, out) if isinstance(out, DeadLetter) else out
    except (OSError, ValueError, KeyError) as e:  # a missing or unreadable shard: its tracks are unknown
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTERS, DeadLetter(uri=path, stage="features", reason="unreadable_shard",
                                     message=f"{type(e).__name__}: {e}"))


class ReadFeatureTracks(beam.PTransform):
    """``--features DIR`` -> ``{"tracks": TrackFeatures, "dead_letters": DeadLetter}``, in the pipeline.

    The shard list comes from ``DIR/metadata.json``, read by a worker; each shard is streamed by one
    worker into tracks (:func:`shard_tracks`): no shuffle of segments.
    """

    def __init__(self, *, features_dir: str, sample_rate: int, segment_seconds: float,
                 sample: float | None = None) -> None:
        super().__init__()
        self._dir = features_dir
        self._sr, self._seg = sample_rate, segment_seconds
        self._sample = sample

    def expand(self, pbegin):
        read = (
            pbegin
            | "FeaturesDir" >> beam.Create([self._dir])
            | "ShardFiles" >> beam.FlatMap(dataset_shards)
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShards" >> beam.FlatMap(_read_shard, sample_rate=self._sr, segment_seconds=self._seg)
            .with_outputs(DEAD_LETTERS, main="tracks")
        )
        tracks = read.tracks
        if self._sample is not None:
            tracks = tracks | "Sample" >> beam.Filter(lambda t, s=self._sample: in_sample(t.ref.track_id, s))
        return {"tracks": tracks, DEAD_LETTERS: read[DEAD_LETTERS]}


# The pipeline ------------------------------------------------------------------------------------
class SkipLabeled(beam.PTransform):
    """Tracks -> ``{"todo": tracks to label, "skipped": track ids}``: a join with earlier partitions.

    The committed partitions dated before ``run_date`` are listed by one worker (from their
    ``_run.json``), their part files spread over workers and read for ``track_id``, ``fingerprint``
    and ``model_version`` only (:func:`transforms.label_store.labeled_keys`); the
    ``(track_id, fingerprint)`` pairs of ``model_version`` are co-grouped with the tracks by track
    id (:func:`split_labeled`).  No worker holds more than one track's history.

    Parameters
    ----------
    output_dir : str
        The label job's output dir.
    run_date : str
        ``YYYY-MM-DD``; partitions on or after it are not read, so a rerun sees what the first run saw.
    model_version : str
        Only rows this model labeled count.
    """

    def __init__(self, *, output_dir: str, run_date: str, model_version: str) -> None:
        super().__init__()
        self._output_dir, self._run_date, self._model_version = output_dir, run_date, model_version

    def expand(self, tracks):
        earlier = (
            tracks.pipeline
            | "Output" >> beam.Create([self._output_dir])
            | "EarlierFiles" >> beam.FlatMap(_earlier_files, before=self._run_date)
            | "SpreadEarlierFiles" >> beam.Reshuffle()
            | "LabeledKeys" >> beam.FlatMap(label_store.labeled_keys, model_version=self._model_version)
        )
        checked = (
            {"input": tracks | "ByTrackId" >> beam.Map(lambda t: (_track_id_of(t), t)), "labeled": earlier}
            | "JoinEarlier" >> beam.CoGroupByKey()
            | "Split" >> beam.FlatMap(_skip_or_label).with_outputs(SKIPPED, main="todo")
        )
        return {"todo": checked.todo, SKIPPED: checked[SKIPPED]}


class LabelTracks(beam.PTransform):
    """Tracks to label -> ``rows`` (dicts), ``dead_letters``, ``skipped`` (track ids), ``segments`` (ints).

    Parameters
    ----------
    options : LabelOptions

    With ``options.skip_labeled``, tracks go through :class:`SkipLabeled` first; audio
    (:class:`TrackRef`) goes through :class:`AudioToLogMel`, then every segment through
    ``RunInference``, and the predictions are joined back into one row per track.
    """

    def __init__(self, options: LabelOptions) -> None:
        super().__init__()
        self._opt = options

    def expand(self, tracks):
        todo, skipped = self._skip_labeled(tracks)
        features, audio_dead = self._features(todo)
        rows, infer_dead = self._label(features)
        return {
            "rows": rows,
            DEAD_LETTERS: (infer_dead, *audio_dead) | "AllDeadLetters" >> beam.Flatten(),
            SKIPPED: skipped,
            "segments": features | "SegmentCount" >> beam.Map(lambda f: int(len(f.mels))),
        }

    def _skip_labeled(self, tracks):
        """-> (tracks to label, skipped track ids)."""
        opt = self._opt
        if not opt.skip_labeled:
            return tracks, tracks.pipeline | "NoneSkipped" >> beam.Create([])
        checked = tracks | "SkipLabeled" >> SkipLabeled(
            output_dir=opt.output_dir, run_date=opt.run_date, model_version=opt.card.model_version)
        return checked["todo"], checked[SKIPPED]

    def _features(self, todo):
        """-> (TrackFeatures, the audio path's dead letters as a 0- or 1-tuple)."""
        if self._opt.from_features:
            return todo, ()
        audio = todo | "AudioToLogMel" >> AudioToLogMel(params=self._opt.card.spectrogram, limits=self._opt.limits)
        return audio.features, (audio.dead_letters,)

    def _label(self, features):
        """TrackFeatures -> (label rows, ``stage="infer"`` dead letters): RunInference per segment, joined by track."""
        opt = self._opt
        handler = keyed_model_handler(
            opt.model_dir, card=opt.card, embeddings=opt.embeddings,
            min_batch_size=opt.min_batch_size, max_batch_size=opt.max_batch_size,
            large_model=opt.large_model, model_copies=opt.model_copies,
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
            }
            | "JoinTrack" >> beam.CoGroupByKey()
        )
        assembled = grouped | "Assemble" >> beam.ParDo(
            _AssembleFn(card=opt.card, labeled_at=opt.labeled_at, top_k=opt.top_k)
        ).with_outputs(DEAD_LETTERS, main="rows")
        return assembled.rows, assembled[DEAD_LETTERS]


def _write_part_shard(shard: tuple[tuple[str, int, int], list[dict]], *, folder: str, fmt: str,
                      embeddings: bool) -> dict[str, Any]:
    (_, index, n), rows = shard
    name = label_store.part_name(index, n, fmt=fmt)
    return {"file": name, "count": label_store.write_part(join_uri(folder, name), rows, fmt=fmt,
                                                          embeddings=embeddings)}


class WriteLabelRows(beam.PTransform):
    """Label rows -> ``FOLDER/part-0000i-of-0000N.<fmt>``, one file per shard (hash of the track id).

    Returns one ``{"file": name, "count": rows}`` per file; there is at least one file (empty when
    nothing was labeled), so a reader never meets a committed run without parts.
    """

    def __init__(self, folder: str, *, fmt: str, embeddings: bool, num_shards: int = 0,
                 rows_per_part: int = ROWS_PER_PART) -> None:
        super().__init__()
        self._folder, self._fmt, self._embeddings = folder, fmt, embeddings
        self._num_shards, self._per_part = num_shards, rows_per_part

    def expand(self, rows):
        return (
            rows
            | "ShardRows" >> GroupIntoShards(id_fn=lambda r: r["track_id"], num_shards=self._num_shards,
                                             per_shard=self._per_part, groups=[""], minimum=1)
            | "WriteParts" >> beam.Map(_write_part_shard, folder=self._folder, fmt=self._fmt,
                                       embeddings=self._embeddings)
        )


def summarize(
    *,
    inputs: int,
    skipped: int,
    segments: int,
    parts: Sequence[dict[str, Any]],
    letter_files: Sequence[dict[str, Any]],
    reasons: Iterable[tuple[str, int]],
) -> dict[str, Any]:
    """The run's ``_summary.json``: counts computed from the pipeline's data and the files it wrote.

    Parameters
    ----------
    inputs, skipped, segments : int
        Counts of the input, skipped and segment PCollections.
    parts, letter_files : sequence of dict
        ``{"file", "count"}`` per part file and per dead-letter file written.
    reasons : iterable of (str, int)
        Dead letters per reason.

    ``labeled`` and ``dead_letters`` are the rows in the files written; ``balanced`` says whether
    ``inputs == labeled + skipped + dead_letters`` and the reasons add up to the dead letters.
    """
    failures = dict(sorted(reasons))
    labeled = sum(int(p["count"]) for p in parts)
    dead = sum(int(d["count"]) for d in letter_files)
    return {
        "counts": {
            "inputs": int(inputs),
            "labeled": labeled,
            "skipped": int(skipped),
            "dead_letters": dead,
            "segments": int(segments),
            "balanced": inputs == labeled + skipped + dead and sum(failures.values()) == dead,
        },
        "failures": failures,
        "files": {
            "rows": sorted(p["file"] for p in parts),
            "dead_letters": sorted(join_uri(label_store.ERRORS_DIR, d["file"]) for d in letter_files),
        },
    }


class _Tally(beam.CombineFn):
    """``(kind, value)`` events -> everything :func:`summarize` needs, in one combine.

    Kinds: ``inputs``, ``skipped``, ``segments`` (added up), ``reason`` (dead letters counted per
    reason), ``part`` and ``letter_file`` (the ``{"file", "count"}`` of each file written, listed).
    """

    def create_accumulator(self) -> dict[str, Any]:
        return {"inputs": 0, "skipped": 0, "segments": 0, "reasons": {}, "parts": [], "letter_files": []}

    def add_input(self, acc: dict[str, Any], event: tuple[str, Any]) -> dict[str, Any]:
        kind, value = event
        if kind == "reason":
            acc["reasons"][value] = acc["reasons"].get(value, 0) + 1
        elif kind == "part":
            acc["parts"].append(value)
        elif kind == "letter_file":
            acc["letter_files"].append(value)
        else:
            acc[kind] += int(value)
        return acc

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        out = self.create_accumulator()
        for acc in accumulators:
            for key in ("inputs", "skipped", "segments"):
                out[key] += acc[key]
            for reason, n in acc["reasons"].items():
                out["reasons"][reason] = out["reasons"].get(reason, 0) + n
            out["parts"] += acc["parts"]
            out["letter_files"] += acc["letter_files"]
        return out

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


def _write_summary(tally: dict[str, Any], *, folder: str) -> dict[str, Any]:
    summary = summarize(inputs=tally["inputs"], skipped=tally["skipped"], segments=tally["segments"],
                        parts=tally["parts"], letter_files=tally["letter_files"], reasons=tally["reasons"].items())
    write_json_atomic(join_uri(folder, SUMMARY_FILE), summary)
    return summary


def _event(kind: str, value_fn=None):
    return beam.Map(lambda x, k=kind, f=value_fn: (k, f(x) if f else 1))


def _read_inputs(p: beam.Pipeline, job: LabelJob) -> tuple[Any, Any]:
    """-> (tracks: TrackRef or TrackFeatures, the dead letters of inputs that could not be read)."""
    if job.features:
        read = p | "ReadFeatures" >> ReadFeatureTracks(
            features_dir=job.features, sample_rate=job.card.spectrogram.sample_rate,
            segment_seconds=job.card.spectrogram.segment_seconds, sample=job.sample)
        return read["tracks"], read[DEAD_LETTERS]
    read = p | "ReadInputs" >> ReadTrackRefs(patterns=job.patterns, manifest=job.manifest, exclude=[job.output],
                                             sample=job.sample, limit=job.limit)
    return read["refs"], read[DEAD_LETTERS]


def build_pipeline(p: beam.Pipeline, job: LabelJob) -> dict[str, Any]:
    """Add the whole label job to ``p``: read, skip, label, write parts, dead letters and ``_summary.json``.

    Returns
    -------
    dict of PCollection
        ``rows`` (label rows), ``dead_letters`` (every :class:`DeadLetter`), ``skipped`` (track
        ids), ``parts`` and ``letter_files`` (``{"file", "count"}`` per file written below
        ``job.run_dir``) and ``summary`` (the ``_summary.json`` written, one element).
    """
    tracks, read_dead = _read_inputs(p, job)
    out = tracks | "Label" >> LabelTracks(job.label)
    parts = out["rows"] | "WriteRows" >> WriteLabelRows(job.run_dir, fmt=job.fmt, embeddings=job.label.embeddings,
                                                        num_shards=job.num_shards)
    letters = (read_dead, out[DEAD_LETTERS]) | "EveryDeadLetter" >> beam.Flatten()
    letter_files = letters | "WriteDeadLetters" >> WriteDeadLetters(join_uri(job.run_dir, label_store.ERRORS_DIR))
    events = (
        tracks | "InputEvents" >> _event("inputs"),
        read_dead | "FailedInputEvents" >> _event("inputs"),
        out[SKIPPED] | "SkippedEvents" >> _event("skipped"),
        out["segments"] | "SegmentEvents" >> _event("segments", int),
        letters | "ReasonEvents" >> _event("reason", lambda d: d.reason),
        parts | "PartEvents" >> _event("part", dict),
        letter_files | "LetterFileEvents" >> _event("letter_file", dict),
    )
    summary = (
        events
        | "AllEvents" >> beam.Flatten()
        | "Tally" >> beam.CombineGlobally(_Tally()).without_defaults()
        | "WriteSummary" >> beam.Map(_write_summary, folder=job.run_dir)
    )
    return {"rows": out["rows"], DEAD_LETTERS: letters, SKIPPED: out[SKIPPED], "parts": parts,
            "letter_files": letter_files, "summary": summary}


# Launcher ----------------------------------------------------------------------------------------
def _inference_timing(result: Any) -> dict[str, float]:
    """Summed model time from RunInference's latency metric: a report only (counts never come from metrics)."""
    try:
        for d in result.metrics().query(MetricsFilter())["distributions"]:
            v = d.committed or d.attempted
            if d.key.metric.name == "inference_batch_latency_micro_secs" and v is not None and v.count:
                return {"inference_seconds": round(v.sum / 1e6, 3), "inference_batches": v.count}
    except Exception as e:  # some runners report no metrics
        logger.warning("could not read Beam metrics: %s", e)
    return {"inference_seconds": 0.0, "inference_batches": 0}


def prepare(argv: Sequence[str] | None = None) -> LabelJob:
    """Parse options and check the model dir, ``--features`` parameters and input locations; nothing is written.

    The inputs themselves are matched or read in the pipeline; here each pattern's fixed base folder
    must exist, and a manifest must have a ``uri`` column (one header read).

    Raises
    ------
    SystemExit
        On bad options (argparse, exit status 2).
    FileNotFoundError, transforms.model_dir.ModelDirError, transforms.spec.ParameterMismatchError,
    ValueError
        For a model dir without ``model.json`` or with an unusable one, ``--features`` data whose
        spectrogram parameters differ from the model's, a bad run date, a pattern whose base folder
        does not exist or a manifest without a ``uri`` column.
    """
    args, beam_args = _parse_args(argv)
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    run_date = label_store.parse_run_date(args.run_date or today)
    card = load_model_card(args.model_dir, embeddings=args.embeddings)
    _check_inputs(args, card)
    return _job_from_args(args, beam_args, card=card, run_date=run_date)


def _parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The job's options, each checked on its own (exit 2 on a bad one), and Beam's."""
    parser = build_parser()
    args, beam_args = parse_job_args(parser, argv)
    check_job_args(parser, args)
    if sum([bool(args.input), bool(args.manifest), bool(args.features)]) != 1:
        parser.error("give exactly one of --input, --manifest or --features")
    if args.top_k < 1:
        parser.error("--top-k must be >= 1")
    for name in ("min_batch_size", "max_batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if None not in (args.min_batch_size, args.max_batch_size) and args.min_batch_size > args.max_batch_size:
        parser.error(f"need --min-batch-size <= --max-batch-size, got {args.min_batch_size} and "
                     f"{args.max_batch_size}")
    if args.features and args.limit is not None:
        parser.error("--limit applies to audio inputs; use --sample with --features")
    if args.sample is not None and not 0.0 < args.sample <= 1.0:
        parser.error(f"--sample must be in (0, 1], got {args.sample}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.num_shards < 0:
        parser.error(f"--num-shards must be >= 0, got {args.num_shards}")
    if not 0.0 <= args.max_error_fraction <= 1.0:
        parser.error(f"--max-error-fraction must be in [0, 1], got {args.max_error_fraction}")
    return args, list(beam_args)


def _check_inputs(args: argparse.Namespace, card: ModelCard) -> None:
    """``--features`` parameters equal the model's; a manifest has a ``uri`` column; pattern folders exist."""
    if args.features:
        metadata = read_metadata(args.features)
        card.spectrogram.check_compatible(
            metadata.spectrogram,
            what=f"--features data in {args.features} (model {card.model_version} was trained on other parameters)",
        )
    elif args.manifest:
        check_manifest_header(args.manifest)
    else:
        check_patterns(args.input)


def batch_sizes(card: ModelCard, *, fewest: int | None, most: int | None) -> dict[str, int]:
    """``{min_batch_size, max_batch_size}``: segments per model call.

    The most is ``--max-batch-size``, else the model's ``inference_batch_size`` (``model.json``),
    else :data:`transforms.model_dir.DEFAULT_INFERENCE_BATCH_SIZE`; the fewest is ``--min-batch-size``, else
    :data:`DEFAULT_MIN_BATCH_SIZE` capped at the most.

    Raises
    ------
    ValueError
        When ``--min-batch-size`` is above the most.
    """
    most = most or card.inference_batch_size or DEFAULT_INFERENCE_BATCH_SIZE
    if fewest is not None and fewest > most:
        raise ValueError(f"--min-batch-size {fewest} is above the most segments per model call, {most} "
                         "(--max-batch-size, else the model's inference_batch_size): lower it")
    return {"min_batch_size": fewest or min(DEFAULT_MIN_BATCH_SIZE, most), "max_batch_size": most}


def _job_from_args(args: argparse.Namespace, beam_args: list[str], *, card: ModelCard, run_date: str) -> LabelJob:
    """The checked options as a :class:`LabelJob` starting now (its ``labeled_at`` and run id)."""
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    label = LabelOptions(
        model_dir=args.model_dir, card=card, output_dir=args.output, run_date=run_date, labeled_at=started,
        skip_labeled=args.skip_labeled, embeddings=args.embeddings, top_k=args.top_k,
        **batch_sizes(card, fewest=args.min_batch_size, most=args.max_batch_size), large_model=args.large_model,
        model_copies=args.model_copies, from_features=bool(args.features), limits=limits_from_args(args),
    )
    return LabelJob(
        label=label, run_id=new_run_id(started), patterns=list(args.input), manifest=args.manifest,
        features=args.features, fmt=args.format, sample=args.sample, limit=args.limit, num_shards=args.num_shards,
        max_error_fraction=args.max_error_fraction, beam_args=beam_args,
    )


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Check, label, commit the partition; returns the ``_run.json`` contents.

    Raises
    ------
    Exception
        What :func:`prepare` raises (before any work), the pipeline's failure, or
        :class:`LabelRunError`; in each case nothing is committed and the date's previous partition
        stays as it was.
    """
    return launch(prepare(argv))


def _check_summary(summary: dict[str, Any], *, max_error_fraction: float, folder: str) -> None:
    c = summary["counts"]
    if not c["balanced"]:
        raise LabelRunError(
            f"accounting error: inputs {c['inputs']} != labeled {c['labeled']} + skipped {c['skipped']} + dead letters "
            f"{c['dead_letters']} (by reason {summary['failures']}); nothing committed, run left in {folder}")
    if c["inputs"] == 0:
        raise LabelRunError("no inputs: the patterns, manifest or features matched no track; nothing committed")
    if c["dead_letters"] / c["inputs"] > max_error_fraction:
        raise LabelRunError(
            f"{c['dead_letters']} of {c['inputs']} inputs failed ({c['dead_letters'] / c['inputs']:.1%}: "
            f"{json.dumps(summary['failures'])}), more than --max-error-fraction {max_error_fraction:g}; nothing "
            f"committed, dead letters in {join_uri(folder, label_store.ERRORS_DIR)}")


def launch(job: LabelJob) -> dict[str, Any]:
    """Run the pipeline for a prepared job, check its ``_summary.json``, commit ``_run.json``, clean up.

    Returns the commit record (or ``{"status": "dry_run", ...}`` for ``--dry_run``, which writes
    nothing).
    """
    t0 = time.perf_counter()
    uris = [job.output, job.label.model_dir, *job.patterns, job.manifest or "", job.features or ""]
    options = pipeline_options(job.beam_args, needs_in_process=needs_in_process(uris))
    if is_dry_run(options):
        _run_pipeline(job, options)
        logger.info("dry run: pipeline translated, nothing written or committed")
        return {"run_date": job.run_date, "run_id": job.run_id, "status": "dry_run",
                "model_version": job.card.model_version}
    _remove_failed_runs(job)
    pipeline_seconds, result = _run_pipeline(job, options)
    summary = read_json(join_uri(job.run_dir, SUMMARY_FILE))
    _check_summary(summary, max_error_fraction=job.max_error_fraction, folder=job.run_dir)
    timings = {"pipeline_seconds": round(pipeline_seconds, 3), **_inference_timing(result)}
    record = commit_record(job, summary, timings=timings, runner=options.get_all_options().get("runner"))
    record["timings"]["total_seconds"] = round(time.perf_counter() - t0, 3)
    _commit(job, record)
    return record


def _remove_failed_runs(job: LabelJob) -> None:
    """Remove the folders of runs of this date that died or failed; the committed one stays."""
    committed = (label_store.read_commit(job.partition) or {}).get("run_id")
    remove_other_runs(job.partition, keep=[r for r in (committed, job.run_id) if r])


def _run_pipeline(job: LabelJob, options: Any) -> tuple[float, Any]:
    """Build and run the graph, waiting for it; -> (seconds it took, the runner's result)."""
    started = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, job)
    return time.perf_counter() - started, p.result


def commit_record(job: LabelJob, summary: dict[str, Any], *, timings: dict[str, float],
                  runner: str | None) -> dict[str, Any]:
    """The partition's ``_run.json``: the run's options, files (relative to the partition) and counts."""
    relative = RUN_PREFIX + job.run_id  # the run folder, relative to the partition
    card = job.card
    return {
        "run_id": job.run_id,
        "run_date": job.run_date,
        "status": "complete",
        "started": job.label.labeled_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished": utc_now(),
        "model_dir": job.label.model_dir,
        "model_version": card.model_version,
        "labels": card.labels,
        "spectrogram": card.spectrogram.to_dict(),
        "format": job.fmt,
        "source": {"input": job.patterns, "manifest": job.manifest, "features": job.features,
                   "sample": job.sample, "limit": job.limit},
        "skip_labeled": job.label.skip_labeled,
        "embeddings": job.label.embeddings,
        "max_error_fraction": job.max_error_fraction,
        "files": {
            "rows": [join_uri(relative, f) for f in summary["files"]["rows"]],
            "dead_letters": [join_uri(relative, f) for f in summary["files"]["dead_letters"]],
            "summary": join_uri(relative, SUMMARY_FILE),
        },
        "counts": summary["counts"],
        "failures": summary["failures"],
        "timings": dict(timings),
        "runner": runner,
    }


def _commit(job: LabelJob, record: dict[str, Any]) -> None:
    """Write ``_run.json`` (the commit), then remove every other run of the date and pre-run-folder files."""
    label_store.commit_partition(job.partition, record)
    remove_other_runs(job.partition, keep=[job.run_id])
    label_store.remove_legacy_files(job.output, job.partition)
    c = record["counts"]
    logger.info("committed %s (run %s): %d labeled, %d skipped, %d dead letters", job.partition, job.run_id,
                c["labeled"], c["skipped"], c["dead_letters"])


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run and print a one-line summary.

    Returns 0 when the run is committed (or a ``--dry_run`` translated), 2 with a one-line
    ``genreflow label: error: ...`` when the checks before any work fail (bad model dir, mismatched
    ``--features`` data, missing input folder), and 1 when the pipeline failed or its output was not
    committed (:class:`LabelRunError`); the date's previous partition is then unchanged.
    """
    try:
        job = prepare(argv)
    except (FileNotFoundError, ValueError) as e:  # ModelDirError, ParameterMismatchError are ValueErrors
        return report_error("genreflow label", e)
    try:
        record = launch(job)
    except LabelRunError as e:
        return report_error("genreflow label", e, status=1)
    except Exception as e:  # the pipeline failed: nothing was committed
        logger.error("the label pipeline failed", exc_info=True)
        return report_error("genreflow label", pipeline_failure(e), status=1)
    if record["status"] == "dry_run":
        print(f"run_date={record['run_date']} model {record['model_version']}: dry run, nothing written")
        return 0
    c = record["counts"]
    print(
        f"run_date={record['run_date']} model {record['model_version']}: {c['inputs']} inputs, "
        f"{c['labeled']} labeled, {c['skipped']} skipped, {c['dead_letters']} dead letters "
        f"({json.dumps(record['failures'])}) in {record['timings']['total_seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    from genreflow.logs import configure_logging

    configure_logging()
    sys.exit(main())
