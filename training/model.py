"""CNN architectures for log-mel segments, built from stock Keras layers only.

The exported model must load with a bare ``keras.models.load_model(path)`` and with Beam's
``TFModelHandlerNumpy`` in a process that never imports ``training``: so every layer here is a
built-in Keras layer, and augmentation lives in the input pipeline (:mod:`training.data`), not in
the model.

Every model maps ``(batch, n_mels, n_frames)`` float32 log-mel segments (as stored by featurize) to
``(batch, n_labels)`` float32 class probabilities:

``Normalization`` (per mel band, adapted on the training split and saved in the model)
-> convolution blocks (1-D along time with mel bands as channels, optionally after a 2-D front end;
or 2-D over the image)
-> global average + max pooling (or mean + standard deviation) -> dropout -> ``embedding`` (Dense, ReLU)
-> dropout -> ``probabilities`` (Dense, softmax, float32 even under mixed precision).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = [
    "Architecture",
    "ARCHITECTURES",
    "DEFAULT_ARCHITECTURE",
    "EMBEDDING_LAYER",
    "OUTPUT_LAYER",
    "build_model",
    "make_normalizer",
]

#: Name of the penultimate layer, whose output is the segment embedding (recorded in model.json).
EMBEDDING_LAYER = "embedding"
#: Name of the softmax output layer.
OUTPUT_LAYER = "probabilities"


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One named CNN recipe.

    Attributes
    ----------
    filters : tuple of int
        Output channels of each convolution block; each block halves both axes (2x2 max pool).
    convs_per_block : int
        3x3 convolution + batch norm + ReLU layers per block.
    embedding : int
        Width of the embedding layer.
    dropout : float
        Dropout before the embedding layer and before the output layer.
    kind : str
        ``"2d"``: 3x3 convolutions over the (mel band, frame) image, 2x2 pooling.  ``"1d"``: mel
        bands are channels, kernel-3 convolutions run along time only, pooling by 2 in time.
    pooling : str
        Global pooling of the last block: ``"avgmax"`` (mean and maximum of every channel) or
        ``"stats"`` (mean and standard deviation of every channel, i.e. statistics pooling).
    kernel_size : int
        Kernel length along time of the ``"1d"`` convolutions, in frames (``"2d"`` always uses 3x3).
    front : tuple of int
        ``"1d"`` only: output channels of 3x3 2-D convolution blocks (batch norm, ReLU, 2x2 max
        pool) run over the (mel band, frame) image first; their (band, channel) outputs then become
        the channels of the 1-D blocks.  Empty: no 2-D front end.
    band_stats : bool
        Also feed the mean and standard deviation over time of every normalised mel band (the
        segment's spectral envelope and its variability, what MFCC statistics describe) to the
        embedding layer, next to the pooled convolution features.
    """

    filters: tuple[int, ...]
    convs_per_block: int
    embedding: int
    dropout: float
    kind: str = "2d"
    pooling: str = "avgmax"
    band_stats: bool = False
    kernel_size: int = 3
    front: tuple[int, ...] = ()


#: Selectable by name with ``genreflow train --arch``.
ARCHITECTURES = {
    # 2-D, ~115k parameters, ~30x the multiply-adds of "temporal".
    "small": Architecture(filters=(16, 32, 64, 128), convs_per_block=1, embedding=64, dropout=0.5),
    # 1-D over time, mel bands as channels, ~117k parameters: the cheapest (2.7-4.7x the inference rate of "hybrid").
    "temporal": Architecture(filters=(64, 128, 128), convs_per_block=1, embedding=64, dropout=0.5, kind="1d"),
    # The default (docs/train.md, "Architectures"): two 3x3 2-D blocks (8, 16 channels) over
    # (mel, frame), whose (band, channel) outputs become the channels of 1-D blocks over time,
    # ~0.28M parameters, 3-6x the step time of "temporal" on CPU.  GTZAN-dev 5-fold balanced track
    # accuracy 0.79 (two seeds) against 0.74 for "temporal" and 0.68 for MFCC statistics + RBF SVM.
    "hybrid": Architecture(filters=(128, 128), convs_per_block=1, embedding=128, dropout=0.3, kind="1d", front=(8, 16)),
    # ~1.2M parameters: for thousands of tracks.
    "wide": Architecture(filters=(32, 64, 128, 256), convs_per_block=2, embedding=128, dropout=0.4),
}

#: What ``genreflow train`` builds without ``--arch``.
DEFAULT_ARCHITECTURE = "hybrid"


