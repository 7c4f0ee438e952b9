"""musicnn (Pons & Serra 2019) in Keras 3 from built-in layers, with the published weights.

The network is ``build_musicnn`` of ``musicnn==0.1.0/models.py`` (``MSD_musicnn`` and
``MTT_musicnn``: 64 mid-end filters, 200 back-end units), written with stock Keras layers only so
that a model containing it saves to ``.keras`` and loads with ``safe_mode=True`` and without this
package.  :func:`load_checkpoint` copies the TF1 checkpoint variables into it by name
(``tf.train.load_checkpoint``; no TF1 graph is built).

Input is what featurize stores with ``--preset musicnn``: ``(batch, n_mels=96, n_frames=187)``
``log10(1 + 10000 * mel)``; the model transposes it to musicnn's ``(frames, mels)`` layout itself.

Layer map (TF1 variable scope -> Keras layer)::

    batch_normalization            -> musicnn_input_bn          (on the (frames, mels, 1) image)
    conv2d, batch_normalization_1  -> musicnn_timbral_74_{conv,bn}   7 x 38 kernel, 204 filters
    conv2d_1, batch_normalization_2 -> musicnn_timbral_77_{conv,bn}  7 x 67 kernel, 204 filters
    conv2d_2..4, batch_normalization_3..5 -> musicnn_temporal_{128,64,32}_{conv,bn}  n x 1, 51 filters
    conv2d_5..7, batch_normalization_6..8 -> musicnn_midend{1,2,3}_{conv,bn}  7 x width, 64 filters
                                            (a 2-D convolution spanning all channels == Conv1D)
    batch_normalization_9          -> musicnn_pool_bn           (on max/mean pooled, 1506 values)
    dense, batch_normalization_10  -> musicnn_penultimate_dense, musicnn_penultimate (200 units)
    dense_1                        -> musicnn_tags_logits  (50 tags; sigmoid -> musicnn_tags)

Outputs of :func:`build_musicnn` (in this order): ``tags`` (batch, 50) sigmoid probabilities,
``penultimate`` (batch, 200) (musicnn's ``penultimate`` feature), ``max_pool`` and ``mean_pool``
(batch, 753) (musicnn's ``max_pool`` / ``mean_pool`` features: the temporal max and mean of the
concatenated front- and mid-end features).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = [
    "Backbone",
    "BACKBONES",
    "N_MELS",
    "N_FRAMES",
    "build_musicnn",
    "load_checkpoint",
    "pretrained",
]

#: musicnn's input patch: 96 mel bands x 187 frames (3 s at 16 kHz, hop 256).
N_MELS = 96
N_FRAMES = 187
_PREFIX = "musicnn_"


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One pretrained musicnn model.

    Attributes
    ----------
    checkpoint : str
        Checkpoint folder name in the wheel (and in the cache).
    dataset : str
        What it was trained on (for model.json and the README).
    n_tags : int
        Outputs of its tagging layer.
    """

    checkpoint: str
    dataset: str
    n_tags: int = 50


#: Selectable with ``genreflow train --backbone``.
BACKBONES = {
    "musicnn-msd": Backbone("MSD_musicnn", "Million Song Dataset, 50 Last.fm tags"),
    "musicnn-mtt": Backbone("MTT_musicnn", "MagnaTagATune, 50 tags"),
}


def _bn(name: str) -> Any:
    from keras import layers

    # tf.compat.v1.layers.batch_normalization defaults: axis -1, epsilon 1e-3, momentum 0.99.
    # Always in inference mode (trainable=False): fine-tuning keeps musicnn's statistics.
    return layers.BatchNormalization(axis=-1, epsilon=1e-3, momentum=0.99, trainable=False, name=_PREFIX + name)


