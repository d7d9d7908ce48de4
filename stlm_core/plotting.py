"""Figures for the notebooks: dataset galleries and anomaly-map overlays.

Functions return a ``matplotlib.figure.Figure`` and never call ``plt.show()`` or change the backend, so
notebooks display them inline and scripts can save them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def dataset_gallery(rows: list[tuple[str, list]], title: str = "", thumb: float = 1.6) -> Figure:
    """One row per entry of ``rows`` (:func:`stlm_core.data.gallery.gallery_rows`: ``(label, panels)``, a panel
    ``(role, sample)`` with role ``normal`` / ``defect`` / ``mask``): the images, each defect followed by its
    ground-truth mask (white = anomalous)."""
    n_cols = max((len(panels) for _, panels in rows), default=1)
    fig = Figure(figsize=(thumb * n_cols, thumb * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for row, (label, panels) in enumerate(rows):
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(panels):
                ax.axis("off")
                continue
            role, sample = panels[col]
            if role == "mask":
                ax.imshow(sample.mask, cmap="gray", vmin=0, vmax=1)
                ax.set_title("mask", fontsize=8)
            else:
                ax.imshow(sample.image)
                ax.set_title("normal" if role == "normal" else sample.defect, fontsize=8)
        axes[row][0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def jet_overlay(image: np.ndarray, anomaly_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """STLM's Fig. 4 style: the map min-max normalised, coloured with JET, blended over the image, renormalised.

    ``image`` uint8 (H, W, 3); ``anomaly_map`` float (h, w), resized to (H, W). Returns float RGB in [0, 1].
    """
    import cv2
    from matplotlib import colormaps

    if anomaly_map.shape != image.shape[:2]:
        anomaly_map = cv2.resize(anomaly_map.astype(np.float32), image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    span = float(anomaly_map.max() - anomaly_map.min())
    normalised = (anomaly_map - anomaly_map.min()) / (span if span > 0 else 1.0)
    heat = colormaps["jet"](normalised)[..., :3]
    blended = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * heat
    return blended / blended.max()


def anomaly_map_grid(rows: list[dict], map_names: list[str], thumb: float = 1.8,
                     points: list[dict | None] | None = None) -> Figure:
    """One row per example: input, ground truth, then each named map as a JET overlay.

    ``rows``: dicts with ``image`` (uint8 H, W, 3), ``mask`` ({0,1} H, W), ``title`` and one float map per
    name in ``map_names``. ``points`` (optional, per row): ``{"map": name, "xy": (N, 2) pixel coordinates,
    "labels": (N,) 1 = positive / 0 = negative}`` drawn on that map's panel (green +, red x).
    """
    n_cols = 2 + len(map_names)
    fig = Figure(figsize=(thumb * n_cols, thumb * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, row in enumerate(rows):
        panels = [("input", row["image"]), ("ground truth", row["mask"])]
        panels += [(name, jet_overlay(row["image"], row[name])) for name in map_names]
        for c, (title, picture) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            marks = (points or [None] * len(rows))[r]
            if marks is not None and title == marks["map"] and len(marks["xy"]):
                xy, labels = np.asarray(marks["xy"], float), np.asarray(marks["labels"])
                ax.scatter(*xy[labels == 1].T, marker="+", c="lime", s=40, linewidths=1.5)
                ax.scatter(*xy[labels == 0].T, marker="x", c="red", s=30, linewidths=1.5)
        axes[r][0].set_ylabel(row.get("title", ""), fontsize=8)
    return fig


def scale_points(xy, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """Pixel points (N, 2) as (x, y) in an image of ``from_shape`` (H, W) -> the same points in a resized copy of
    ``to_shape`` (h, w): x scales with the widths, y with the heights (images need not be square)."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    (height, width), (to_height, to_width) = from_shape, to_shape
    return xy * np.array([to_width / width, to_height / height])


def prompt_marks(record: dict, to_shape: tuple[int, int], map_name: str) -> dict:
    """The prompt points of one CLIP-SAM image record (``extras.json``: points in original pixels, ``shape`` =
    the original (H, W)) as :func:`anomaly_map_grid` marks on a panel of ``to_shape``."""
    components = record.get("components", [])
    xy = [p for c in components for p in c["points"]]
    labels = np.array([lab for c in components for lab in c["labels"]], dtype=int)
    return {"map": map_name, "xy": scale_points(xy, tuple(record["shape"]), to_shape), "labels": labels}


