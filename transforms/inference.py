"""Model dirs for RunInference, and the per-track aggregation of segment predictions.

A *model dir* holds a Keras file and ``model.json`` (:class:`transforms.metadata.ModelCard`): labels,
the spectrogram parameters the model was trained on, the input shape, the name of the embedding
layer and the SHA-256 of the model file.  :func:`write_model_dir` writes one so that a reader never
sees a mix of two exports: the Keras file is named by its content (``model-<sha256>.keras``, never
overwritten) and ``model.json``, written atomically and last, switches to it.
:func:`load_model_card` checks one before any work: ``model.json`` complete and consistent, the
file's SHA-256, and the model itself (it loads, takes ``input_shape``, outputs one score per label).
This module turns one into a Beam ``KeyedModelHandler`` whose examples are
``((track_id, segment_index), mel)`` pairs and whose predictions are dicts with ``"probabilities"``
(and ``"embedding"`` when asked), and it reduces a track's segment predictions to one label row.

Aggregation rule: the track's genre distribution is the **mean of the segment probability vectors**.
The mean of softmax outputs is still a distribution (sums to one), it is what segment-level GTZAN
classifiers are usually evaluated with, and it degrades gracefully: one noisy segment moves the
result by ``1 / n_segments``.  The alternatives are worse for a catalog job: the product of segment
probabilities (sum of log-probabilities) assumes independent segments, becomes over-confident on long
tracks and lets a single near-zero segment veto a genre; a majority vote throws away confidence and
ties on short tracks.

Everything except :class:`GenreModelHandler` is plain numpy and is unit-tested without Beam.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import posixpath
import tempfile
import uuid
from typing import Any, Iterable, Mapping, Sequence

import fsspec
import numpy as np

from transforms.commit import join_uri
from transforms.metadata import MODEL_CARD_FILE, ModelCard, read_model_card, write_model_card

__all__ = [
    "ModelDirError",
    "LoadedModel",
    "PROBABILITIES",
    "EMBEDDING",
    "load_model_card",
    "check_model",
    "write_model_dir",
    "model_digest",
    "file_sha256",
    "model_file_path",
    "load_segment_model",
    "predict_segments",
    "GenreModelHandler",
    "keyed_model_handler",
    "aggregate_track",
    "top_k",
    "stack_segment_predictions",
    "wrap_keras_model",
]

logger = logging.getLogger(__name__)

#: Keys of one segment's prediction dict.
PROBABILITIES = "probabilities"
EMBEDDING = "embedding"


class ModelDirError(ValueError):
    """A model dir that the label job cannot use (missing file, inconsistent ``model.json``)."""


def model_file_path(model_dir: str, card: ModelCard) -> str:
    """Path of the Keras file that ``card`` names inside ``model_dir``."""
    return join_uri(model_dir, card.model_file)


def file_sha256(path: str) -> str:
    """SHA-256 (64 hex digits) of a file's bytes, read in 1 MiB blocks (local or any fsspec URL)."""
    digest = hashlib.sha256()
    with fsspec.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(model: Any, *, labels: Sequence[str], spectrogram: Any) -> str:
    """SHA-256 of what a model computes: its Keras config, every weight (name, dtype, shape, bytes),
    the labels and the spectrogram parameters.  Unlike the hash of a ``.keras`` zip, which embeds
    the save date, it is the same each time identical weights are exported."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy()))
        digest.update(f"{weight.path}|{value.dtype.str}|{value.shape}".encode())
        digest.update(value.tobytes())
    digest.update(json.dumps({"labels": list(labels), "spectrogram": spectrogram.to_dict()}, sort_keys=True).encode())
    return digest.hexdigest()


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def write_model_dir(model_dir: str, *, model: Any, card: ModelCard) -> ModelCard:
    """Export ``model`` with ``card`` so that a reader never sees a mix of two exports.

    Steps: save the Keras file locally; upload it as ``model-<first 16 hex of its SHA-256>.keras``
    (a temporary name renamed into place on local/memory filesystems; object stores publish an
    upload whole); write ``model.json`` atomically, last, naming that file with its SHA-256; then
    remove model files that neither the new nor the previous ``model.json`` names (the previous
    one is kept for a label job that read the old card and has not loaded its file yet), and
    partial uploads that a killed export left.

    Parameters
    ----------
    model_dir : str
        Local path or fsspec URL; created when missing.
    model : keras.Model
        The model to save (stock Keras layers).
    card : ModelCard
        Everything but ``model_file``, ``model_version`` and ``model_sha256``, which are set here
        (``model_version`` from :func:`model_digest`).

    Returns
    -------
    ModelCard
        What was written to ``model.json``.
    """
    fs, root = fsspec.core.url_to_fs(model_dir)
    if fs.exists(root) and not fs.isdir(root):
        raise ModelDirError(f"model dir {model_dir} is a file")
    fs.makedirs(root, exist_ok=True)
    try:
        previous = read_model_card(model_dir).model_file
    except Exception:  # no (readable) card yet: nothing to keep
        previous = None
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.keras")
        model.save(local)
        sha = file_sha256(local)
        name = f"model-{sha[:16]}.keras"
        target = join_uri(root, name)
        if _protocol(fs) in ("file", "local", "memory"):
            partial = join_uri(root, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
            fs.put_file(local, partial)
            fs.mv(partial, target)
        else:
            fs.put_file(local, target)
    card = dataclasses.replace(
        card,
        model_file=name,
        model_sha256=sha,
        model_version=model_digest(model, labels=card.labels, spectrogram=card.spectrogram)[:16],
    )
    write_model_card(model_dir, card)
    keep = {name, previous, MODEL_CARD_FILE}
    for path in fs.ls(root, detail=False):
        base = posixpath.basename(path.rstrip("/"))
        orphan = base.startswith("model") and base.endswith(".keras")  # named by no card we keep
        partial = base.startswith(".model-") and base.endswith(".tmp")  # left by a killed export
        if base not in keep and (orphan or partial):
            fs.rm(path)
    logger.info("wrote %s (version %s, sha256 %s)", join_uri(model_dir, name), card.model_version, sha[:16])
    return card


_REQUIRED_FIELDS = ("model_file", "model_version", "labels", "spectrogram", "input_shape")


def _read_card_or_explain(model_dir: str) -> ModelCard:
    """:func:`read_model_card`, with every way a model dir or its ``model.json`` can be unusable
    turned into one :class:`ModelDirError` line (FileNotFoundError when there is none)."""
    fs, root = fsspec.core.url_to_fs(model_dir)
    if fs.exists(root) and not fs.isdir(root):
        raise ModelDirError(f"--model-dir {model_dir} is a file, not a model dir")
    path = join_uri(model_dir, MODEL_CARD_FILE)
    try:
        with fsspec.open(path, "r") as f:
            data = json.load(f)
    except FileNotFoundError:
        return read_model_card(model_dir)  # its own one-line FileNotFoundError
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ModelDirError(f"{path} holds a {type(data).__name__}, not a JSON object")
    missing = [k for k in _REQUIRED_FIELDS if k not in data]
    if missing:
        raise ModelDirError(f"{path} lacks {', '.join(missing)}: not a model.json written by genreflow train")
    try:
        return read_model_card(model_dir)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelDirError(f"{path} cannot be used: {type(e).__name__}: {e}") from None


def load_model_card(model_dir: str, *, embeddings: bool = False, verify: bool = True) -> ModelCard:
    """Read and check ``model.json`` and, with ``verify``, the model file, before any work is done.

    Parameters
    ----------
    model_dir : str
        Local path or fsspec URL of a model dir.
    embeddings : bool
        Also require ``embedding_layer`` to be set (and, with ``verify``, to be a layer).
    verify : bool
        Check the model file's SHA-256 against ``model_sha256`` and load it once
        (:func:`check_model`): a corrupt, truncated or swapped file, or a model whose real input
        or output shape differs from ``model.json``, fails here instead of on the workers after
        everything was decoded.

    Returns
    -------
    ModelCard

    Raises
    ------
    FileNotFoundError
        ``model.json`` or the model file is missing (the message names the path).
    ModelDirError
        The model dir is a file; ``model.json`` is not JSON, lacks fields or is inconsistent (no
        labels, an input shape that is not the spectrogram's ``(n_mels, n_frames)``, a non-Keras
        model file, ``embeddings`` without an embedding layer); with ``verify``, no or a different
        SHA-256, or a model that does not load or does not match the card.
    """
    card = _read_card_or_explain(model_dir)
    problems = []
    if not card.labels:
        problems.append("labels is empty")
    if len(set(card.labels)) != len(card.labels):
        problems.append("labels has duplicates")
    if list(card.input_shape) != list(card.spectrogram.mel_shape):
        problems.append(
            f"input_shape {list(card.input_shape)} is not the spectrogram's (n_mels, n_frames) "
            f"{list(card.spectrogram.mel_shape)}"
        )
    if not card.model_file.endswith((".keras", ".h5")):
        problems.append(f"model_file {card.model_file!r} is not a .keras or .h5 file")
    if embeddings and not card.embedding_layer:
        problems.append("--embeddings needs embedding_layer, which is not set")
    if problems:
        raise ModelDirError(f"{model_dir}/model.json cannot be used: " + "; ".join(problems))
    path = model_file_path(model_dir, card)
    fs, fs_path = fsspec.core.url_to_fs(path)
    if not fs.exists(fs_path):
        raise FileNotFoundError(f"{path} not found: model.json names a model file that is missing")
    if verify:
        if not card.model_sha256:
            raise ModelDirError(
                f"{model_dir}/model.json has no model_sha256, so {card.model_file} cannot be verified: "
                "export the model again with this version of genreflow"
            )
        actual = file_sha256(path)
        if actual != card.model_sha256:
            raise ModelDirError(
                f"{path} does not match model.json (SHA-256 {actual[:16]}..., model.json says "
                f"{card.model_sha256[:16]}...): the file is truncated, corrupt or was replaced; export it again"
            )
        check_model(path, card=card, embeddings=embeddings)
    return card


def check_model(path: str, *, card: ModelCard, embeddings: bool = False) -> None:
    """Load the Keras file once and check it against its card.

    Raises
    ------
    ModelDirError
        When it does not load (one line naming the first error), takes more than one input, takes
        an input of another shape than ``card.input_shape`` (a trailing channel axis of 1 is
        allowed), outputs another number of scores than there are labels, or lacks the embedding
        layer asked for.
    """
    import keras  # deferred: TensorFlow import is heavy

    try:
        local, cleanup = _local_copy(path)
        try:
            model = keras.models.load_model(local, compile=False)
        finally:
            cleanup()
    except Exception as e:  # keras/h5py/zipfile raise many types for a bad file
        first = (str(e).strip().splitlines() or [""])[0]
        raise ModelDirError(f"{path} does not load as a Keras model: {type(e).__name__}: {first}") from None
    if len(model.inputs) != 1:
        raise ModelDirError(f"{path} takes {len(model.inputs)} inputs; a genre model takes one log-mel batch")
    in_shape = [None if d is None else int(d) for d in model.inputs[0].shape[1:]]
    expected = list(card.input_shape)
    if in_shape not in (expected, expected + [1]):
        raise ModelDirError(f"{path} takes inputs of shape {in_shape}, model.json says input_shape {expected}")
    n_out = int(model.outputs[0].shape[-1])
    if n_out != len(card.labels):
        raise ModelDirError(f"{path} outputs {n_out} scores, model.json has {len(card.labels)} labels")
    if embeddings and card.embedding_layer:
        wrap_keras_model(model, embedding_layer=card.embedding_layer)  # ModelDirError when not a layer


@dataclasses.dataclass
class LoadedModel:
    """A loaded Keras model wrapped for segment batches.

    Attributes
    ----------
    keras_model : keras.Model
        Outputs a dict: ``"probabilities"`` of shape ``(batch, n_labels)`` and, when an embedding
        layer was asked for, ``"embedding"`` of shape ``(batch, embedding_dim)``.
    input_rank : int
        Rank of the model input including the batch axis: 3 for ``(batch, n_mels, n_frames)``,
        4 when the model takes a trailing channel axis.
    serve : callable
        ``keras_model(x, training=False)`` traced once as a ``tf.function`` with a free batch axis
        (3x faster than eager calls on 256-segment batches, benchmarks/label_results.md).
    """

    keras_model: Any
    input_rank: int
    serve: Any = None

    def __call__(self, mels: np.ndarray) -> dict[str, np.ndarray]:
        return predict_segments(self, mels)


def load_segment_model(path: str, *, embedding_layer: str | None = None) -> LoadedModel:
    """Load a ``.keras`` file and, optionally, expose an inner layer as a second output.

    Parameters
    ----------
    path : str
        Keras file (local or any path Keras' file API reads).
    embedding_layer : str, optional
        Name of the layer whose output becomes ``"embedding"`` (the penultimate layer of the
        trainer's CNN).  The two-output model shares the weights of the loaded one: one forward
        pass gives both outputs.

    Returns
    -------
    LoadedModel
    """
    import keras  # deferred: TensorFlow import is heavy

    local, cleanup = _local_copy(path)
    try:
        model = keras.models.load_model(local, compile=False)
    finally:
        cleanup()
    return wrap_keras_model(model, embedding_layer=embedding_layer)


def _local_copy(path: str) -> tuple[str, Any]:
    """A local file for ``path`` (copied from object stores); and a function that removes the copy."""
    import os
    import tempfile

    fs, fs_path = fsspec.core.url_to_fs(path)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return fs_path, lambda: None
    fd, local = tempfile.mkstemp(suffix=posixpath.splitext(fs_path)[1])
    os.close(fd)
    fs.get_file(fs_path, local)
    return local, lambda: os.path.exists(local) and os.remove(local)


def wrap_keras_model(model: Any, *, embedding_layer: str | None = None) -> LoadedModel:
    """Build the dict-output inference model of :func:`load_segment_model` from a Keras model."""
    import keras

    outputs = {PROBABILITIES: model.outputs[0]}
    if embedding_layer:
        try:
            layer = model.get_layer(embedding_layer)
        except ValueError:
            names = [lay.name for lay in model.layers]
            raise ModelDirError(
                f"embedding_layer {embedding_layer!r} is not a layer of the model (layers: {names})"
            ) from None
        outputs[EMBEDDING] = layer.output
    if len(model.inputs) != 1:
        raise ModelDirError(f"the model takes {len(model.inputs)} inputs; a genre model takes one log-mel batch")
    wrapped = keras.Model(inputs=model.inputs[0], outputs=outputs)
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    serve = tf.function(lambda x: wrapped(x, training=False), input_signature=[spec])
    return LoadedModel(keras_model=wrapped, input_rank=len(model.inputs[0].shape), serve=serve)


def predict_segments(model: LoadedModel, mels: np.ndarray) -> dict[str, np.ndarray]:
    """Run the model on a batch of log-mel segments.

    Parameters
    ----------
    model : LoadedModel
    mels : np.ndarray, float32, shape (batch, n_mels, n_frames)

    Returns
    -------
    dict of str to np.ndarray
        ``"probabilities"``: float32 ``(batch, n_labels)``; ``"embedding"``: float32
        ``(batch, embedding_dim)`` when the model has one.
    """
    x = np.asarray(mels, dtype=np.float32)
    if model.input_rank == x.ndim + 1:
        x = x[..., None]
    out = model.serve(x) if model.serve is not None else model.keras_model(x, training=False)
    return {name: np.asarray(value, dtype=np.float32) for name, value in out.items()}


def _segment_inference_fn(
    model: LoadedModel,
    batch: Sequence[np.ndarray],
    inference_args: dict[str, Any],
    model_id: str | None = None,
) -> Iterable[Any]:
    """RunInference ``inference_fn``: one stacked forward pass, one result dict per segment.

    The example is dropped from each ``PredictionResult`` (``example=None``) so the 100 KB log-mel
    does not travel on to the aggregation step.
    """
    from apache_beam.ml.inference.base import PredictionResult

    out = model(np.stack(batch, axis=0))
    names = list(out)
    return [
        PredictionResult(None, {name: out[name][i] for name in names}, model_id)
        for i in range(len(batch))
    ]


def _model_handler_base() -> type:
    from apache_beam.ml.inference.base import ModelHandler

    return ModelHandler


class GenreModelHandler(_model_handler_base()):  # type: ignore[misc]
    """Beam ``ModelHandler`` for a genreflow Keras model: numpy segments in, prediction dicts out.

    It does what Beam's ``TFModelHandlerNumpy`` does for a ``.keras`` file (``keras.models.load_model``,
    ``numpy.stack`` the batch, one forward pass) and adds the optional embedding output
    (:func:`wrap_keras_model`).  It subclasses ``ModelHandler`` directly because
    ``apache_beam.ml.inference.tensorflow_inference`` imports ``tensorflow_hub`` at module level,
    which would add tensorflow-hub and tf-keras (a second, Keras 2, copy) to every worker for a
    ``hub.resolve`` call that local and ``gs://`` paths do not need.  Batching, ``large_model`` /
    ``model_copies`` and RunInference's metrics are the base class's.

    Parameters
    ----------
    model_path : str
        The Keras file.
    embedding_layer : str, optional
        Layer to expose as ``"embedding"``.
    **kwargs
        Passed to ``ModelHandler`` (``min_batch_size``, ``max_batch_size``, ``large_model``,
        ``model_copies``, ...).
    """

    def __init__(self, model_path: str, *, embedding_layer: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._model_path = model_path
        self._embedding_layer = embedding_layer

    def load_model(self) -> LoadedModel:  # noqa: D102 - documented on the class
        model = load_segment_model(self._model_path, embedding_layer=self._embedding_layer)
        logger.info("loaded %s (embedding layer %s)", self._model_path, self._embedding_layer)
        return model

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: LoadedModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[Any]:
        """One stacked forward pass over ``batch`` (arrays of shape ``(n_mels, n_frames)``)."""
        return _segment_inference_fn(model, batch, inference_args or {}, self._model_path)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:  # noqa: D102
        return int(sum(np.asarray(x).nbytes for x in batch))

    def get_metrics_namespace(self) -> str:  # noqa: D102
        return "genreflow_label"

    def __repr__(self) -> str:
        return f"GenreModelHandler({self._model_path!r}, embedding_layer={self._embedding_layer!r})"


def keyed_model_handler(
    model_dir: str,
    *,
    card: ModelCard,
    embeddings: bool = False,
    min_batch_size: int | None = None,
    max_batch_size: int | None = None,
    large_model: bool = False,
    model_copies: int | None = None,
) -> Any:
    """The ``KeyedModelHandler`` for RunInference over ``(key, mel)`` pairs.

    Parameters
    ----------
    model_dir : str
        The model dir; ``card`` from :func:`load_model_card`.
    embeddings : bool
        Also return the ``card.embedding_layer`` output.
    min_batch_size, max_batch_size : int, optional
        Segments per model call (Beam's ``BatchElements`` bounds).
    large_model : bool
        Load one copy per machine shared by all worker processes (Beam's ``large_model``) instead
        of one per worker process.
    model_copies : int, optional
        Exact number of copies per machine (implies sharing across processes).

    Returns
    -------
    apache_beam.ml.inference.base.KeyedModelHandler
    """
    from apache_beam.ml.inference.base import KeyedModelHandler

    kwargs: dict[str, Any] = {"large_model": large_model}
    if min_batch_size is not None:
        kwargs["min_batch_size"] = min_batch_size
    if max_batch_size is not None:
        kwargs["max_batch_size"] = max_batch_size
    if model_copies is not None:
        kwargs["model_copies"] = model_copies
    handler = GenreModelHandler(
        model_file_path(model_dir, card),
        embedding_layer=card.embedding_layer if embeddings else None,
        **kwargs,
    )
    return KeyedModelHandler(handler)


# Aggregation -------------------------------------------------------------------------------------
def top_k(probabilities: np.ndarray, *, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable genres, most probable first (ties broken by label order).

    Parameters
    ----------
    probabilities : np.ndarray, shape (n_labels,)
    labels : sequence of str, length n_labels
    k : int
        Clipped to ``n_labels``.

    Returns
    -------
    list of dict
        ``[{"genre": str, "score": float}, ...]``.
    """
    order = np.argsort(-np.asarray(probabilities), kind="stable")[: max(0, min(k, len(labels)))]
    return [{"genre": labels[i], "score": float(probabilities[i])} for i in order]


def aggregate_track(
    probabilities: np.ndarray,
    *,
    labels: Sequence[str],
    k: int = 3,
    embeddings: np.ndarray | None = None,
) -> dict[str, Any]:
    """Reduce one track's segment predictions to its label fields.

    Parameters
    ----------
    probabilities : np.ndarray, shape (n_segments, n_labels)
        Per-segment class probabilities, segments in any order.
    labels : sequence of str, length n_labels
        Output index -> genre (``model.json`` ``labels``).
    k : int
        Length of the ``top_k`` list.
    embeddings : np.ndarray, shape (n_segments, embedding_dim), optional
        Per-segment embeddings; averaged into ``embedding``.

    Returns
    -------
    dict
        ``genre`` (str), ``score`` (float: mean probability of ``genre``), ``top_k`` (list of
        ``{"genre", "score"}``), ``probabilities`` (dict genre -> mean probability, all labels),
        ``n_segments`` (int) and, with ``embeddings``, ``embedding`` (list of float).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] != len(labels):
        raise ValueError(f"probabilities must have shape (n_segments>0, {len(labels)}), got {p.shape}")
    mean = p.mean(axis=0)
    ranked = top_k(mean, labels=labels, k=k)
    out: dict[str, Any] = {
        "genre": ranked[0]["genre"],
        "score": ranked[0]["score"],
        "top_k": ranked,
        "probabilities": {label: float(v) for label, v in zip(labels, mean)},
        "n_segments": int(p.shape[0]),
    }
    if embeddings is not None:
        e = np.asarray(embeddings, dtype=np.float64)
        if e.ndim != 2 or e.shape[0] != p.shape[0]:
            raise ValueError(f"embeddings must have shape ({p.shape[0]}, dim), got {e.shape}")
        out["embedding"] = [float(v) for v in e.mean(axis=0)]
    return out


def stack_segment_predictions(
    predictions: Iterable[tuple[int, Mapping[str, np.ndarray]]],
) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    """Order a track's ``(segment_index, prediction dict)`` pairs and stack them.

    Returns
    -------
    probabilities : np.ndarray, float32, shape (n_segments, n_labels)
    embeddings : np.ndarray, float32, shape (n_segments, dim), or None
    segment_indices : list of int
        Sorted, as found (the caller checks that none is missing).
    """
    items = sorted(predictions, key=lambda kv: kv[0])
    if not items:
        return np.zeros((0, 0), np.float32), None, []
    probs = np.stack([np.asarray(p[PROBABILITIES], np.float32) for _, p in items])
    emb = None
    if EMBEDDING in items[0][1]:
        emb = np.stack([np.asarray(p[EMBEDDING], np.float32) for _, p in items])
    return probs, emb, [i for i, _ in items]