def make_normalizer() -> Any:
    """Per-mel-band ``keras.layers.Normalization`` for ``(batch, n_mels, n_frames)`` input.

    Call ``.adapt(dataset_of_mel_batches)`` on the training split before :func:`build_model`.
    """
    import keras

    return keras.layers.Normalization(axis=1, name="band_normalization")


def build_model(
    *,
    input_shape: tuple[int, int],
    n_classes: int,
    arch: "str | Architecture" = DEFAULT_ARCHITECTURE,
    normalizer: Any = None,
    dtype_policy: str = "float32",
) -> Any:
    """Build (uncompiled) a genre CNN.

    Parameters
    ----------
    input_shape : (int, int)
        ``(n_mels, n_frames)`` of one segment.
    n_classes : int
        Size of the label vocabulary.
    arch : str or Architecture
        A key of :data:`ARCHITECTURES`, or a recipe.
    normalizer : keras.layers.Normalization, optional
        Adapted per-band normaliser (:func:`make_normalizer`); a fresh, unadapted one is made when
        omitted (its weights are then expected to be loaded, e.g. by ``set_weights``).
    dtype_policy : str
        ``"float32"`` or ``"mixed_float16"`` (GPU).  The normaliser and the output layer stay
        float32.

    Returns
    -------
    keras.Model
        ``(batch, n_mels, n_frames)`` -> ``(batch, n_classes)`` probabilities; the layer named
        :data:`EMBEDDING_LAYER` gives ``(batch, embedding)`` embeddings.
    """
    import keras

    recipe, name = _recipe(arch)
    n_mels, n_frames = (int(v) for v in input_shape)
    inputs = keras.Input(shape=(n_mels, n_frames), name="log_mel", dtype="float32")
    x = (normalizer if normalizer is not None else make_normalizer())(inputs)
    band_stats = _band_stats(x, dtype=dtype_policy) if recipe.band_stats else []
    x = _front_end(x, recipe, dtype=dtype_policy)
    x = _conv_blocks(x, recipe, dtype=dtype_policy)
    outputs = _head(x, recipe, extra=band_stats, n_classes=n_classes, dtype=dtype_policy)
    return keras.Model(inputs, outputs, name=f"genreflow_{name}")


def _recipe(arch: "str | Architecture") -> tuple[Architecture, str]:
    """-> (the recipe, the name the model is called by: the key of :data:`ARCHITECTURES` or ``custom``)."""
    if isinstance(arch, Architecture):
        recipe, arch = arch, "custom"
    elif arch in ARCHITECTURES:
        recipe = ARCHITECTURES[arch]
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if recipe.pooling not in ("avgmax", "stats"):
        raise ValueError(f"unknown pooling {recipe.pooling!r}; choose avgmax or stats")
    return recipe, arch


def _band_stats(x: Any, *, dtype: str) -> list[Any]:
    """Mean and standard deviation over time of each mel band of ``x`` ``(batch, n_mels, n_frames)``."""
    from keras import layers

    bands = layers.Permute((2, 1), name="bands_last")(x)  # (n_frames, n_mels)
    return list(_mean_std(bands, layers.GlobalAveragePooling1D, prefix="band_", dtype=dtype))


def _front_end(x: Any, recipe: Architecture, *, dtype: str) -> Any:
    """``(batch, n_mels, n_frames)`` -> what the conv blocks take: ``(batch, frames, channels)`` for 1-D
    recipes (mel bands, or a 2-D front end's bands x channels, as channels), ``(batch, n_mels, n_frames, 1)``
    for 2-D ones."""
    from keras import layers

    n_mels, n_frames = x.shape[1], x.shape[2]
    if recipe.kind != "1d":
        return layers.Reshape((n_mels, n_frames, 1), name="add_channel")(x)
    if not recipe.front:
        return layers.Permute((2, 1), name="frames_first")(x)  # (n_frames, n_mels): bands as channels
    x = layers.Reshape((n_mels, n_frames, 1), name="add_channel")(x)
    for b, width in enumerate(recipe.front):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype, name=f"front{b}_conv")(x)
        x = layers.BatchNormalization(dtype=dtype, name=f"front{b}_bn")(x)
        x = layers.Activation("relu", dtype=dtype, name=f"front{b}_relu")(x)
        x = layers.MaxPooling2D(2, padding="same", dtype=dtype, name=f"front{b}_pool")(x)
    bands, frames, channels = x.shape[1], x.shape[2], x.shape[3]
    x = layers.Permute((2, 1, 3), name="frames_first")(x)  # (frames, bands, channels)
    return layers.Reshape((frames, bands * channels), name="bands_to_channels")(x)


