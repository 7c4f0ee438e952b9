"""``genreflow train``: train a genre CNN on featurize shards and write a self-describing model dir.

    genreflow train --data DATA_DIR --model-dir MODEL_DIR [--epochs 40] [--arch hybrid|temporal|small|wide] ...
    genreflow train --data DATA_DIR --model-dir MODEL_DIR --backbone musicnn-msd [--fine-tune]
    python -m training.train --data DATA_DIR --model-dir MODEL_DIR

Everything about the data (shapes, label vocabulary, spectrogram parameters, shard format, class
counts) comes from ``DATA_DIR/metadata.json``.  The model dir receives:

* ``model-<sha256>.keras`` (stock Keras layers only; named by its content) and ``model.json``
  (:class:`transforms.metadata.ModelCard`, written last);
* ``metrics.json`` (segment and track metrics on the evaluation split), ``confusion_segment|track``
  ``.json/.png``, ``training_curves.png``, ``history.csv``;
* ``logs/`` (TensorBoard) and, while a run is unfinished, ``backup/`` (per-epoch checkpoint that a
  restarted run resumes from; deleted when training completes).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Any, Iterator, Sequence

from genreflow.args import parse_args_strict, run_command
from training.data import Augment
from training.model import ARCHITECTURES, DEFAULT_ARCHITECTURE
from training.musicnn import BACKBONES
from transforms.model_dir import DEFAULT_INFERENCE_BATCH_SIZE
from transforms.spec import SPLITS

__all__ = ["TrainConfig", "parse_args", "config_problems", "check_resume", "make_strategy", "train", "run", "main"]

logger = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multi-worker")

#: The training augmentation of the default recipe (mixup 0.3, two SpecAugment masks each way).
DEFAULT_AUGMENT = Augment(mixup_alpha=0.3)

#: ``genreflow train`` augmentation flag (its argparse dest) -> the :class:`Augment` field it sets.
AUGMENT_FLAGS = {
    "mixup": "mixup_alpha", "freq_mask": "freq_mask_width", "time_mask": "time_mask_width",
    "time_shift": "time_shift", "gain_db": "gain_db", "pitch_shift": "pitch_shift", "time_stretch": "time_stretch",
}


@dataclasses.dataclass
class TrainConfig:
    """Options of one training run (the CLI flags, see ``genreflow train --help``)."""

    data: str
    model_dir: str
    arch: str = DEFAULT_ARCHITECTURE
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_epochs: int = 2
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    augment: Augment = DEFAULT_AUGMENT
    balance: str = "weights"
    max_segments_per_class: int | None = None
    early_stopping: int = 0
    seed: int = 0
    strategy: str = "default"
    mixed_precision: bool = False
    shuffle_buffer: int = 4096
    cache: bool = True
    eval_split: str = "test"
    verbose: int = 1
    backbone: str | None = None
    fine_tune: bool = False
    fine_tune_epochs: int = 5
    fine_tune_learning_rate: float = 1e-4
    feature_cache: bool = True


def _flag_default(flag: str) -> Any:
    """Default of an augmentation flag: its field of :data:`DEFAULT_AUGMENT`."""
    return getattr(DEFAULT_AUGMENT, AUGMENT_FLAGS[flag])


def augment_from_flags(flags: dict[str, Any]) -> Augment:
    """The :class:`Augment` that the augmentation flags (``{dest: value}``, every key of
    :data:`AUGMENT_FLAGS`) ask for: two masks of each kind whose width is above 0."""
    fields = {AUGMENT_FLAGS[flag]: value for flag, value in flags.items()}
    return Augment(freq_masks=2 if fields["freq_mask_width"] else 0,
                   time_masks=2 if fields["time_mask_width"] else 0, **fields)


def _option(cfg: TrainConfig, flag: str) -> Any:
    """The value of ``--flag`` in ``cfg`` (augmentation flags live in ``cfg.augment``)."""
    return getattr(cfg.augment, AUGMENT_FLAGS[flag]) if flag in AUGMENT_FLAGS else getattr(cfg, flag)


def add_augment_arguments(p: argparse.ArgumentParser) -> None:
    """The training augmentation flags (:data:`AUGMENT_FLAGS`), defaults from :data:`DEFAULT_AUGMENT`;
    :func:`augment_from_flags` turns the parsed values into an :class:`Augment`."""
    p.add_argument("--mixup", type=float, default=_flag_default("mixup"), help="mixup Beta(alpha, alpha); 0 = off")
    p.add_argument("--freq-mask", type=int, default=_flag_default("freq_mask"),
                   help="SpecAugment: widest frequency mask in mel bands (2 masks); 0 = off")
    p.add_argument("--time-mask", type=int, default=_flag_default("time_mask"),
                   help="SpecAugment: widest time mask in frames (2 masks); 0 = off")
    p.add_argument("--time-shift", action=argparse.BooleanOptionalAction, default=_flag_default("time_shift"),
                   help="roll each training segment along time by a random number of frames")
    p.add_argument("--gain-db", type=float, default=_flag_default("gain_db"),
                   help="add a random level offset in [-g, g] dB to each training segment; 0 = off")
    p.add_argument("--pitch-shift", type=float, default=_flag_default("pitch_shift"),
                   help="shift each training segment by a random pitch in [-s, s] semitones "
                        "(resampling the mel axis); 0 = off")
    p.add_argument("--time-stretch", type=float, default=_flag_default("time_stretch"),
                   help="resample each training segment along time at a random rate in [1-r, 1+r] "
                        "(a tempo change); 0 = off")


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig(data="", model_dir="")
    p = argparse.ArgumentParser(
        prog="genreflow train",
        description="Train a genre CNN on featurized shards; writes MODEL_DIR/model-<sha256>.keras + model.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, help="featurize output directory (with metadata.json)")
    p.add_argument("--model-dir", required=True, help="output model dir (local path); a rerun resumes")
    p.add_argument("--arch", choices=tuple(ARCHITECTURES), default=d.arch, help="architecture: hybrid (the default: two small 2-D blocks, then 1-D blocks over time), temporal (1-D convolutions over time, mel bands as channels; ~3x faster), small (2-D CNN) or wide (bigger 2-D CNN); see docs/train.md, Architectures")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs (passes over train)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size, segments")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="peak learning rate")
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs,
                   help="linear warm-up epochs before the cosine decay to zero")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="label smoothing")
    add_augment_arguments(p)
    p.add_argument("--balance", choices=("weights", "resample", "none"), default=d.balance,
                   help="class imbalance: class-weighted loss, equal-probability resampling, or none")
    p.add_argument("--max-segments-per-class", type=int, default=None,
                   help="cap the training segments of each class")
    p.add_argument("--early-stopping", type=int, default=d.early_stopping,
                   help="stop after this many epochs without a better validation loss and keep the "
                   "best weights; 0 = train all epochs (needs a validation split)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--strategy", choices=STRATEGIES, default=d.strategy,
                   help="tf.distribute strategy (multi-worker reads TF_CONFIG)")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=d.mixed_precision,
                   help="mixed_float16 compute (GPUs)")
    p.add_argument("--shuffle-buffer", type=int, default=d.shuffle_buffer, help="shuffle buffer, segments")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=d.cache,
                   help="keep decoded training segments in memory")
    p.add_argument("--eval-split", choices=SPLITS, default=d.eval_split,
                   help="split for metrics.json (falls back to validation when absent)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=d.verbose,
                   help="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch")
    g = p.add_argument_group("pretrained backbone", "transfer learning from musicnn (docs/train.md, \"Recipes\")")
    g.add_argument("--backbone", choices=sorted(BACKBONES), default=None,
                   help="train a small head on a frozen pretrained musicnn (Million Song Dataset or "
                        "MagnaTagATune) instead of a CNN from scratch; --arch is then ignored and the data must "
                        "be featurized with --preset musicnn. Weights: `make install` (no download at run time)")
    g.add_argument("--feature-cache", action=argparse.BooleanOptionalAction, default=d.feature_cache,
                   help="keep the frozen backbone's features of each split in $GENREFLOW_CACHE/backbone-features "
                        "(keyed by the data's metadata.json hash), so another run on the same data skips the backbone")
    g.add_argument("--fine-tune", action=argparse.BooleanOptionalAction, default=d.fine_tune,
                   help="after training the head, train backbone and head end to end on augmented segments")
    g.add_argument("--fine-tune-epochs", type=int, default=d.fine_tune_epochs, help="epochs of --fine-tune")
    g.add_argument("--fine-tune-learning-rate", type=float, default=d.fine_tune_learning_rate,
                   help="peak learning rate of --fine-tune")
    return p


def config_problems(cfg: TrainConfig) -> list[str]:
    """Every option value of ``cfg`` that cannot make a useful run (nothing is read or written)."""
    problems = []
    for name, low in (("epochs", 1), ("batch_size", 1), ("shuffle_buffer", 1), ("warmup_epochs", 0),
                      ("freq_mask", 0), ("time_mask", 0), ("early_stopping", 0), ("fine_tune_epochs", 1)):
        if _option(cfg, name) < low:
            problems.append(f"--{name.replace('_', '-')} must be >= {low}, got {_option(cfg, name)}")
    if cfg.max_segments_per_class is not None and cfg.max_segments_per_class < 1:
        problems.append(f"--max-segments-per-class must be >= 1, got {cfg.max_segments_per_class}")
    for name in ("learning_rate", "fine_tune_learning_rate"):
        if not getattr(cfg, name) > 0:
            problems.append(f"--{name.replace('_', '-')} must be > 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.label_smoothing < 1:
        problems.append(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    for name in ("weight_decay", "mixup", "gain_db", "pitch_shift"):
        if not _option(cfg, name) >= 0:  # also refuses NaN
            problems.append(f"--{name.replace('_', '-')} must be >= 0, got {_option(cfg, name)}")
    if not 0 <= cfg.augment.time_stretch < 1:
        problems.append(f"--time-stretch must be in [0, 1), got {cfg.augment.time_stretch}")
    if os.path.exists(cfg.model_dir) and not os.path.isdir(cfg.model_dir):
        problems.append(f"--model-dir {cfg.model_dir} is a file, not a folder")
    if os.path.exists(cfg.data) and not os.path.isdir(cfg.data):
        problems.append(f"--data {cfg.data} is a file, not a featurize output folder")
    return problems


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Options -> :class:`TrainConfig`; exits 2 with one line on an unknown option (with a "did you
    mean") or a value that cannot make a useful run (:func:`config_problems`)."""
    parser = _parser()
    args, _ = parse_args_strict(parser, argv)
    values = vars(args)
    augment = augment_from_flags({flag: values.pop(flag) for flag in AUGMENT_FLAGS})
    cfg = TrainConfig(**values, augment=augment)
    problems = config_problems(cfg)
    if problems:
        parser.error("; ".join(problems))
    return cfg


