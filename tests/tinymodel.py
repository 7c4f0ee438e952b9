"""A tiny Keras CNN and its model dir, for tests of the label job on any runner.

It has the shape of a real genreflow model (log-mel input of ``params.mel_shape``, a layer named
``embedding``, softmax over the labels) but a few hundred weights, so tests build, fit and load it
in seconds.  Tests do not use ``training/``: the label job must work with any model dir.
"""

from __future__ import annotations

from typing import Any, Sequence

from transforms.metadata import ModelCard
from transforms.model_dir import new_model_card, write_model_dir
from transforms.spec import SpectrogramParams


def tiny_cnn(params: SpectrogramParams, *, n_labels: int) -> Any:
    """``(batch, n_mels, n_frames)`` -> ``(batch, n_labels)`` probabilities; uncompiled."""
    import keras

    inp = keras.Input(params.mel_shape)
    h = keras.layers.Reshape(params.mel_shape + (1,))(inp)
    h = keras.layers.Rescaling(1 / 40.0, offset=1.0)(h)
    h = keras.layers.Conv2D(4, 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D((2, 4))(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(6, activation="tanh", name="embedding")(h)
    out = keras.layers.Dense(n_labels, activation="softmax")(h)
    return keras.Model(inp, out)


def save_model_dir(model: Any, model_dir: str, *, labels: Sequence[str], params: SpectrogramParams) -> ModelCard:
    """Export through the trainer's writer (:func:`transforms.model_dir.write_model_dir`)."""
    card = new_model_card(labels=labels, spectrogram=params, embedding_layer="embedding")
    return write_model_dir(model_dir, model=model, card=card)
