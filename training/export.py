"""Export a trained model into a model dir, and score featurized data with one.

The model dir contract (``model-<sha256>.keras`` + ``model.json``, written atomically, verified
before use) is :mod:`transforms.model_dir`'s; this module fills the :class:`ModelCard` from the
training data's ``metadata.json`` (label vocabulary, spectrogram parameters exactly as featurize
wrote them, input shape, :func:`transforms.metadata.dataset_version`), and adds what evaluation
needs: label mapping between a dataset and a model, batched probabilities, the embedding model.
A model dir is read back with :func:`transforms.model_dir.load_model_dir`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from transforms.metadata import DatasetMetadata, ModelCard, dataset_version
from transforms.model_dir import LoadedModel, embedding_output, load_model_dir, new_model_card, write_model_dir
from transforms.spec import ParameterMismatchError

__all__ = [
    "save_model_dir",
    "check_data_compatible",
    "predict_proba",
    "embedding_model",
    # the model dir itself is transforms.model_dir's; re-exported for ``from training.export import ...``
    "LoadedModel",
    "load_model_dir",
    "dataset_version",
]

logger = logging.getLogger(__name__)


def save_model_dir(
    model_dir: str,
    *,
    model: Any,
    metadata: DatasetMetadata,
    data_dir: str,
    embedding_layer: str,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    inference_batch_size: int = 0,
) -> ModelCard:
    """Export ``model`` and its ``model.json`` into ``model_dir`` (see the module docstring).

    Parameters
    ----------
    model_dir : str
        Output directory (local or fsspec URL); created when missing.
    model : keras.Model
        Float32 model of stock Keras layers.
    metadata : DatasetMetadata
        ``metadata.json`` of the training data: labels and spectrogram parameters are copied from it.
    data_dir : str
        The training data directory (for :func:`transforms.metadata.dataset_version`).
    embedding_layer : str
        Name of the embedding layer in ``model``.
    metrics : dict, optional
        Headline metrics for the card.
    extra : dict, optional
        Free-form training details (options, history) for the card.
    inference_batch_size : int
        Most segments per model call for one worker (``model.json``; 0: not recorded).

    Returns
    -------
    ModelCard
        What was written to ``model.json``.
    """
    card = new_model_card(
        labels=metadata.labels,
        spectrogram=metadata.spectrogram,
        embedding_layer=embedding_layer,
        data_fingerprint=dataset_version(data_dir),
        metrics=dict(metrics or {}),
        extra=dict(extra or {}),
        inference_batch_size=inference_batch_size,
    )
    return write_model_dir(model_dir, model=model, card=card)


def check_data_compatible(card: ModelCard, metadata: DatasetMetadata) -> np.ndarray:
    """Check a dataset can be scored by a model; map its label indexes onto the model's.

    Parameters
    ----------
    card : ModelCard
        The model's ``model.json``.
    metadata : DatasetMetadata
        The data's ``metadata.json``.

    Returns
    -------
    np.ndarray, int64, shape (n_data_labels,)
        Model output index of each data label index.

    Raises
    ------
    ParameterMismatchError
        When the spectrogram parameters differ (naming every differing field), or when the data has
        labels the model does not know.
    """
    card.spectrogram.check_compatible(metadata.spectrogram, what="data")
    unknown = [label for label in metadata.labels if label not in card.labels]
    if unknown:
        raise ParameterMismatchError(
            f"the data has labels the model was not trained on: {unknown} (model labels: {card.labels})"
        )
    return np.array([card.labels.index(label) for label in metadata.labels], np.int64)


def predict_proba(model: Any, mels: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of segments.

    Parameters
    ----------
    model : keras.Model
        A loaded model.
    mels : np.ndarray, float32, shape (n, n_mels, n_frames)
        Log-mel segments.
    batch_size : int
        Segments per forward pass.

    Returns
    -------
    np.ndarray, float32, shape (n, n_labels)
    """
    mels = np.asarray(mels, np.float32)
    if len(mels) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)
    out = [np.asarray(model(mels[i : i + batch_size], training=False)) for i in range(0, len(mels), batch_size)]
    return np.concatenate(out).astype(np.float32)


def embedding_model(loaded: LoadedModel) -> Any:
    """A Keras model from the same input to the embedding layer named in ``model.json``."""
    import keras

    return keras.Model(loaded.model.inputs, embedding_output(loaded.model, loaded.card.embedding_layer))
