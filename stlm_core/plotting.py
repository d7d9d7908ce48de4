"""Figures for the notebooks: dataset galleries and anomaly-map overlays.

Functions return a ``matplotlib.figure.Figure`` and never call ``plt.show()`` or change the backend, so
notebooks display them inline and scripts can save them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _pick_evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def dataset_gallery(dataset: str, root: str | Path, categories: list[str], n_normal: int = 2,
                    n_defect: int = 3, thumb: float = 1.6) -> Figure:
    """One row per category: ``n_normal`` normal training images, then ``n_defect`` defective test images, each
    followed by its ground-truth mask (white = anomalous). Defective images are spread over defect types."""
    from stlm_core.data import open_dataset

    n_cols = n_normal + 2 * n_defect
    fig = Figure(figsize=(thumb * n_cols, thumb * len(categories) + 0.4), layout="constrained")
    axes = fig.subplots(len(categories), n_cols, squeeze=False)
    for row, category in enumerate(categories):
        train = open_dataset(dataset, root, category, "train")
        test = open_dataset(dataset, root, category, "test")
        by_defect: dict[str, list[int]] = {}
        for i, record in enumerate(test.records):
            if record.label == 1:
                by_defect.setdefault(record.defect, []).append(i)
        order = [idx for group in zip(*by_defect.values()) for idx in group] if by_defect else []
        panels = [("normal", train[i]) for i in range(min(n_normal, len(train)))]
        for i in order[:n_defect]:
            sample = test[i]
            panels += [(sample.defect, sample), ("mask", sample)]
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(panels):
                ax.axis("off")
                continue
            title, sample = panels[col]
            if title == "mask":
                ax.imshow(sample.mask, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(sample.image)
            ax.set_title(title, fontsize=8)
        axes[row][0].set_ylabel(category, fontsize=9)
    fig.suptitle(f"{dataset}: normal training images, defective test images and their masks", fontsize=10)
    return fig