def _conv_blocks(x: Any, recipe: Architecture, *, dtype: str) -> Any:
    """``recipe.filters`` blocks of ``convs_per_block`` conv-batchnorm-relu, each ending in a 2x max pool."""
    from keras import layers

    conv, pool = (layers.Conv1D, layers.MaxPooling1D) if recipe.kind == "1d" else (layers.Conv2D, layers.MaxPooling2D)
    kernel = recipe.kernel_size if recipe.kind == "1d" else 3
    for b, width in enumerate(recipe.filters):
        for c in range(recipe.convs_per_block):
            x = conv(width, kernel, padding="same", use_bias=False, dtype=dtype, name=f"block{b}_conv{c}")(x)
            x = layers.BatchNormalization(axis=-1, dtype=dtype, name=f"block{b}_bn{c}")(x)
            x = layers.Activation("relu", dtype=dtype, name=f"block{b}_relu{c}")(x)
        x = pool(2, padding="same", dtype=dtype, name=f"block{b}_pool")(x)
    return x


def _head(x: Any, recipe: Architecture, *, extra: list[Any], n_classes: int, dtype: str) -> Any:
    """Global pooling (+ ``extra`` features), dropout, the embedding layer, dropout, float32 softmax."""
    from keras import layers

    if recipe.kind == "1d":
        gap, gmp = layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D
    else:
        gap, gmp = layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D
    if recipe.pooling == "stats":
        pooled = list(_mean_std(x, gap, prefix="", dtype=dtype))
    else:
        pooled = [gap(dtype=dtype, name="avg_pool")(x), gmp(dtype=dtype, name="max_pool")(x)]
    x = layers.Concatenate(dtype=dtype, name="pool")(pooled + extra)
    x = layers.Dropout(recipe.dropout, dtype=dtype, name="dropout_pool")(x)
    x = layers.Dense(recipe.embedding, activation="relu", dtype=dtype, name=EMBEDDING_LAYER)(x)
    x = layers.Dropout(recipe.dropout, dtype=dtype, name="dropout_embedding")(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32", name=OUTPUT_LAYER)(x)


def _mean_std(x: Any, gap: Any, *, prefix: str, dtype: str) -> tuple[Any, Any]:
    """Mean and standard deviation over the pooled axes of every channel (statistics pooling).

    ``gap`` is the global average pooling layer class for ``x``'s rank; the standard deviation is
    ``sqrt(max(E[x^2] - E[x]^2, 1e-6))``, built from stock layers and ``keras.ops`` (which a
    functional model serialises as built-in operations: ``load_model`` needs no custom code).
    """
    import keras
    from keras import layers

    mean = gap(dtype=dtype, name=f"{prefix}avg_pool")(x)
    square = layers.Multiply(dtype=dtype, name=f"{prefix}square")([x, x])
    second = gap(dtype=dtype, name=f"{prefix}square_pool")(square)
    var = layers.Subtract(dtype=dtype, name=f"{prefix}variance")(
        [second, layers.Multiply(dtype=dtype, name=f"{prefix}mean_square")([mean, mean])]
    )
    return mean, keras.ops.sqrt(keras.ops.maximum(var, 1e-6))


def compile_model(
    model: Any,
    *,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 1e-4,
    label_smoothing: float = 0.1,
    mixed_precision: bool = False,
) -> Any:
    """Compile with AdamW, linear warm-up then cosine decay to zero, and smoothed cross-entropy.

    Parameters
    ----------
    model : keras.Model
        From :func:`build_model`.
    learning_rate : float
        Peak learning rate, reached after ``warmup_steps``.
    total_steps : int
        Optimizer steps of the whole run (warm-up included).
    warmup_steps : int
        Steps of linear warm-up from 0.
    weight_decay : float
        Decoupled weight decay of AdamW.
    label_smoothing : float
        Label smoothing of the categorical cross-entropy (targets are one-hot or mixed-up).
    mixed_precision : bool
        Wrap the optimizer in a ``LossScaleOptimizer`` (models built with ``mixed_float16``).

    Returns
    -------
    keras.Model
        ``model``, compiled (metrics: ``accuracy``).
    """
    import keras

    warmup_steps = max(0, min(int(warmup_steps), int(total_steps) - 1))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(1, int(total_steps) - warmup_steps),
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
    return model