#: Written into ``backup/`` when a run starts; a restarted run resumes only from a backup of the
#: same data and architecture (Keras' BackupAndRestore deletes the folder when training completes).
RESUME_MARKER = "genreflow_run.json"


def _resume_key(cfg: TrainConfig, data_fingerprint: str) -> dict[str, Any]:
    key = {"data_fingerprint": data_fingerprint, "arch": cfg.arch}
    return {**key, "backbone": cfg.backbone} if cfg.backbone else key


def check_resume(cfg: TrainConfig, *, data_fingerprint: str) -> None:
    """Refuse to resume from a backup left by a run on other data or another architecture.

    Raises
    ------
    ValueError
        When ``MODEL_DIR/backup`` holds a checkpoint whose marker is missing or names another
        data fingerprint or architecture (one line, saying how to start over).
    """
    backup = os.path.join(cfg.model_dir, "backup")
    if not os.path.isdir(backup) or not any(f.endswith(".h5") for f in os.listdir(backup)):
        return
    marker = os.path.join(backup, RESUME_MARKER)
    try:
        with open(marker) as f:
            found = json.load(f)
    except (OSError, ValueError):
        found = None
    wanted = _resume_key(cfg, data_fingerprint)
    if found != wanted:
        was = "an unknown run" if found is None else f"a run on data {found.get('data_fingerprint')} ({found.get('arch')})"
        raise ValueError(
            f"{backup} holds an unfinished checkpoint of {was}, not of this data {data_fingerprint} "
            f"({cfg.arch}): delete {backup} to start over, or use another --model-dir"
        )


