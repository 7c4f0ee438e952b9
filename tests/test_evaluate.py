"""Evaluation metrics against hand computations (plain numpy; TensorFlow is never imported)."""

import subprocess
import sys

import numpy as np
import pytest

from training.evaluate import classification_metrics, confusion_matrix, evaluate_predictions, track_probabilities

LABELS = ["a", "b", "c", "d"]  # "d" never occurs and is never predicted
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, n_classes=4)
    expected = np.array([[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 4], [0, 1], n_classes=4)
    with pytest.raises(ValueError, match="length"):
        confusion_matrix([0, 1], [0], n_classes=4)


def test_classification_metrics_by_hand():
    m = classification_metrics(Y_TRUE, Y_PRED, labels=LABELS)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recalls a=2/3, b=1/2, c=1 (d has no items and does not count)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precisions a=2/2, b=1/2, c=1/2; F1 a=0.8, b=0.5, c=2/3; d neither occurs nor is predicted
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}
    assert m["confusion_matrix"][0] == [2, 1, 0, 0]


def test_classification_metrics_agree_with_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200))
    m = classification_metrics(y_true, y_pred, labels=LABELS)
    assert m["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    assert m["balanced_accuracy"] == pytest.approx(sklearn_metrics.balanced_accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y_true, y_pred, average="macro"))
    recall = sklearn_metrics.recall_score(y_true, y_pred, average=None)
    assert [m["per_class"][k]["recall"] for k in LABELS] == pytest.approx(recall)


def test_track_probabilities_are_mean_segment_probabilities():
    # two tracks, segments interleaved; t2 comes first
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [0.3, 0.7]])
    tracks = ["t2", "t1", "t2", "t1", "t1"]
    labels = np.array([0, 1, 0, 1, 1])
    ids, mean, track_labels = track_probabilities(probs, tracks, labels)
    assert list(ids) == ["t2", "t1"]
    np.testing.assert_allclose(mean, [[0.75, 0.25], [0.3, 0.7]])
    np.testing.assert_array_equal(track_labels, [0, 1])


def test_evaluate_predictions_track_level_differs_from_segment_level():
    # track t1 (label 0): segments predict 0, 0, 1 -> track predicts 0; t2 (label 1): 1, 0 (weakly)
    probs = np.array([[0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [0.55, 0.45]])
    m = evaluate_predictions(probs, np.array([0, 0, 0, 1, 1]), ["t1", "t1", "t1", "t2", "t2"], labels=["x", "y"])
    assert m["segment"]["accuracy"] == pytest.approx(3 / 5)
    assert m["segment"]["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["track"]["n"] == 2
    assert m["track"]["accuracy"] == 1.0  # t2 mean = [0.325, 0.675]


def test_metrics_module_does_not_import_tensorflow():
    code = "import sys, training.evaluate; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
