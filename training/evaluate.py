"""Evaluation per segment and per track, and the ``genreflow evaluate`` command.

The metric functions are plain numpy (no TensorFlow), tested against hand computations:

* :func:`confusion_matrix`, :func:`classification_metrics` (accuracy, balanced accuracy, macro F1,
  per-class precision / recall / F1 / support);
* :func:`track_probabilities` averages segment probabilities per track (a track's prediction is the
  argmax of its mean segment probabilities).

``genreflow evaluate --data DIR --model-dir DIR [--split test]`` scores an existing model dir on any
featurized data whose spectrogram parameters match the model's (otherwise
:class:`transforms.spec.ParameterMismatchError`), writing ``metrics.json``, confusion matrices (JSON
and PNG) to ``--output`` (default ``MODEL_DIR/evaluation-<split>-<dataset version>``, the version being
:func:`transforms.metadata.dataset_version` of the data, recorded as ``data_fingerprint``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "classification_metrics",
    "track_probabilities",
    "evaluate_predictions",
    "predict_split",
    "write_evaluation",
    "evaluate_model_dir",
    "headline",
    "metrics_labels",
    "run",
    "main",
]

logger = logging.getLogger(__name__)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) label pairs.

    Parameters
    ----------
    y_true, y_pred : np.ndarray, int, shape (n,)
        Label indexes in ``[0, n_classes)``.
    n_classes : int
        Size of the vocabulary.

    Returns
    -------
    np.ndarray, int64, shape (n_classes, n_classes)
        ``cm[i, j]`` = number of items of true label ``i`` predicted as ``j``.
    """
    y_true = np.asarray(y_true, np.int64).ravel()
    y_pred = np.asarray(y_pred, np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    for name, v in (("y_true", y_true), ("y_pred", y_pred)):
        if v.size and (v.min() < 0 or v.max() >= n_classes):
            raise ValueError(f"{name} has label indexes outside [0, {n_classes})")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, *, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1 and per-class precision/recall of a labelling.

    Conventions (as scikit-learn's defaults): precision of a class never predicted is 0; balanced
    accuracy is the mean recall over classes that occur in ``y_true``; macro F1 averages F1 over
    classes that occur in ``y_true`` or ``y_pred``.

    Parameters
    ----------
    y_true, y_pred : np.ndarray, int, shape (n,)
        Label indexes.
    labels : sequence of str
        Vocabulary (``labels[i]`` names index ``i``).

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``per_class`` ({label:
        {precision, recall, f1, support}}; recall is ``None`` for a class with no items) and
        ``confusion_matrix`` (list of lists, rows = true).
    """
    n_classes = len(labels)
    cm = confusion_matrix(y_true, y_pred, n_classes=n_classes)
    n = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n_classes), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n_classes), where=denom > 0)
    occurs = support > 0
    seen = occurs | (predicted > 0)
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]) if occurs[i] else None,
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "balanced_accuracy": float(recall[occurs].mean()) if occurs.any() else float("nan"),
        "macro_f1": float(f1[seen].mean()) if seen.any() else float("nan"),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def track_probabilities(
    probs: np.ndarray, track_ids: Sequence[str], label_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean segment probabilities per track.

    Parameters
    ----------
    probs : np.ndarray, float, shape (n_segments, n_classes)
        Segment class probabilities.
    track_ids : sequence of str, length n_segments
        Track of each segment.
    label_index : np.ndarray, int, shape (n_segments,)
        True label of each segment (constant within a track).

    Returns
    -------
    tracks : np.ndarray of str, shape (n_tracks,)
        Track ids in order of first appearance.
    mean_probs : np.ndarray, float64, shape (n_tracks, n_classes)
    track_labels : np.ndarray, int64, shape (n_tracks,)
    """
    probs = np.asarray(probs, np.float64)
    track_ids = np.asarray(track_ids, dtype=object)
    label_index = np.asarray(label_index, np.int64)
    tracks, first, inverse = np.unique(track_ids.astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first)  # first-appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inverse = rank[inverse.ravel()]
    sums = np.zeros((len(tracks), probs.shape[1]))
    np.add.at(sums, inverse, probs)
    counts = np.bincount(inverse, minlength=len(tracks))
    mean = sums / counts[:, None]
    track_labels = label_index[first[order]]
    mixed = np.bincount(inverse, weights=(label_index != track_labels[inverse]), minlength=len(tracks))
    if mixed.any():
        logger.warning("%d tracks have segments with different labels; using the first", int((mixed > 0).sum()))
    return tracks[order], mean, track_labels


def evaluate_predictions(
    probs: np.ndarray, label_index: np.ndarray, track_ids: Sequence[str], *, labels: Sequence[str]
) -> dict[str, Any]:
    """Segment-level and track-level metrics of segment probabilities.

    Parameters
    ----------
    probs : np.ndarray, float, shape (n_segments, n_labels)
    label_index : np.ndarray, int, shape (n_segments,)
        True labels, as indexes into ``labels`` (the model's vocabulary).
    track_ids : sequence of str
    labels : sequence of str

    Returns
    -------
    dict
        ``{"segment": classification_metrics(...), "track": classification_metrics(...)}``.
    """
    probs = np.asarray(probs)
    segment = classification_metrics(label_index, probs.argmax(axis=1), labels=labels)
    _, track_probs, track_true = track_probabilities(probs, track_ids, label_index)
    track = classification_metrics(track_true, track_probs.argmax(axis=1), labels=labels)
    return {"segment": segment, "track": track}


def predict_split(
    model: Any, data_dir: str, *, metadata: Any, split: str, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Probabilities of every labeled segment of a split, streamed in shard order.

    Returns
    -------
    dict
        ``probs`` float32 ``(n, n_labels)``, ``label_index`` int64 ``(n,)`` (data vocabulary),
        ``track_id`` str ``(n,)``.
    """
    from training import data

    probs, labels, tracks = [], [], []
    for batch in data.segments(data_dir, metadata=metadata, split=split).batch(batch_size):
        keep = batch["label_index"].numpy() >= 0
        if not keep.any():
            continue
        probs.append(np.asarray(model(batch["mel"].numpy()[keep], training=False)))
        labels.append(batch["label_index"].numpy()[keep])
        tracks.extend(t.decode("utf-8") for t in batch["track_id"].numpy()[keep])
    n_out = int(model.outputs[0].shape[-1])
    return {
        "probs": np.concatenate(probs) if probs else np.zeros((0, n_out), np.float32),
        "label_index": np.concatenate(labels) if labels else np.zeros((0,), np.int64),
        "track_id": np.asarray(tracks, dtype=object),
    }


def write_evaluation(out_dir: str, metrics: dict[str, Any], *, labels: Sequence[str], prefix: str = "") -> dict[str, str]:
    """Write confusion matrices (JSON + PNG) for both levels; returns ``{name: path}``.

    ``out_dir`` is a local directory.  File names: ``{prefix}confusion_{segment|track}.{json,png}``.
    """
    from training import plots
    from transforms.storage import write_json_atomic

    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for level in ("segment", "track"):
        cm = np.asarray(metrics[level]["confusion_matrix"])
        base = os.path.join(out_dir, f"{prefix}confusion_{level}")
        write_json_atomic(base + ".json", {"labels": list(labels), "rows": "true", "columns": "predicted", "matrix": cm.tolist()})
        plots.plot_confusion(cm, labels=labels, path=base + ".png", title=f"{level}s ({int(cm.sum())})")
        written[f"confusion_{level}_json"] = base + ".json"
        written[f"confusion_{level}_png"] = base + ".png"
    return written


def evaluate_model_dir(
    model_dir: str, data_dir: str, *, split: str = "test", batch_size: int = 256, loaded: Any = None
) -> dict[str, Any]:
    """Evaluate a model dir on one split of a featurized dataset.

    Raises
    ------
    transforms.spec.ParameterMismatchError
        When the data's spectrogram parameters (or labels) do not match the model's.
    """
    from training import export
    from transforms.metadata import dataset_version, read_metadata
    from transforms.model_dir import load_model_dir

    metadata = read_metadata(data_dir)
    loaded = loaded or load_model_dir(model_dir)
    to_model = export.check_data_compatible(loaded.card, metadata)
    pred = predict_split(loaded.model, data_dir, metadata=metadata, split=split, batch_size=batch_size)
    if len(pred["probs"]) == 0:
        raise ValueError(f"the {split!r} split of {data_dir} has no labeled segments to evaluate")
    metrics = evaluate_predictions(
        pred["probs"], to_model[pred["label_index"]], pred["track_id"], labels=loaded.card.labels
    )
    metrics.update(
        split=split,
        data=data_dir,
        data_fingerprint=dataset_version(data_dir),
        model_version=loaded.card.model_version,
    )
    return metrics


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The few numbers that go into ``model.json``."""
    return {
        f"{level}_{name}": metrics[level][name]
        for level in ("track", "segment")
        for name in ("accuracy", "balanced_accuracy", "macro_f1")
    } | {"split": metrics.get("split")}


def _parser() -> argparse.ArgumentParser:
    from transforms.spec import SPLITS

    p = argparse.ArgumentParser(
        prog="genreflow evaluate",
        description="Evaluate a genreflow model dir on featurized data (per segment and per track).",
    )
    p.add_argument("--data", required=True, help="featurize output directory (with metadata.json)")
    p.add_argument("--model-dir", required=True, help="model dir written by `genreflow train`")
    p.add_argument("--split", choices=SPLITS, default="test", help="split to evaluate (default test)")
    p.add_argument(
        "--output",
        default=None,
        help="local directory for metrics.json and confusion matrices "
        "(default MODEL_DIR/evaluation-SPLIT-VERSION, VERSION identifying the data: 16 hex digits of the "
        "SHA-256 of its metadata.json)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="segments per forward pass")
    return p


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options, evaluate, write the files; returns the metrics dict."""
    from transforms.storage import write_json_atomic

    from genreflow.args import parse_args_strict

    args, _ = parse_args_strict(_parser(), argv)
    metrics = evaluate_model_dir(args.model_dir, args.data, split=args.split, batch_size=args.batch_size)
    out = args.output or os.path.join(
        args.model_dir, f"evaluation-{args.split}-{metrics['data_fingerprint']}"
    )
    metrics["files"] = write_evaluation(out, metrics, labels=metrics_labels(metrics))
    write_json_atomic(os.path.join(out, "metrics.json"), metrics)
    metrics["output"] = out
    return metrics


def metrics_labels(metrics: dict[str, Any]) -> list[str]:
    """Label names in vocabulary order, from a metrics dict."""
    return list(metrics["track"]["per_class"])


def _report(m: dict[str, Any]) -> Iterator[str]:
    for level in ("segment", "track"):
        r = m[level]
        yield (f"{level:8s} n={r['n']:6d} accuracy={r['accuracy']:.3f} "
               f"balanced_accuracy={r['balanced_accuracy']:.3f} macro_f1={r['macro_f1']:.3f}")
    yield f"wrote {m['output']}/metrics.json"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prints a short summary; exit code 2 on mismatched parameters (a ValueError)."""
    from genreflow.args import run_command

    return run_command("genreflow evaluate", run, argv, report=_report)


if __name__ == "__main__":
    from genreflow.logs import configure_logging

    configure_logging()
    sys.exit(main())