def _mark_resume(cfg: TrainConfig, *, data_fingerprint: str) -> None:
    backup = os.path.join(cfg.model_dir, "backup")
    os.makedirs(backup, exist_ok=True)
    with open(os.path.join(backup, RESUME_MARKER), "w") as f:
        json.dump(_resume_key(cfg, data_fingerprint), f)


def make_strategy(name: str) -> Any:
    """``tf.distribute`` strategy by name: ``default``, ``mirrored`` or ``multi-worker``."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def _is_chief(strategy: Any) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def _read_history(path: str) -> dict[str, list[float]]:
    """``history.csv`` (all epochs, across resumed runs) as ``{metric: [per epoch]}``."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    history: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            # CSVLogger writes "NA" in the val_* columns of a run without a validation split
            if k and v not in (None, "", "NA"):
                history.setdefault(k, []).append(float(v))
    return history


def _callbacks(cfg: TrainConfig, *, has_validation: bool, record: list[int]) -> list[Any]:
    import keras

    class RecordEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record.append(int(epoch))

    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(cfg.model_dir, "backup")),
        keras.callbacks.CSVLogger(os.path.join(cfg.model_dir, "history.csv"), append=True),
        RecordEpochs(),
    ]
    try:
        import tensorboard  # noqa: F401  (the TensorBoard callback needs it to write summaries)

        callbacks.append(keras.callbacks.TensorBoard(os.path.join(cfg.model_dir, "logs"), write_graph=False))
    except ImportError:
        logger.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
    if cfg.early_stopping and has_validation:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.early_stopping, restore_best_weights=True, verbose=1
            )
        )
    elif cfg.early_stopping:
        logger.warning("--early-stopping needs a validation split; training all %d epochs", cfg.epochs)
    return callbacks


