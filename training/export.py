"""The model dir: ``model-<sha256>.keras`` + ``model.json`` (a :class:`transforms.metadata.ModelCard`).

A model dir is self-describing: the label vocabulary, the spectrogram parameters exactly as
featurize wrote them, the input shape, the name of the embedding layer, a fingerprint of the
training data, the evaluation metrics and the model file's name and SHA-256 travel in
``model.json``; the Keras file holds only stock Keras layers, so it loads without this package::

    import keras, json
    card = json.load(open("MODEL_DIR/model.json"))
    model = keras.models.load_model("MODEL_DIR/" + card["model_file"])

and with Beam's ``TFModelHandlerNumpy(model_uri="MODEL_DIR/" + card["model_file"])``.  The file is
named by its content and never overwritten; ``model.json`` is written atomically and last
(:func:`transforms.inference.write_model_dir`): a reader sees the previous export or the new one,
never a mix, and ``model_version`` stays the same when identical weights are exported again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from typing import Any

import fsspec
import numpy as np

from transforms.commit import join_uri
from transforms.metadata import (
    METADATA_FILE,
    DatasetMetadata,
    ModelCard,
    read_model_card,
)
from transforms.inference import file_sha256, write_model_dir
from transforms.spec import ParameterMismatchError

__all__ = [
    "LoadedModel",
    "file_fingerprint",
    "data_fingerprint",
    "save_model_dir",
    "load_model_dir",
    "check_data_compatible",
    "predict_proba",
    "embedding_model",
]

logger = logging.getLogger(__name__)

def file_fingerprint(path: str) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes (local or any fsspec URL)."""
    return file_sha256(path)[:16]


def data_fingerprint(data_dir: str) -> str:
    """Fingerprint of a featurized dataset: the hash of its ``metadata.json`` contents."""
    return file_fingerprint(join_uri(data_dir, METADATA_FILE))


@dataclasses.dataclass
class LoadedModel:
    """A loaded model dir.

    Attributes
    ----------
    model : keras.Model
        ``(batch, n_mels, n_frames)`` float32 -> ``(batch, n_labels)`` probabilities.
    card : ModelCard
        Its ``model.json``.
    """

    model: Any
    card: ModelCard


def save_model_dir(
    model_dir: str,
    *,
    model: Any,
    metadata: DatasetMetadata,
    data_dir: str,
    embedding_layer: str,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
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
        The training data directory (for :func:`data_fingerprint`).
    embedding_layer : str
        Name of the embedding layer in ``model``.
    metrics : dict, optional
        Headline metrics for the card.
    extra : dict, optional
        Free-form training details (options, history) for the card.

    Returns
    -------
    ModelCard
        What was written to ``model.json``.
    """
    card = ModelCard(
        model_file="",
        model_version="",
        labels=list(metadata.labels),
        spectrogram=metadata.spectrogram,
        input_shape=list(metadata.spectrogram.mel_shape),
        embedding_layer=embedding_layer,
        data_fingerprint=data_fingerprint(data_dir),
        metrics=dict(metrics or {}),
        extra=dict(extra or {}),
    )
    return write_model_dir(model_dir, model=model, card=card)


def load_model_dir(model_dir: str) -> LoadedModel:
    """Load ``model.json`` and the Keras model it names, after checking the file's SHA-256.

    Raises
    ------
    FileNotFoundError
        When ``model_dir`` has no ``model.json`` (not a finished model dir).
    ValueError
        When the model file does not match the SHA-256 in ``model.json``.
    """
    import keras

    card = read_model_card(model_dir)
    path = join_uri(model_dir, card.model_file)
    if card.model_sha256 and file_sha256(path) != card.model_sha256:
        raise ValueError(f"{path} does not match the SHA-256 in {model_dir}/model.json: corrupt or replaced")
    if "://" in path:
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, card.model_file)
            fs, fs_path = fsspec.core.url_to_fs(path)
            fs.get_file(fs_path, local)
            model = keras.models.load_model(local)
    else:
        model = keras.models.load_model(path)
    return LoadedModel(model=model, card=card)


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

    layer = loaded.model.get_layer(loaded.card.embedding_layer)
    return keras.Model(loaded.model.inputs, layer.output)
