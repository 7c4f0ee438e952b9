"""``genreflow train --backbone musicnn-msd|musicnn-mtt``: a genre head on a pretrained musicnn.

Recipe (the default, frozen backbone):

1. refuse data that was not featurized with ``--preset musicnn`` (the backbone only understands
   its own front end);
2. run the frozen backbone once over the train and validation splits and keep, per segment, its
   :data:`FEATURE_OUTPUTS` (musicnn's temporal ``max_pool`` and ``mean_pool`` of the front- and
   mid-end features plus its 200-unit ``penultimate`` layer), cached on local disk
   (:func:`cached_segment_features`) so that another head on the same data skips this step;
3. train a small head on those vectors: per-feature standardisation (fitted on train, variance
   floored) ->
   dropout -> ``embedding`` (Dense, ReLU) -> dropout -> ``probabilities`` (softmax), with the
   trainer's optimiser, schedule, label smoothing and class weights;
4. join backbone and head into one flat functional model of stock Keras layers, so the exported
   ``model.keras`` is self-contained: ``(batch, 96, 187)`` log-mel -> ``(batch, n_labels)``.

With ``--fine-tune`` the joined model is then trained end to end for ``--fine-tune-epochs`` on the
augmented segment pipeline at ``--fine-tune-learning-rate``; musicnn's batch-norm statistics stay
frozen (its layers run in inference mode).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from transforms.metadata import DatasetMetadata, dataset_version
from transforms.spec import PRESETS, ParameterMismatchError, SpectrogramParams

__all__ = ["FEATURE_OUTPUTS", "HEAD_UNITS", "check_preset", "check_ready", "segment_features",
           "feature_cache_path", "cached_segment_features",
           "feature_model", "feature_normalizer", "build_head", "join", "fit"]

logger = logging.getLogger(__name__)

#: Outputs of :func:`training.musicnn.build_musicnn` that feed the head, concatenated.
FEATURE_OUTPUTS = ("max_pool", "mean_pool", "penultimate")
_OUTPUT_INDEX = {"tags": 0, "penultimate": 1, "max_pool": 2, "mean_pool": 3}
#: Width of the head's embedding layer.
HEAD_UNITS = 128
HEAD_DROPOUT = 0.5
#: Added to every feature's training variance before standardising (features are O(0.1-30)).
VARIANCE_FLOOR = 1e-2
#: Segments per forward pass of the backbone (feature extraction, evaluation).  A Keras call of
#: musicnn on CPU peaks at ~66 MB per segment (its timbral convolutions: 187 x 59 x 204 floats per
#: branch and segment): measured +2.4 GB resident for 32 segments, +8.5 GB for 128.
INFERENCE_BATCH = 32
#: The featurize preset every musicnn backbone needs.
PRESET = "musicnn"


def check_preset(params: SpectrogramParams, *, backbone: str) -> None:
    """Raise :class:`ParameterMismatchError` unless ``params`` are the ``musicnn`` preset.

    Only where segments start and whether a short tail is kept may differ
    (``--segment-hop-seconds``, ``--min-tail-fraction``): they do not change what one segment looks
    like.  The message names every differing field and the featurize flag that produces usable data.
    """
    expected = dataclasses.replace(
        PRESETS[PRESET], segment_hop_seconds=params.segment_hop_seconds, min_tail_fraction=params.min_tail_fraction
    )
    try:
        expected.check_compatible(params, what="data")
    except ParameterMismatchError as e:
        raise ParameterMismatchError(
            f"--backbone {backbone} needs data featurized with `genreflow featurize --preset {PRESET}`; {e}"
        ) from None


def check_ready(params: SpectrogramParams, *, backbone: str) -> None:
    """Everything :func:`fit` needs before it starts: a known backbone, the ``musicnn`` preset
    (:func:`check_preset`) and the installed weights
    (:class:`training.musicnn_weights.WeightsMissingError` otherwise, naming the install command)."""
    from training import musicnn, musicnn_weights

    if backbone not in musicnn.BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(musicnn.BACKBONES)}")
    check_preset(params, backbone=backbone)
    musicnn_weights.checkpoint_prefix(musicnn.BACKBONES[backbone].checkpoint)


def feature_model(backbone: Any) -> Any:
    """``(batch, 96, 187)`` -> ``(batch, F)``: the concatenated :data:`FEATURE_OUTPUTS`."""
    import keras

    outs = [backbone.outputs[_OUTPUT_INDEX[k]] for k in FEATURE_OUTPUTS]
    return keras.Model(backbone.inputs, keras.layers.Concatenate(name="backbone_features")(outs))


def segment_features(
    features: Any, data_dir: str, *, metadata: DatasetMetadata, split: str, batch_size: int = INFERENCE_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features of every labeled segment of a split, streamed (only features are kept).

    Returns
    -------
    x : np.ndarray, float32, shape (n, F)
    label_index : np.ndarray, int64, shape (n,)
    """
    from training import data

    xs, ys = [], []
    for batch in data.segments(data_dir, metadata=metadata, split=split).batch(batch_size):
        keep = batch["label_index"].numpy() >= 0
        if keep.any():
            xs.append(np.asarray(features(batch["mel"].numpy()[keep], training=False), np.float32))
            ys.append(batch["label_index"].numpy()[keep])
    width = int(features.outputs[0].shape[-1])
    return (
        np.concatenate(xs) if xs else np.zeros((0, width), np.float32),
        np.concatenate(ys) if ys else np.zeros((0,), np.int64),
    )


