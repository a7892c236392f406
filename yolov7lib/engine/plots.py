"""Plots of a training run: the per-epoch curves (results.png) and the label distribution (labels.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolov7lib.engine.runs import read_results


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(results_csv: str | Path, out: str | Path) -> Path:
    """Losses and validation metrics per epoch from a run's results.csv."""
    plt = _pyplot()
    rows = read_results(results_csv)
    epochs = [int(r["epoch"]) + 1 for r in rows]
    panels = [
        ("box_loss", "box loss"), ("obj_loss", "objectness loss"), ("cls_loss", "classification loss"),
        ("precision", "precision"), ("recall", "recall"), ("map50", "mAP@0.5"), ("map", "mAP@0.5:0.95"),
        ("lr1", "learning rate (weights)"),
    ]  # fmt: skip
    fig, axes = plt.subplots(2, 4, figsize=(14, 6), tight_layout=True)
    for ax, (key, title) in zip(axes.ravel(), panels, strict=True):
        ax.plot(epochs, [float(r[key]) for r in rows], marker=".", linewidth=1.5)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    out = Path(out)
    fig.savefig(out, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return out


def plot_labels(labels: np.ndarray, names: list[str], out: str | Path) -> Path:
    """Instances per class and the distribution of box centres and sizes (normalised xywh labels)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), tight_layout=True)
    classes = labels[:, 0].astype(int) if len(labels) else np.zeros(0, int)
    counts = np.bincount(classes, minlength=len(names))
    axes[0].bar(range(len(names)), counts)
    axes[0].set_xticks(range(len(names)), names, rotation=90 if len(names) > 10 else 0)
    axes[0].set_ylabel("instances")
    if len(labels):
        axes[1].hist2d(labels[:, 1], labels[:, 2], bins=40, range=[[0, 1], [0, 1]], cmap="Blues")
        axes[2].hist2d(labels[:, 3], labels[:, 4], bins=40, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[1].set(xlabel="x", ylabel="y", title="box centres")
    axes[2].set(xlabel="width", ylabel="height", title="box sizes")
    out = Path(out)
    fig.savefig(out, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return out