def _fit_cnn(cfg: TrainConfig, *, metadata: Any, strategy: Any, has_validation: bool, callbacks: Sequence[Any]) -> Any:
    """Build and train a CNN from scratch (``--arch``); return the float32 model to export."""
    from training import data
    from training.model import build_model, compile_model, make_normalizer

    params = metadata.spectrogram
    n_classes = len(metadata.labels)
    train_ds, steps, val_ds = data.segment_datasets(cfg, metadata=metadata, has_validation=has_validation)
    policy = "mixed_float16" if cfg.mixed_precision else "float32"
    with strategy.scope():
        normalizer = make_normalizer()
        normalizer.adapt(data.mel_dataset(cfg.data, metadata=metadata, split="train", batch_size=256, limit=8192))
        model = build_model(
            input_shape=params.mel_shape, n_classes=n_classes, arch=cfg.arch,
            normalizer=normalizer, dtype_policy=policy,
        )
        compile_model(
            model, learning_rate=cfg.learning_rate, total_steps=steps * cfg.epochs,
            warmup_steps=steps * cfg.warmup_epochs, weight_decay=cfg.weight_decay,
            label_smoothing=cfg.label_smoothing, mixed_precision=cfg.mixed_precision,
        )
    if cfg.verbose:
        model.summary(print_fn=logger.info)
    model.fit(
        train_ds, epochs=cfg.epochs, steps_per_epoch=steps, validation_data=val_ds,
        callbacks=list(callbacks), verbose=cfg.verbose,
    )

    if cfg.mixed_precision:  # export float32: the label job runs on CPUs too
        exported = build_model(input_shape=params.mel_shape, n_classes=n_classes, arch=cfg.arch)
        exported.set_weights(model.get_weights())
        return exported
    return model


