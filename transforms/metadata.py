"""``metadata.json`` (featurize output) and ``model.json`` (trainer output): the two contracts.

featurize writes :class:`DatasetMetadata` last, next to its shards; the trainer reads it for shapes,
vocabulary and spectrogram parameters, and writes a :class:`ModelCard` into the model dir; the label
job reads only the model card.  Both files carry the same :class:`SpectrogramParams` dict, so the
two sides are compared with :meth:`SpectrogramParams.check_compatible`, never re-typed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import posixpath
from typing import Any

import fsspec

from transforms.spec import SpectrogramParams, schema_to_json

__all__ = [
    "METADATA_FILE",
    "MODEL_CARD_FILE",
    "DatasetMetadata",
    "ModelCard",
    "read_metadata",
    "write_metadata",
    "read_model_card",
    "write_model_card",
    "write_json_atomic",
    "utc_now",
]

METADATA_FILE = "metadata.json"
MODEL_CARD_FILE = "model.json"
FORMAT_VERSION = 1


def utc_now() -> str:
    """Current UTC time as ISO 8601 with seconds (``2026-11-29T15:12:42Z``)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _join(root: str, name: str) -> str:
    return posixpath.join(root.rstrip("/"), name) if "://" in root else f"{root.rstrip('/')}/{name}"


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of it.

    Local and memory paths are written to a temporary name and renamed; object stores (s3://,
    gs://) publish an object only when its upload completes, which is atomic already.
    """
    fs, fs_path = fsspec.core.url_to_fs(path)
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local", "memory"):
        tmp = fs_path + ".tmp"
        with fs.open(tmp, "w") as f:
            f.write(text)
        fs.mv(tmp, fs_path)
    else:
        with fs.open(fs_path, "w") as f:
            f.write(text)


def _read_json(path: str) -> dict[str, Any]:
    with fsspec.open(path, "r") as f:
        return json.load(f)


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
        Shard file names per split, relative to the dataset directory.
    counts : dict
        ``{split: {"tracks": int, "segments": int, "seconds": float,
        "by_label": {label: {"tracks", "segments", "seconds"}}}}``.
    inputs : dict
        ``{"matched": int, "featurized": int, "failed": int}``; matched = featurized + failed.
    failures : dict of str to int
        Dead letters by reason.
    """

    spectrogram: SpectrogramParams
    labels: list[str]
    format: str
    shards: dict[str, list[str]]
    counts: dict[str, Any]
    inputs: dict[str, int]
    failures: dict[str, int]
    created: str = dataclasses.field(default_factory=utc_now)
    genreflow_version: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

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
            "shards": self.shards,
            "counts": self.counts,
            "inputs": self.inputs,
            "failures": self.failures,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DatasetMetadata":
        return cls(
            spectrogram=SpectrogramParams.from_dict(data["spectrogram"]),
            labels=list(data["labels"]),
            format=data["format"],
            shards={k: list(v) for k, v in data["shards"].items()},
            counts=data.get("counts", {}),
            inputs=data.get("inputs", {}),
            failures=data.get("failures", {}),
            created=data.get("created", ""),
            genreflow_version=data.get("genreflow_version", ""),
            extra=data.get("extra", {}),
        )


def read_metadata(data_dir: str) -> DatasetMetadata:
    """Read ``DIR/metadata.json``; a missing file means the dataset is absent or unfinished."""
    path = _join(data_dir, METADATA_FILE)
    try:
        data = _read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: {data_dir} is not a finished featurize output "
            "(metadata.json is written last)"
        ) from None
    return DatasetMetadata.from_dict(data)


def write_metadata(data_dir: str, metadata: DatasetMetadata) -> str:
    """Write ``DIR/metadata.json`` atomically; returns its path."""
    path = _join(data_dir, METADATA_FILE)
    write_json_atomic(path, metadata.to_dict())
    return path


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
        Identifies the training data (hash of its metadata.json).
    metrics : dict
        Headline evaluation numbers.
    model_sha256 : str
        SHA-256 (64 hex digits) of the model file's bytes; the label job checks it before any work.
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

    def to_dict(self) -> dict[str, Any]:
        from genreflow import __version__

        return {
            "format_version": FORMAT_VERSION,
            "genreflow_version": self.genreflow_version or __version__,
            "created": self.created,
            "model_file": self.model_file,
            "model_sha256": self.model_sha256,
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
        )


def read_model_card(model_dir: str) -> ModelCard:
    """Read ``DIR/model.json`` with a clear error when the directory is not a genreflow model."""
    path = _join(model_dir, MODEL_CARD_FILE)
    try:
        data = _read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: {model_dir} is not a genreflow model dir "
            "(run `genreflow train` to make one)"
        ) from None
    return ModelCard.from_dict(data)


def write_model_card(model_dir: str, card: ModelCard) -> str:
    """Write ``DIR/model.json`` atomically; returns its path."""
    path = _join(model_dir, MODEL_CARD_FILE)
    write_json_atomic(path, card.to_dict())
    return path
