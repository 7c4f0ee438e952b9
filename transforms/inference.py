"""RunInference for genre models, and the per-track aggregation of segment predictions.

A model dir (:mod:`transforms.model_dir`: a Keras file and its ``model.json``) becomes a Beam
``KeyedModelHandler`` whose examples are ``((track_id, segment_index), mel)`` pairs and whose
predictions are dicts with ``"probabilities"`` (and ``"embedding"`` when asked); a track's segment
predictions reduce to one label row.

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
import logging
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from transforms.metadata import ModelCard
from transforms.model_dir import ModelDirError, embedding_output, load_keras, model_file_path

__all__ = [
    "SegmentModel",
    "PROBABILITIES",
    "EMBEDDING",
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


@dataclasses.dataclass
class SegmentModel:
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


def load_segment_model(path: str, *, embedding_layer: str | None = None) -> SegmentModel:
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
    SegmentModel
    """
    return wrap_keras_model(load_keras(path), embedding_layer=embedding_layer)


def wrap_keras_model(model: Any, *, embedding_layer: str | None = None) -> SegmentModel:
    """Build the dict-output inference model of :func:`load_segment_model` from a Keras model."""
    import keras

    outputs = {PROBABILITIES: model.outputs[0]}
    if embedding_layer:
        outputs[EMBEDDING] = embedding_output(model, embedding_layer)
    if len(model.inputs) != 1:
        raise ModelDirError(f"the model takes {len(model.inputs)} inputs; a genre model takes one log-mel batch")
    wrapped = keras.Model(inputs=model.inputs[0], outputs=outputs)
    import tensorflow as tf

    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    serve = tf.function(lambda x: wrapped(x, training=False), input_signature=[spec])
    return SegmentModel(keras_model=wrapped, input_rank=len(model.inputs[0].shape), serve=serve)


def predict_segments(model: SegmentModel, mels: np.ndarray) -> dict[str, np.ndarray]:
    """Run the model on a batch of log-mel segments.

    Parameters
    ----------
    model : SegmentModel
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
    model: SegmentModel,
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

    def load_model(self) -> SegmentModel:  # noqa: D102 - documented on the class
        model = load_segment_model(self._model_path, embedding_layer=self._embedding_layer)
        logger.info("loaded %s (embedding layer %s)", self._model_path, self._embedding_layer)
        return model

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: SegmentModel,
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
        The model dir; ``card`` from :func:`transforms.model_dir.load_model_card`.
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