@dataclasses.dataclass(frozen=True)
class _Data:
    """What :func:`train` learns about ``--data`` before any work.

    Attributes
    ----------
    metadata : transforms.metadata.DatasetMetadata
    dataset_version : str
        :func:`transforms.metadata.dataset_version` of the data dir.
    has_validation : bool
        The data has a non-empty validation split.
    """

    metadata: Any
    dataset_version: str
    has_validation: bool

    def eval_split(self, preferred: str) -> str | None:
        """``preferred`` when it has shards, else ``validation`` when there is one, else ``None``."""
        if self.metadata.shard_names(preferred):
            return preferred
        return "validation" if self.has_validation else None


def train(cfg: TrainConfig, *, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train, evaluate and export one model.

    Parameters
    ----------
    cfg : TrainConfig
        Options.
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks, run after the built-in ones (checkpointing, logging) at every hook.

    Returns
    -------
    dict
        Summary: ``model_dir``, ``model_version``, ``epochs_run`` (epoch indexes trained by this
        process; a resumed run starts after the last checkpointed epoch), ``metrics`` (headline),
        ``seconds``.
    """
    import keras

    from transforms.storage import write_json_atomic

    start = time.time()
    data = _check_data(cfg)
    keras.utils.set_random_seed(cfg.seed)
    strategy = make_strategy(cfg.strategy)
    chief = _is_chief(strategy)
    if not chief:  # non-chief workers write their copies to a scratch dir
        cfg = dataclasses.replace(cfg, model_dir=os.path.join(cfg.model_dir, ".workers", str(os.getpid())))
    os.makedirs(cfg.model_dir, exist_ok=True)

    epochs_run: list[int] = []
    cbs = _callbacks(cfg, has_validation=data.has_validation, record=epochs_run) + list(callbacks)
    _mark_resume(cfg, data_fingerprint=data.dataset_version)
    model, embedding_layer, extra = _fit(cfg, data=data, strategy=strategy, callbacks=cbs)
    history = _read_history(os.path.join(cfg.model_dir, "history.csv"))
    metrics = _evaluate(cfg, model, data=data, history=history)
    if chief:
        write_json_atomic(os.path.join(cfg.model_dir, "metrics.json"), metrics)
    card = _export(cfg, model, data=data, metrics=metrics, embedding_layer=embedding_layer,
                   extra={"epochs_completed": len(history.get("epoch", [])), **extra})
    summary = {
        "model_dir": cfg.model_dir,
        "model_version": card.model_version,
        "epochs_run": epochs_run,
        "metrics": card.metrics,
        "seconds": round(time.time() - start, 1),
    }
    logger.info("training summary: %s", json.dumps(summary))
    return summary


def _check_data(cfg: TrainConfig) -> _Data:
    """Check the options, the data's ``metadata.json``, a resumed run's data and the backbone, before any work.

    Raises
    ------
    ValueError, FileNotFoundError
        With the problems found.
    """
    from training import data, export
    from transforms.metadata import read_metadata

    problems = config_problems(cfg)
    if problems:
        raise ValueError("; ".join(problems))
    metadata = read_metadata(cfg.data)
    version = export.dataset_version(cfg.data)
    check_resume(cfg, data_fingerprint=version)
    params = metadata.spectrogram
    logger.info(
        "data %s: %s shards, %d labels, mel %s, train segments %d",
        cfg.data, metadata.format, len(metadata.labels), params.mel_shape, data.split_size(metadata, "train"),
    )
    if cfg.backbone:  # fail before any work: wrong front end, or weights not installed
        from training import backbone

        backbone.check_ready(params, backbone=cfg.backbone)
    has_validation = bool(metadata.shard_names("validation")) and data.split_size(metadata, "validation") != 0
    return _Data(metadata=metadata, dataset_version=version, has_validation=has_validation)


def _fit(cfg: TrainConfig, *, data: _Data, strategy: Any, callbacks: Sequence[Any]) -> tuple[Any, str, dict]:
    """Train the model ``cfg`` asks for: -> (float32 model to export, its embedding layer, extra model.json fields)."""
    if cfg.backbone:
        from training import backbone

        with strategy.scope():
            return backbone.fit(cfg, metadata=data.metadata, callbacks=callbacks)
    from training.model import EMBEDDING_LAYER

    model = _fit_cnn(cfg, metadata=data.metadata, strategy=strategy, has_validation=data.has_validation,
                     callbacks=callbacks)
    return model, EMBEDDING_LAYER, {}


def _evaluate(cfg: TrainConfig, model: Any, *, data: _Data, history: dict[str, list]) -> dict[str, Any]:
    """Plot the curves and evaluate on the evaluation split: -> the contents of ``metrics.json``."""
    from training import evaluate, plots

    files = {"training_curves_png": plots.plot_history(history, path=os.path.join(cfg.model_dir, "training_curves.png"))}
    metrics: dict[str, Any] = {}
    split = data.eval_split(cfg.eval_split)
    if split:
        pred = evaluate.predict_split(model, cfg.data, metadata=data.metadata, split=split,
                                      batch_size=_inference_batch(cfg))
        if len(pred["probs"]):
            metrics = evaluate.evaluate_predictions(
                pred["probs"], pred["label_index"], pred["track_id"], labels=data.metadata.labels
            )
            metrics["split"] = split
            files.update(evaluate.write_evaluation(cfg.model_dir, metrics, labels=data.metadata.labels))
    else:
        logger.warning("no test or validation split in %s: metrics.json holds no evaluation", cfg.data)
    metrics.update(
        data=cfg.data, data_fingerprint=data.dataset_version,
        history=history, files={k: os.path.basename(v) for k, v in files.items()},
    )
    return metrics


def _inference_batch(cfg: TrainConfig) -> int:
    """Segments per model call for evaluation here and, through ``model.json``, for the label job."""
    if cfg.backbone:
        from training import backbone

        return backbone.INFERENCE_BATCH
    return DEFAULT_INFERENCE_BATCH_SIZE


def _export(cfg: TrainConfig, model: Any, *, data: _Data, metrics: dict[str, Any], embedding_layer: str,
            extra: dict[str, Any]) -> Any:
    """Write ``model-<sha256>.keras`` and ``model.json`` (last) to the model dir; -> the :class:`ModelCard`."""
    from training import evaluate, export

    return export.save_model_dir(
        cfg.model_dir, model=model, metadata=data.metadata, data_dir=cfg.data,
        embedding_layer=embedding_layer,
        metrics=evaluate.headline(metrics) if "track" in metrics else {},
        extra={"training": dataclasses.asdict(cfg), **extra}, inference_batch_size=_inference_batch(cfg),
    )


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options and train (the ``genreflow train`` entry point); returns the summary."""
    return train(parse_args(argv))


def _report(summary: dict[str, Any]) -> Iterator[str]:
    m = summary["metrics"]
    if m:
        yield (f"{m['split']}: track accuracy {m['track_accuracy']:.3f}, balanced {m['track_balanced_accuracy']:.3f}; "
               f"segment accuracy {m['segment_accuracy']:.3f}")
    yield f"wrote {summary['model_dir']} (model version {summary['model_version']}) in {summary['seconds']} s"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prints a short summary; exit code 2 on unusable data."""
    return run_command("genreflow train", run, argv, report=_report)


if __name__ == "__main__":
    from genreflow.logs import configure_logging

    configure_logging()
    sys.exit(main())