def feature_normalizer(x_train: np.ndarray) -> Any:
    """Per-feature standardisation fitted on ``x_train`` ``(n, F)``, as a stock ``Normalization``.

    ``Normalization.adapt`` divides by ``max(std, 1e-7)``: a feature that is (nearly) constant on a
    small training set, such as a dead musicnn channel, would turn a tiny change at label time into a
    huge input.  The variance is floored at :data:`VARIANCE_FLOOR` instead.
    """
    import keras

    x = np.asarray(x_train, np.float64)
    return keras.layers.Normalization(
        axis=-1, mean=x.mean(axis=0), variance=x.var(axis=0) + VARIANCE_FLOOR, name="feature_normalization"
    )


def feature_cache_path(data_dir: str, *, split: str, backbone: str) -> pathlib.Path:
    """Where :func:`cached_segment_features` keeps one split's features:
    ``$GENREFLOW_CACHE/backbone-features/<key>.npz``, the key a hash of the data's ``metadata.json``
    (:func:`transforms.metadata.dataset_version`), the split, the backbone, its weights (the wheel's
    SHA-256) and :data:`FEATURE_OUTPUTS`: new data, weights or features never meet an old entry."""
    from training import musicnn_weights

    key = json.dumps([dataset_version(data_dir), split, backbone, musicnn_weights.WHEEL_SHA256,
                      list(FEATURE_OUTPUTS)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return musicnn_weights.cache_dir().parent / "backbone-features" / f"{digest}.npz"


def cached_segment_features(
    features: Any, data_dir: str, *, metadata: DatasetMetadata, split: str, backbone: str
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`segment_features`, read from or written to :func:`feature_cache_path`.

    Training several heads on one dataset (seeds, options) runs the backbone over it once:
    ~7 KB per segment on local disk (``--no-feature-cache`` turns it off).
    """
    path = feature_cache_path(data_dir, split=split, backbone=backbone)
    if path.is_file():
        with np.load(path) as cached:
            logger.info("backbone features of %s/%s from %s", data_dir, split, path)
            return cached["x"], cached["label_index"]
    x, y = segment_features(features, data_dir, metadata=metadata, split=split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}-{os.getpid()}.npz")
    np.savez(tmp, x=x, label_index=y)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
    return x, y


def build_head(*, n_classes: int, normalizer: Any) -> list[Any]:
    """The head's layers, in order (applied to the backbone features)."""
    from keras import layers

    from training.model import EMBEDDING_LAYER, OUTPUT_LAYER

    return [
        normalizer,
        layers.Dropout(HEAD_DROPOUT, name="head_dropout_features"),
        layers.Dense(HEAD_UNITS, activation="relu", name=EMBEDDING_LAYER),
        layers.Dropout(HEAD_DROPOUT, name="head_dropout_embedding"),
        layers.Dense(n_classes, activation="softmax", dtype="float32", name=OUTPUT_LAYER),
    ]


def join(features: Any, head_layers: Sequence[Any], *, name: str) -> Any:
    """One flat functional model: :func:`feature_model` output through ``head_layers``."""
    import keras

    return keras.Model(features.inputs, _apply(head_layers, features.outputs[0]), name=name)


def _apply(layer_list: Sequence[Any], x: Any) -> Any:
    for layer in layer_list:
        x = layer(x)
    return x


def _one_hot(y: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[y]


def _head_data(features: Any, cfg: Any, *, metadata: DatasetMetadata) -> tuple[tuple[np.ndarray, np.ndarray], Any]:
    """The backbone's features of the training and validation segments: -> ``((x, y), validation)``,
    ``validation`` being ``(x, one-hot y)`` or ``None``.

    Raises
    ------
    ValueError
        When there is no labeled training segment.
    """
    from training import data

    def split_features(split: str) -> tuple[np.ndarray, np.ndarray]:
        if not cfg.feature_cache:
            return segment_features(features, cfg.data, metadata=metadata, split=split)
        return cached_segment_features(features, cfg.data, metadata=metadata, split=split, backbone=cfg.backbone)

    x_train, y_train = split_features("train")
    if not len(x_train):
        raise ValueError(f"{cfg.data} has no labeled training segments")
    has_validation = bool(metadata.shard_names("validation")) and data.split_size(metadata, "validation") != 0
    validation = None
    if has_validation:
        x_val, y_val = split_features("validation")
        if len(x_val):
            validation = (x_val, _one_hot(y_val, len(metadata.labels)))
    return (x_train, y_train), validation


def _fit_head(x_train: np.ndarray, y_train: np.ndarray, cfg: Any, *, metadata: DatasetMetadata, validation: Any,
              callbacks: Sequence[Any]) -> list[Any]:
    """Build and train the head on backbone features ``x_train`` ``(n, n_features)``; -> its layers."""
    import keras

    from training import data
    from training.model import compile_model

    n_classes = len(metadata.labels)
    head_layers = build_head(n_classes=n_classes, normalizer=feature_normalizer(x_train))
    head_in = keras.Input(shape=(x_train.shape[1],), name="features")
    head = keras.Model(head_in, _apply(head_layers, head_in), name="head")
    weights = data.class_weights(metadata) if cfg.balance == "weights" else np.ones(n_classes, np.float32)
    steps = max(1, int(np.ceil(len(x_train) / cfg.batch_size)))
    compile_model(
        head, learning_rate=cfg.learning_rate, total_steps=steps * cfg.epochs,
        warmup_steps=steps * cfg.warmup_epochs, weight_decay=cfg.weight_decay,
        label_smoothing=cfg.label_smoothing,
    )
    head.fit(
        x_train, _one_hot(y_train, n_classes), sample_weight=weights[y_train], batch_size=cfg.batch_size,
        epochs=cfg.epochs, validation_data=validation, callbacks=list(callbacks), verbose=cfg.verbose,
        shuffle=True,
    )
    return head_layers


def fit(cfg: Any, *, metadata: DatasetMetadata, callbacks: Sequence[Any] = ()) -> tuple[Any, str, dict[str, Any]]:
    """Train a head on a frozen musicnn (and optionally fine-tune); return the joined model.

    Parameters
    ----------
    cfg : training.train.TrainConfig
        ``backbone``, ``epochs``, ``batch_size``, ``learning_rate``, ``warmup_epochs``,
        ``weight_decay``, ``label_smoothing``, ``early_stopping``, ``seed``, ``fine_tune*``.
    metadata : DatasetMetadata
        ``metadata.json`` of ``cfg.data``.
    callbacks : sequence of keras.callbacks.Callback
        Run during every fit (head, then fine-tuning).

    Returns
    -------
    model : keras.Model
        ``(batch, 96, 187)`` -> ``(batch, n_labels)``, stock layers only.
    embedding_layer : str
        Name of the head's embedding layer.
    extra : dict
        Backbone facts for ``model.json``.

    Raises
    ------
    ParameterMismatchError
        When the data was not featurized with ``--preset musicnn``.
    training.musicnn_weights.WeightsMissingError
        When the weights are not installed.
    """
    from training import musicnn
    from training.model import EMBEDDING_LAYER

    check_preset(metadata.spectrogram, backbone=cfg.backbone)
    backbone = musicnn.pretrained(cfg.backbone)
    for layer in backbone.layers:
        layer.trainable = False
    features = feature_model(backbone)
    (x_train, y_train), validation = _head_data(features, cfg, metadata=metadata)
    logger.info("backbone %s: %d training segments, %d features each", cfg.backbone, *x_train.shape)
    head_layers = _fit_head(x_train, y_train, cfg, metadata=metadata, validation=validation, callbacks=callbacks)
    joined = join(features, head_layers, name=f"genreflow_{cfg.backbone.replace('-', '_')}")
    if cfg.fine_tune:
        _fine_tune(joined, cfg, metadata=metadata, has_validation=validation is not None, callbacks=callbacks)
    extra = {
        "backbone": cfg.backbone,
        "backbone_checkpoint": musicnn.BACKBONES[cfg.backbone].checkpoint,
        "backbone_trained_on": musicnn.BACKBONES[cfg.backbone].dataset,
        "backbone_features": list(FEATURE_OUTPUTS),
        "fine_tuned": bool(cfg.fine_tune),
    }
    return joined, EMBEDDING_LAYER, extra


def _fine_tune(model: Any, cfg: Any, *, metadata: DatasetMetadata, has_validation: bool, callbacks: Sequence[Any]) -> None:
    """Train ``model`` end to end (musicnn convolutions and dense layers; not its batch norms)."""
    import keras

    from training.model import compile_model
    from training.data import segment_datasets

    for layer in model.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    train_ds, steps, val_ds = segment_datasets(cfg, metadata=metadata, has_validation=has_validation)
    compile_model(
        model, learning_rate=cfg.fine_tune_learning_rate, total_steps=steps * cfg.fine_tune_epochs,
        warmup_steps=steps, weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
    )
    model.fit(train_ds, epochs=cfg.fine_tune_epochs, steps_per_epoch=steps, validation_data=val_ds,
              callbacks=list(callbacks), verbose=cfg.verbose)
