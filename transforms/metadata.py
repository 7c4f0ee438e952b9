"""``metadata.json`` (featurize output) and ``model.json`` (trainer output): the two contracts.

featurize writes :class:`DatasetMetadata` last, next to its shards; the trainer reads it for shapes,
vocabulary and spectrogram parameters, and writes a :class:`ModelCard` into the model dir; the label
job reads only the model card.  Both files carry the same :class:`SpectrogramParams` dict, so the
two sides are compared with :meth:`SpectrogramParams.check_compatible`, never re-typed.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from transforms.storage import file_sha256, join_uri, read_json, write_json_atomic
from transforms.spec import SpectrogramParams, schema_to_json

__all__ = [
    "METADATA_FILE",
    "MODEL_CARD_FILE",
    "DatasetMetadata",
    "ModelCard",
    "read_metadata",
    "write_metadata",
    "dataset_version",
    "read_model_card",
    "write_model_card",
    "utc_now",
]

METADATA_FILE = "metadata.json"
MODEL_CARD_FILE = "model.json"
FORMAT_VERSION = 1


def utc_now() -> str:
    """Current UTC time as ISO 8601 with seconds (``2026-11-29T15:12:42Z``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_record(folder: str, name: str, *, missing: str) -> dict[str, Any]:
    """``FOLDER/NAME`` parsed; a missing file is a one-line ``FileNotFoundError`` ending in ``missing``."""
    path = join_uri(folder, name)
    try:
        return read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: {missing}") from None


def _write_record(folder: str, name: str, data: dict[str, Any]) -> str:
    """Write ``FOLDER/NAME`` atomically; returns its path."""
    path = join_uri(folder, name)
    write_json_atomic(path, data)
    return path


@dataclasses.dataclass
class DatasetMetadata:
    """Contents of ``metadata.json``.

    Attributes
    ----------
    spectrogram : SpectrogramParams
        Parameters every shard was computed with.
    labels : list of str
        Sorted label vocabulary; ``label_index`` indexes it.
    format : str
        ``"tfrecord"`` or ``"parquet"``.
    shards : dict of str to list of str
        Explicit shard file names per split, relative to the dataset directory (datasets written
        before run folders; new datasets use ``run_id`` and ``num_shards`` instead).
    counts : dict
        ``{split: {"tracks": int, "segments": int, "seconds": float,
        "by_label": {label: {"tracks", "segments", "seconds"}}}}``.
    inputs : dict
        ``{"matched": int, "featurized": int, "failed": int}``; matched = featurized + failed.
    failures : dict of str to int
        Dead letters by reason.
    run_id : str
        The run whose folder ``run_id=<run_id>/`` holds the shards (see :mod:`transforms.commit`).
    num_shards : dict of str to int
        Shards per split: ``{split}-{i:05d}-of-{n:05d}{suffix}`` for every ``i < n`` exists in the
        run folder (some may hold no rows).  The list of names is not stored: it would grow with
        the dataset.
    dead_letters : list of str
        Dead-letter files, relative to the dataset directory.
    """

    spectrogram: SpectrogramParams
    labels: list[str]
    format: str
    shards: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)
    inputs: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    created: str = dataclasses.field(default_factory=utc_now)
    genreflow_version: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_id: str = ""
    num_shards: dict[str, int] = dataclasses.field(default_factory=dict)
    dead_letters: list[str] = dataclasses.field(default_factory=list)

    def shard_names(self, split: str) -> list[str]:
        """Shard files of ``split`` relative to the dataset directory (empty when it has none)."""
        from transforms.shards import shard_name

        if split in self.shards:
            return list(self.shards[split])
        n = int(self.num_shards.get(split, 0))
        folder = f"run_id={self.run_id}/" if self.run_id else ""
        return [folder + shard_name(split, i, n, fmt=self.format) for i in range(n)]

    def splits(self) -> list[str]:
        """Splits that have at least one shard file."""
        names = set(self.shards) | set(self.num_shards)
        return [s for s in sorted(names) if self.shard_names(s)]

    def shard_paths(self, data_dir: str, split: str | None = None) -> list[str]:
        """Full paths (or URIs) of the shard files of ``split``, or of every split when ``None``."""
        splits = [split] if split is not None else self.splits()
        return [join_uri(data_dir, name) for s in splits for name in self.shard_names(s)]

    def to_dict(self) -> dict[str, Any]:
        from genreflow import __version__

        return {
            "format_version": FORMAT_VERSION,
            "genreflow_version": self.genreflow_version or __version__,
            "created": self.created,
            "format": self.format,
            "spectrogram": self.spectrogram.to_dict(),
            "schema": schema_to_json(self.spectrogram),
            "labels": list(self.labels),
            **({"run_id": self.run_id, "num_shards": self.num_shards} if self.run_id or self.num_shards else {}),
            **({"shards": self.shards} if self.shards else {}),
            "counts": self.counts,
            "inputs": self.inputs,
            "failures": self.failures,
            "dead_letters": self.dead_letters,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetMetadata":
        return cls(
            spectrogram=SpectrogramParams.from_dict(data["spectrogram"]),
            labels=list(data["labels"]),
            format=data["format"],
            shards={k: list(v) for k, v in data.get("shards", {}).items()},
            run_id=data.get("run_id", ""),
            num_shards={k: int(v) for k, v in data.get("num_shards", {}).items()},
            dead_letters=list(data.get("dead_letters", [])),
            counts=data.get("counts", {}),
            inputs=data.get("inputs", {}),
            failures=data.get("failures", {}),
            created=data.get("created", ""),
            genreflow_version=data.get("genreflow_version", ""),
            extra=data.get("extra", {}),
        )


def read_metadata(data_dir: str) -> DatasetMetadata:
    """Read ``DIR/metadata.json``; a missing file means the dataset is absent or unfinished."""
    missing = f"{data_dir} is not a finished featurize output (metadata.json is written last)"
    return DatasetMetadata.from_dict(_read_record(data_dir, METADATA_FILE, missing=missing))


def write_metadata(data_dir: str, metadata: DatasetMetadata) -> str:
    """Write ``DIR/metadata.json`` atomically; returns its path."""
    return _write_record(data_dir, METADATA_FILE, metadata.to_dict())


def dataset_version(data_dir: str) -> str:
    """Identifies one featurize output: 16 hex digits of the SHA-256 of its ``metadata.json`` bytes.

    A new featurize run writes a new ``metadata.json`` (its run id and counts), so the value
    changes whenever the data may have; it is what ``model.json`` records as ``data_fingerprint``.
    """
    return file_sha256(join_uri(data_dir, METADATA_FILE))[:16]


@dataclasses.dataclass
class ModelCard:
    """Contents of ``model.json``: everything the label job needs besides the weights.

    Attributes
    ----------
    model_file : str
        Keras file name inside the model dir (``model-<sha256 prefix>.keras``: named by its content,
        so a new export never overwrites a file an older ``model.json`` names).
    model_version : str
        Identifies the model, not the file: 16 hex digits of the SHA-256 of its architecture,
        weights, labels and spectrogram parameters (exporting identical weights again keeps it).
    labels : list of str
        Output index -> genre, exactly the training data's vocabulary.
    spectrogram : SpectrogramParams
        Parameters of the training data.
    input_shape : list of int
        ``[n_mels, n_frames]`` of one input segment.
    embedding_layer : str or None
        Name of the penultimate layer whose output is the track embedding.
    data_fingerprint : str
        Identifies the training data: its :func:`dataset_version` (16 hex digits of the SHA-256 of
        its metadata.json).  The field keeps the name it has in every ``model.json`` written.
    metrics : dict
        Headline evaluation numbers.
    model_sha256 : str
        SHA-256 (64 hex digits) of the model file's bytes; the label job checks it before any work.
    inference_batch_size : int
        Most segments per model call that the trainer recommends for one worker (the label job's
        default ``--max-batch-size``); 0 when not recorded, and the label job then uses 256.  The
        musicnn backbone records 32: one call of it peaks at ~66 MB per segment on CPU.
    """

    model_file: str
    model_version: str
    labels: list[str]
    spectrogram: SpectrogramParams
    input_shape: list[int]
    embedding_layer: str | None = None
    data_fingerprint: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: str = dataclasses.field(default_factory=utc_now)
    genreflow_version: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_sha256: str = ""
    inference_batch_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        from genreflow import __version__

        return {
            "format_version": FORMAT_VERSION,
            "genreflow_version": self.genreflow_version or __version__,
            "created": self.created,
            "model_file": self.model_file,
            "model_sha256": self.model_sha256,
            **({"inference_batch_size": self.inference_batch_size} if self.inference_batch_size else {}),
            "model_version": self.model_version,
            "labels": list(self.labels),
            "spectrogram": self.spectrogram.to_dict(),
            "input_shape": list(self.input_shape),
            "embedding_layer": self.embedding_layer,
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        return cls(
            model_file=data["model_file"],
            model_version=data["model_version"],
            labels=list(data["labels"]),
            spectrogram=SpectrogramParams.from_dict(data["spectrogram"]),
            input_shape=list(data["input_shape"]),
            embedding_layer=data.get("embedding_layer"),
            data_fingerprint=data.get("data_fingerprint", ""),
            metrics=data.get("metrics", {}),
            created=data.get("created", ""),
            genreflow_version=data.get("genreflow_version", ""),
            extra=data.get("extra", {}),
            model_sha256=data.get("model_sha256", ""),
            inference_batch_size=int(data.get("inference_batch_size", 0)),
        )


def read_model_card(model_dir: str) -> ModelCard:
    """Read ``DIR/model.json`` with a clear error when the directory is not a genreflow model."""
    missing = f"{model_dir} is not a genreflow model dir (run `genreflow train` to make one)"
    return ModelCard.from_dict(_read_record(model_dir, MODEL_CARD_FILE, missing=missing))


def write_model_card(model_dir: str, card: ModelCard) -> str:
    """Write ``DIR/model.json`` atomically; returns its path."""
    return _write_record(model_dir, MODEL_CARD_FILE, card.to_dict())
