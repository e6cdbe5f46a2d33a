"""Pictures of evaluation results: per-class bars, confusion matrices, worst queries."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def per_class_bars(values: dict[str, dict[str, float]], metric: str, out: Path) -> Path:
    """Grouped bars: one group per class, one bar per encoder (``values[encoder][class]``)."""
    encoders = list(values)
    classes = sorted({c for per in values.values() for c in per})
    width = 0.8 / max(len(encoders), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(classes)), 4))
    x = np.arange(len(classes))
    for i, enc in enumerate(encoders):
        heights = [values[enc].get(c, np.nan) for c in classes]
        bars = ax.bar(x + i * width - 0.4 + width / 2, heights, width, label=enc)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, [c.replace("_", " ") for c in classes], rotation=20, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per class")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confusion_plot(matrix: np.ndarray, labels: list[str], title: str, out: Path) -> Path:
    """Row-normalised confusion matrix with counts in each cell."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2.5, 1.0 * len(labels) + 2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [label.replace("_", " ") for label in labels]
    ax.set_xticks(range(len(labels)), names, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of row")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