def _panel(ax, picture, title: str, cmap: str | None = None, **kwargs) -> None:
    ax.imshow(picture, cmap=cmap, **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def _resized(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    array = np.asarray(array, dtype=np.float32)
    return array if array.shape == shape else cv2.resize(array, shape[::-1], interpolation=cv2.INTER_NEAREST)


PPG_ARRAYS = ("ppg_region", "ppg_ring", "ppg_similarity")


def ppg_detail_figure(rows: list[dict], thumb: float = 1.7) -> Figure | None:
    """CLIP-SAM Fig. 3 style, one row per example of :func:`example_rows` (a CLIP-SAM run with ``"CLIP map"``):
    input + ground-truth contour, the CLIP map, S_a (extreme region, white), N_a (the ring where negatives are
    drawn), the SAM co-feature similarity to the positives, and the chosen points (green + positive, red x
    negative) on the input. ``None`` when the run saved no PPG arrays (made before they were recorded)."""
    if not rows or any(name not in rows[0].get("arrays", {}) for name in PPG_ARRAYS):
        return None
    titles = ["input + ground truth", "CLIP map", "S_a (extreme region)", "N_a (ring)", "SAM similarity",
              "points"]
    fig = Figure(figsize=(thumb * len(titles), thumb * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), len(titles), squeeze=False)
    for r, row in enumerate(rows):
        shape = row["mask"].shape
        arrays = {name: _resized(row["arrays"][name], shape) for name in PPG_ARRAYS}
        _panel(axes[r][0], row["image"], titles[0])
        axes[r][0].contour(row["mask"], levels=[0.5], colors="yellow", linewidths=0.8)
        _panel(axes[r][1], row["CLIP map"], titles[1], cmap="jet")
        _panel(axes[r][2], arrays["ppg_region"], titles[2], cmap="gray", vmin=0, vmax=1)
        _panel(axes[r][3], arrays["ppg_ring"], titles[3], cmap="gray", vmin=0, vmax=1)
        _panel(axes[r][4], arrays["ppg_similarity"], titles[4], cmap="viridis")
        _panel(axes[r][5], row["image"], titles[5])
        marks = prompt_marks(row["record"], shape, "points") if row.get("record") else None
        if marks is not None and len(marks["xy"]):
            xy, labels = marks["xy"], marks["labels"]
            axes[r][5].scatter(*xy[labels == 1].T, marker="+", c="lime", s=40, linewidths=1.5)
            axes[r][5].scatter(*xy[labels == 0].T, marker="x", c="red", s=30, linewidths=1.5)
        axes[r][0].set_ylabel(row.get("title", ""), fontsize=8)
    return fig


def cps_stages_figure(rows: list[dict], thumb: float = 1.7) -> Figure | None:
    """CLIP-SAM Fig. 4 style, one row per example of :func:`example_rows` (a CLIP-SAM run with ``"fused"``):
    input, ground truth, the SAM mask of every cascade stage (M1, M2, M3: union over the prompt sets) and the
    fused final map. ``None`` when the run saved no stage masks."""
    if not rows:
        return None
    stages = sorted((n for n in rows[0].get("arrays", {}) if n.startswith("cps_stage")), key=lambda n: int(n[9:]))
    if not stages:
        return None
    titles = ["input", "ground truth", *[f"M{name[9:]} (stage {name[9:]})" for name in stages], "fused map"]
    fig = Figure(figsize=(thumb * len(titles), thumb * len(rows) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows), len(titles), squeeze=False)
    for r, row in enumerate(rows):
        shape = row["mask"].shape
        _panel(axes[r][0], row["image"], titles[0])
        _panel(axes[r][1], row["mask"], titles[1], cmap="gray", vmin=0, vmax=1)
        for c, name in enumerate(stages, start=2):
            _panel(axes[r][c], _resized(row["arrays"][name], shape), titles[c], cmap="gray", vmin=0, vmax=1)
        _panel(axes[r][-1], jet_overlay(row["image"], row["fused"]), titles[-1])
        axes[r][0].set_ylabel(row.get("title", ""), fontsize=8)
    return fig


def loss_curves(logs: dict, terms: tuple[str, ...] = ("loss", "plain", "denoise", "focal", "l1"),
                width: float = 3.2) -> Figure:
    """One panel per run (title = key): each loss term of a run's loss log (a ``DataFrame`` with ``step`` and the
    terms, as :func:`stlm_core.runs.read_losses` returns it) against the optimisation step."""
    fig = Figure(figsize=(width * len(logs), 2.6), layout="constrained")
    axes = fig.subplots(1, len(logs), squeeze=False, sharey=True)[0]
    for ax, (title, log) in zip(axes, logs.items()):
        for term in terms:
            if term in log:
                ax.plot(log["step"], log[term], lw=1, label=term)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    return fig


def speed_accuracy_scatter(points, x: str, y: str, size: str | None = None, label: str = "method",
                           xlabel: str = "", ylabel: str = "", title: str = "") -> Figure:
    """STLM Fig. 1 style: one circle per row of ``points`` (a DataFrame) at (x, y), area proportional to
    ``size`` where known; rows without a size are drawn hollow at a fixed size."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for _, row in points.iterrows():
        known = size is not None and row.get(size) == row.get(size) and row.get(size) is not None
        ax.scatter(row[x], row[y], s=(float(row[size]) * 8 if known else 120),
                   facecolors=("tab:blue" if known else "none"), edgecolors="tab:blue", alpha=0.6)
        ax.annotate(str(row[label]), (row[x], row[y]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title, fontsize=10)
    return fig


def learning_curves_figure(curves, metric: str = "pixel_auroc", width: float = 4.2) -> Figure:
    """One panel per category of a learning-study frame (rows: variant, category, step, ``<map>.<metric>``):
    the FA map solid, the w/o-FA map dashed, one colour per variant; chance (0.5) dotted."""
    from matplotlib import colormaps

    categories = list(dict.fromkeys(curves["category"]))
    variants = list(dict.fromkeys(curves["variant"]))
    colours = {v: colormaps["tab10"](i % 10) for i, v in enumerate(variants)}
    fig = Figure(figsize=(width * len(categories), 3.2), layout="constrained")
    axes = fig.subplots(1, len(categories), squeeze=False, sharey=True)[0]
    for ax, category in zip(axes, categories):
        for variant in variants:
            part = curves[(curves["category"] == category) & (curves["variant"] == variant)].sort_values("step")
            for map_name, style in (("fa", "-"), ("wo_fa", "--")):
                column = f"{map_name}.{metric}"
                if column in part and part[column].notna().any():
                    ax.plot(part["step"], part[column], style, color=colours[variant], lw=1.3,
                            label=f"{variant} ({'FA' if map_name == 'fa' else 'w/o FA'})")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(category, fontsize=9)
        ax.set_xlabel("training step")
    axes[0].set_ylabel(metric.replace("_", " "))
    axes[-1].legend(fontsize=6, loc="lower right")
    return fig


def denoising_figure(curves, width: float = 4.0) -> Figure:
    """Three panels over training steps from a learning-study frame's ``probe.*`` columns (one line per variant and
    category, categories told apart by line style): the share of a pseudo-anomaly's feature change the denoising
    stream D undoes (1 = removed, 0 = copied), the share the plain stream P keeps (1 = reproduced as its target
    asks, 0 = removed as well), and the P-vs-D distance inside the pseudo-anomalies divided by the distance
    outside them (the w/o-FA map's contrast on anomalies of the kind the model was trained on). Shares below -1
    are drawn at -1."""
    from matplotlib import colormaps

    variants = list(dict.fromkeys(curves["variant"]))
    categories = list(dict.fromkeys(curves["category"]))
    colours = {v: colormaps["tab10"](i % 10) for i, v in enumerate(variants)}
    styles = dict(zip(categories, ["-", "--", ":", "-."] * len(categories)))
    fig = Figure(figsize=(3 * width, 3.2), layout="constrained")
    undone_ax, kept_ax, contrast_ax = fig.subplots(1, 3)
    for (variant, category), part in curves.groupby(["variant", "category"], sort=False):
        part = part.sort_values("step")
        if "probe.undone" not in part or part["probe.undone"].isna().all():
            continue
        label = variant if len(categories) == 1 else f"{variant}, {category}"
        style = dict(color=colours[variant], ls=styles[category], lw=1.3, label=label)
        undone_ax.plot(part["step"], part["probe.undone"].clip(lower=-1.0), **style)
        if "probe.reproduced" in part:
            kept_ax.plot(part["step"], part["probe.reproduced"].clip(lower=-1.0), **style)
        contrast_ax.plot(part["step"], part["probe.streams_inside"] / part["probe.streams_outside"].clip(lower=1e-12),
                         **style)
    for ax, title, reference in ((undone_ax, "D: share of the pseudo-anomaly removed", 0),
                                 (kept_ax, "P: share of the pseudo-anomaly kept", 0),
                                 (contrast_ax, "1 - cos(P, D): inside / outside", 1)):
        ax.axhline(reference, color="grey", lw=0.8, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
    undone_ax.legend(fontsize=6)
    return fig


def ablation_bars(table, column: str, title: str = "") -> Figure:
    """Horizontal bars of one column of an ablation table (rows = ablations), zero line marked."""
    fig = Figure(figsize=(6, 0.3 * len(table) + 1.2), layout="constrained")
    ax = fig.subplots()
    values = table[column]
    ax.barh(list(values.index)[::-1], list(values.values)[::-1],
            color=["tab:green" if v >= 0 else "tab:red" for v in list(values.values)[::-1]])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(column)
    ax.set_title(title, fontsize=10)
    return fig
