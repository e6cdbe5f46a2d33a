"""Loss and validation curves from a run's ``metrics.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SKIP = {"epoch", "stage", "seconds", "lr"}


def plot_curves(metrics_csv: Path, out: Path) -> Path:
    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for key in rows[-1]:
        if key in SKIP:
            continue
        values = [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in rows]
        (ax_val if key.startswith("val_") else ax_loss).plot(epochs, values, marker=".",
                                                             label=key)
    ssl_end = sum(r["stage"] == "ssl" for r in rows)
    for ax in (ax_loss, ax_val):
        if ssl_end:
            ax.axvspan(0.5, ssl_end + 0.5, color="0.92", label="self-supervised warm-up")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    ax_loss.set_title("training losses (per-epoch mean)")
    ax_val.set_title("validation (held-out training sources)")
    ax_val.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
