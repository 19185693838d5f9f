"""The book's figure styles (matplotlib + seaborn), deterministic output."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from .data.sample import ArrayDataset, DatasetSpec

LEFT, RIGHT, CENTRE = "#1f77b4", "#d62728", "#2ca02c"


def setup() -> None:
    """Book-wide style; call once per notebook."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "svg.hashsalt": "landmark_study",
                         "image.interpolation": "nearest"})


def _joint_colours(spec: DatasetSpec) -> list[str]:
    cols = []
    for name in spec.keypoint_names:
        n = name.lower()
        if n.startswith(("l ", "left", "l_")) or " left" in n or n.endswith(" l"):
            cols.append(LEFT)
        elif n.startswith(("r ", "right", "r_")) or " right" in n or n.endswith(" r"):
            cols.append(RIGHT)
        else:
            cols.append(CENTRE)
    return cols


def draw_keypoints(ax, image: np.ndarray, keypoints: np.ndarray, visibility: np.ndarray, spec: DatasetSpec,
                   prediction: np.ndarray | None = None, title: str | None = None) -> None:
    """Image with ground truth (skeleton; filled = visible, hollow = invisible;
    blue = left, red = right) and optional predictions (white crosses joined to
    their ground truth)."""
    ax.imshow(image)
    cols = _joint_colours(spec)
    for a, b in spec.skeleton:
        ax.plot(keypoints[[a, b], 0], keypoints[[a, b], 1], "-", color="white", lw=0.8, alpha=0.7)
    for k, (x, y) in enumerate(keypoints):
        vis = visibility[k] > 0
        ax.scatter([x], [y], s=14, facecolors=cols[k] if vis else "none", edgecolors=cols[k], linewidths=1.0)
    if prediction is not None:
        ax.scatter(prediction[:, 0], prediction[:, 1], s=14, marker="x", color="white", linewidths=1.0)
        for k in range(len(keypoints)):
            if visibility[k] > 0:
                ax.plot([keypoints[k, 0], prediction[k, 0]], [keypoints[k, 1], prediction[k, 1]], "-",
                        color="yellow", lw=0.6)
    h, w = image.shape[:2]
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def gallery(ds: ArrayDataset, n: int = 8, cols: int = 8, predictions: np.ndarray | None = None,
            titles: Sequence[str] | None = None, suptitle: str | None = None, scale: float = 1.6):
    """A grid of samples with ground truth (and predictions) drawn."""
    n = min(n, len(ds))
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols, scale * rows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        s = ds[i]
        draw_keypoints(ax, s.image, s.keypoints, s.visibility, ds.spec,
                       None if predictions is None else predictions[i], titles[i] if titles else None)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def curves(histories: dict[str, list[dict]], key: str, ylabel: str | None = None, ax=None, title: str | None = None):
    """One line per named run history (mean over seeds when a name has several)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, hist in histories.items():
        steps = [h["step"] for h in hist if key in h]
        vals = [h[key] for h in hist if key in h]
        ax.plot(steps, vals, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or key)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
