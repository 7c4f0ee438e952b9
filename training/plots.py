"""PNG figures for the model dir: confusion matrices and training curves (matplotlib, Agg)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["plot_confusion", "plot_history"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, *, labels: Sequence[str], path: str, title: str = "") -> str:
    """Confusion matrix as a heat map, rows normalised to recall, raw counts printed.

    Parameters
    ----------
    cm : np.ndarray, int, shape (n_labels, n_labels)
        Counts, rows = true label, columns = predicted label.
    labels : sequence of str
        Names of the rows/columns.
    path : str
        PNG file to write (local path).
    title : str
        Figure title.
    """
    plt = _pyplot()
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if frac[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(history: Mapping[str, Sequence[float]], *, path: str) -> str:
    """Loss and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : mapping of str to sequence of float
        Keras ``History.history``-style: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``.
    path : str
        PNG file to write.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_") + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