def build_musicnn(
    *, n_mels: int = N_MELS, n_frames: int = N_FRAMES, n_tags: int = 50, midend_filters: int = 64,
    backend_units: int = 200, name: str = "musicnn",
) -> Any:
    """The musicnn network (weights uninitialised; see :func:`load_checkpoint`).

    Parameters
    ----------
    n_mels, n_frames : int
        Input size: ``(batch, n_mels, n_frames)``, band-major as featurize stores it.
    n_tags : int
        Outputs of the tagging layer (50 for the published models).
    midend_filters, backend_units : int
        64 and 200 for ``MSD_musicnn`` and ``MTT_musicnn``.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        ``(batch, n_mels, n_frames)`` float32 -> ``[tags (batch, n_tags), penultimate (batch,
        backend_units), max_pool (batch, F), mean_pool (batch, F)]`` with ``F = 561 + 3 *
        midend_filters``.  Dropout layers of the original are no-ops at inference and left out.
    """
    import keras

    inputs = keras.Input(shape=(n_mels, n_frames), name="log_mel", dtype="float32")
    front = _front_end(inputs, n_mels=n_mels, n_frames=n_frames)
    midend = _mid_end(front, filters=midend_filters)
    tags, penultimate, max_pool, mean_pool = _back_end(midend, units=backend_units, n_tags=n_tags)
    return keras.Model(inputs, [tags, penultimate, max_pool, mean_pool], name=name)


def _front_end(inputs: Any, *, n_mels: int, n_frames: int) -> Any:
    """Timbral (2 wide-in-frequency) and temporal (3 long-in-time) convolutions, each max-pooled over
    frequency: ``(batch, n_mels, n_frames)`` -> ``(batch, n_frames, 561)``."""
    from keras import layers

    p = _PREFIX
    x = layers.Permute((2, 1), name=p + "frames_first")(inputs)  # (frames, mels)
    x = layers.Reshape((n_frames, n_mels, 1), name=p + "add_channel")(x)
    x = _bn("input_bn")(x)

    def pooled_block(inp: Any, tag: str, filters: int, kernel: tuple[int, int], padding: str) -> Any:
        y = layers.Conv2D(filters, kernel, padding=padding, activation="relu", name=f"{p}{tag}_conv")(inp)
        y = _bn(f"{tag}_bn")(y)
        width = int(y.shape[2])
        y = layers.MaxPooling2D(pool_size=(1, width), strides=(1, width), name=f"{p}{tag}_pool")(y)
        return layers.Reshape((n_frames, filters), name=f"{p}{tag}_squeeze")(y)

    timbral_filters, temporal_filters = int(1.6 * 128), int(1.6 * 32)
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)), name=p + "timbral_pad")(x)
    front = [
        pooled_block(padded, "timbral_74", timbral_filters, (7, int(0.4 * n_mels)), "valid"),
        pooled_block(padded, "timbral_77", timbral_filters, (7, int(0.7 * n_mels)), "valid"),
    ] + [
        pooled_block(x, f"temporal_{k}", temporal_filters, (k, 1), "same") for k in (128, 64, 32)
    ]
    return layers.Concatenate(axis=-1, name=p + "frontend")(front)  # (frames, 561)


def _mid_end(front: Any, *, filters: int) -> Any:
    """Three residual Conv1D layers over time, concatenated with their input: -> ``(batch, frames, 561 + 3 * filters)``.

    musicnn's 7 x width 2-D convolutions over a (frames, width, 1) image are Conv1D with the width
    as channels (zero padding of 3 frames each side == "same" for a kernel of 7).
    """
    from keras import layers

    p = _PREFIX
    features = [front]
    h = front
    for i in (1, 2, 3):
        y = layers.Conv1D(filters, 7, padding="same", activation="relu", name=f"{p}midend{i}_conv")(h)
        y = _bn(f"midend{i}_bn")(y)
        h = y if i == 1 else layers.Add(name=f"{p}midend{i}_residual")([y, h])
        features.append(h)
    return layers.Concatenate(axis=-1, name=p + "midend")(features)


def _back_end(midend: Any, *, units: int, n_tags: int) -> tuple[Any, Any, Any, Any]:
    """Max and mean over time, interleaved as musicnn flattens them, a dense layer and the tag layer:
    -> ``(tags, penultimate, max_pool, mean_pool)``."""
    from keras import layers

    p = _PREFIX
    width = int(midend.shape[-1])
    max_pool = layers.GlobalMaxPooling1D(name=p + "max_pool")(midend)
    mean_pool = layers.GlobalAveragePooling1D(name=p + "mean_pool")(midend)
    # musicnn flattens concat([max, mean], axis=channel) of shape (width, 2): interleaved values.
    stacked = layers.Concatenate(axis=-1, name=p + "max_mean")([
        layers.Reshape((width, 1), name=p + "max_column")(max_pool),
        layers.Reshape((width, 1), name=p + "mean_column")(mean_pool),
    ])
    flat = layers.Flatten(name=p + "pool_flat")(stacked)
    flat = _bn("pool_bn")(flat)
    dense = layers.Dense(units, activation="relu", name=p + "penultimate_dense")(flat)
    penultimate = _bn("penultimate")(dense)
    logits = layers.Dense(n_tags, name=p + "tags_logits")(penultimate)
    tags = layers.Activation("sigmoid", name=p + "tags")(logits)
    return tags, penultimate, max_pool, mean_pool


