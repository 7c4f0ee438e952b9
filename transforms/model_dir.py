"""The model dir contract: write, read and verify a Keras file with its ``model.json``.

A *model dir* holds a Keras file and ``model.json`` (:class:`transforms.metadata.ModelCard`): labels,
the spectrogram parameters the model was trained on, the input shape, the name of the embedding
layer and the SHA-256 of the model file.  The Keras file holds only stock Keras layers, so it loads
without this package::

    import keras, json
    card = json.load(open("MODEL_DIR/model.json"))
    model = keras.models.load_model("MODEL_DIR/" + card["model_file"])

:func:`write_model_dir` writes one so that a reader never sees a mix of two exports: the Keras file
is named by its content (``model-<sha256>.keras``, never overwritten) and ``model.json``, written
atomically and last, switches to it; ``model_version`` (:func:`model_digest`) stays the same when
identical weights are exported again.  :func:`load_model_card` checks one before any work:
``model.json`` complete and consistent, the file's SHA-256, and the model itself (it loads, takes
``input_shape``, outputs one score per label).  :func:`load_model_dir` gives the card and the
loaded Keras model together (:class:`LoadedModel`).

The trainer (``training/export.py``), the label job (:mod:`transforms.inference`) and the tests'
tiny models all go through this module; it imports neither ``training`` nor Beam.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import posixpath
import tempfile
from typing import Any, Sequence

import fsspec
import numpy as np

from transforms.metadata import MODEL_CARD_FILE, ModelCard, read_model_card, write_model_card
from transforms.spec import SpectrogramParams
from transforms.storage import file_sha256, join_uri, local_copy, put_file_atomic, read_json

__all__ = [
    "ModelDirError",
    "LoadedModel",
    "model_file_path",
    "model_digest",
    "DEFAULT_INFERENCE_BATCH_SIZE",
    "new_model_card",
    "write_model_dir",
    "load_model_card",
    "check_model",
    "load_keras",
    "load_model_dir",
    "embedding_output",
]

logger = logging.getLogger(__name__)

#: Segments per model call for a CNN, and for a model whose ``model.json`` records no
#: ``inference_batch_size``: 256 x 128 x 130 float32 inputs are 17 MB.
DEFAULT_INFERENCE_BATCH_SIZE = 256


class ModelDirError(ValueError):
    """A model dir that cannot be used (missing file, inconsistent ``model.json``, wrong SHA-256)."""


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


def model_file_path(model_dir: str, card: ModelCard) -> str:
    """Path of the Keras file that ``card`` names inside ``model_dir``."""
    return join_uri(model_dir, card.model_file)


def new_model_card(
    *, labels: Sequence[str], spectrogram: SpectrogramParams, embedding_layer: str | None = None, **fields: Any
) -> ModelCard:
    """The card of a model about to be exported with :func:`write_model_dir`.

    ``input_shape`` is the spectrogram's ``(n_mels, n_frames)``; ``model_file``, ``model_version``
    and ``model_sha256`` are left empty for :func:`write_model_dir` to set.  ``fields`` are other
    :class:`ModelCard` fields (``data_fingerprint``, ``metrics``, ``extra``).
    """
    return ModelCard(model_file="", model_version="", labels=list(labels), spectrogram=spectrogram,
                     input_shape=list(spectrogram.mel_shape), embedding_layer=embedding_layer, **fields)


def model_digest(model: Any, *, labels: Sequence[str], spectrogram: SpectrogramParams) -> str:
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
        put_file_atomic(local, join_uri(model_dir, name))
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
        data = read_json(path)
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
        return ModelCard.from_dict(data)
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
        _check_sha256(path, card)
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
    try:
        model = load_keras(path)
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
        embedding_output(model, card.embedding_layer)  # ModelDirError when not a layer


def _check_sha256(path: str, card: ModelCard) -> None:
    """Raise :class:`ModelDirError` when the file's SHA-256 is not ``card.model_sha256``."""
    actual = file_sha256(path)
    if actual != card.model_sha256:
        raise ModelDirError(
            f"{path} does not match model.json (SHA-256 {actual[:16]}..., model.json says "
            f"{card.model_sha256[:16]}...): the file is truncated, corrupt or was replaced; export it again"
        )


def load_keras(path: str) -> Any:
    """Load a Keras file, local or on any fsspec filesystem (through a local copy), uncompiled."""
    import keras  # deferred: TensorFlow import is heavy

    with local_copy(path) as local:
        return keras.models.load_model(local, compile=False)


def embedding_output(model: Any, layer_name: str) -> Any:
    """The output tensor of ``model``'s layer ``layer_name`` (:class:`ModelDirError` when no such layer)."""
    try:
        return model.get_layer(layer_name).output
    except ValueError:
        names = [lay.name for lay in model.layers]
        raise ModelDirError(f"embedding_layer {layer_name!r} is not a layer of the model (layers: {names})") from None


def load_model_dir(model_dir: str) -> LoadedModel:
    """``model.json`` and the Keras model it names, after checking the file's SHA-256 when the card has one.

    Raises
    ------
    FileNotFoundError
        When ``model_dir`` has no ``model.json`` (not a finished model dir).
    ModelDirError
        When the model file does not match the SHA-256 in ``model.json``.
    """
    card = read_model_card(model_dir)
    path = model_file_path(model_dir, card)
    if card.model_sha256:
        _check_sha256(path, card)
    return LoadedModel(model=load_keras(path), card=card)