#: Keras layer name (without prefix) -> TF1 variable scope in the checkpoint.
_CONV_SCOPES = {
    "timbral_74_conv": "conv2d", "timbral_77_conv": "conv2d_1", "temporal_128_conv": "conv2d_2",
    "temporal_64_conv": "conv2d_3", "temporal_32_conv": "conv2d_4", "midend1_conv": "conv2d_5",
    "midend2_conv": "conv2d_6", "midend3_conv": "conv2d_7",
    "penultimate_dense": "dense", "tags_logits": "dense_1",
}
_BN_SCOPES = {
    "input_bn": "batch_normalization", "timbral_74_bn": "batch_normalization_1",
    "timbral_77_bn": "batch_normalization_2", "temporal_128_bn": "batch_normalization_3",
    "temporal_64_bn": "batch_normalization_4", "temporal_32_bn": "batch_normalization_5",
    "midend1_bn": "batch_normalization_6", "midend2_bn": "batch_normalization_7",
    "midend3_bn": "batch_normalization_8", "pool_bn": "batch_normalization_9",
    "penultimate": "batch_normalization_10",
}


def load_checkpoint(model: Any, prefix: str) -> Any:
    """Copy the TF1 checkpoint at ``prefix`` into a :func:`build_musicnn` model (or any model
    containing its layers, found by name).

    Every variable is checked for shape; the mid-end 2-D kernels ``(7, width, 1, filters)`` become
    Conv1D kernels ``(7, width, filters)``.

    Returns
    -------
    keras.Model
        ``model``, with the weights set.

    Raises
    ------
    ValueError
        When a variable is missing or its shape does not fit the layer.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    available = reader.get_variable_to_shape_map()

    def get(name: str) -> np.ndarray:
        if name not in available:
            raise ValueError(f"checkpoint {prefix} has no variable {name}")
        return reader.get_tensor(name)

    for short, scope in _CONV_SCOPES.items():
        layer = model.get_layer(_PREFIX + short)
        kernel, bias = get(f"{scope}/kernel"), get(f"{scope}/bias")
        want = tuple(layer.kernel.shape)
        if kernel.shape != want:
            if kernel.ndim == 4 and kernel.shape[2] == 1 and (kernel.shape[0], kernel.shape[1], kernel.shape[3]) == want:
                kernel = kernel[:, :, 0, :]
            else:
                raise ValueError(f"{scope}/kernel has shape {kernel.shape}, layer {layer.name} needs {want}")
        layer.set_weights([kernel, bias])
    for short, scope in _BN_SCOPES.items():
        layer = model.get_layer(_PREFIX + short)
        values = [get(f"{scope}/{v}") for v in ("gamma", "beta", "moving_mean", "moving_variance")]
        if any(v.shape != tuple(w.shape) for v, w in zip(values, layer.weights)):
            raise ValueError(f"{scope} shapes {[v.shape for v in values]} do not fit {layer.name}")
        layer.set_weights(values)
    return model


def pretrained(backbone: str, *, prefix: str | None = None) -> Any:
    """A :func:`build_musicnn` model with the weights of ``backbone`` (a key of :data:`BACKBONES`).

    Parameters
    ----------
    backbone : str
        ``"musicnn-msd"`` or ``"musicnn-mtt"``.
    prefix : str, optional
        Checkpoint prefix; from the weights cache (:mod:`training.musicnn_weights`) when omitted.

    Raises
    ------
    training.musicnn_weights.WeightsMissingError
        When the cache does not hold the weights (the message names the install command).
    """
    from training import musicnn_weights

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    spec = BACKBONES[backbone]
    prefix = prefix or musicnn_weights.checkpoint_prefix(spec.checkpoint)
    return load_checkpoint(build_musicnn(n_tags=spec.n_tags, name=backbone.replace("-", "_")), prefix)
