"""Benchmark of the pixel metrics on a synthetic MVTec-sized category (``stlm bench metrics``).

The data are synthetic (labelled as such in the output): ``n_images`` float32 anomaly maps of ``size`` squared
with about ``n_regions`` ground-truth regions of varied size and shape (blobs with radii from 3 % to 30 % of
the side, thin scratches) on ~70 % of the images, and maps = smooth noise + a blurred, partly detected
signal. The target: 83 images at 1024 px, all pixel metrics together in <= 10 s and <= 6 GiB peak
memory on 2 cores. Peak memory is the process's peak resident set size during the computation (inputs
included), reset just before it (Linux ``/proc/self/clear_refs``); the whole process's peak is reported too.
Only our metrics are measured by default; ``compare=True`` (``--compare``) adds scikit-learn's AUROC / AP / F1-max
and, if installed, anomalib's AUPRO on the same data, with their differences from ours.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

TARGET_TIME_S = 10.0
TARGET_PEAK_GIB = 6.0


def synthetic_category(n_images: int = 83, size: int = 1024, n_regions: int = 60, seed: int = 0,
                       anomalous_fraction: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic anomaly maps (float32 (N, S, S)) and masks (uint8 {0, 1}, same shape); see the module doc."""
    import cv2

    rng = np.random.default_rng(seed)
    n_anomalous = max(1, min(n_images - 1, round(anomalous_fraction * n_images)))
    owners = np.r_[np.arange(min(n_anomalous, n_regions)),
                   rng.integers(0, n_anomalous, max(0, n_regions - n_anomalous))]
    maps = np.empty((n_images, size, size), np.float32)
    masks = np.zeros((n_images, size, size), np.uint8)
    low = max(2, size // 32)
    sigma = max(1.0, size / 256)
    for i in range(n_images):
        mask = masks[i]
        for _ in range(int(np.sum(owners == i))):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))  # may touch the border
            if rng.random() < 0.25:  # thin scratch
                angle = rng.uniform(0, np.pi)
                half = rng.uniform(0.03, 0.2) * size
                d = np.array([np.cos(angle), np.sin(angle)]) * half
                p1 = tuple(int(v) for v in np.array(centre) - d)
                p2 = tuple(int(v) for v in np.array(centre) + d)
                cv2.line(mask, p1, p2, 1, thickness=max(1, int(rng.uniform(0.002, 0.006) * size)))
            else:  # blob, radius log-uniform from 3 % to 30 % of the side
                axes = tuple(max(1, int(np.exp(rng.uniform(np.log(0.03), np.log(0.3))) * size * f))
                             for f in rng.uniform(0.5, 1.0, 2))
                cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
        noise = cv2.resize(rng.standard_normal((low, low)).astype(np.float32), (size, size),
                           interpolation=cv2.INTER_CUBIC)
        noise += 0.3 * rng.standard_normal((size, size), dtype=np.float32)
        if mask.any():
            signal = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
            noise += float(rng.uniform(1.0, 5.0)) * signal
        maps[i] = noise
    return maps, masks


def _available_memory_mb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# Extra peak memory of scikit-learn 1.9's roc_auc_score / precision_recall_curve per pixel, measured with
# float32 maps at 256 px (83 images): ~85 bytes; decides whether the comparison runs.
SKLEARN_BYTES_PER_PIXEL = 90
# anomalib's AUPRO (torch tensors, per-region curves): a rough upper estimate, not measured here.
ANOMALIB_BYTES_PER_PIXEL = 200


class _Steps:
    """A tqdm bar over the named steps of the benchmark (stderr), and the whole process's peak memory across the
    resets of the per-step peak counter."""

    def __init__(self, names: list[str], progress: bool) -> None:
        import sys

        from tqdm import tqdm

        self.bar = tqdm(total=len(names), desc="bench metrics", unit="step", file=sys.stderr, disable=not progress,
                        leave=False)
        self.process_peak_mb = 0.0

    def start(self, name: str) -> None:
        """Show ``name`` as the running step."""
        self.bar.set_postfix_str(name)

    def done(self) -> None:
        self.bar.update(1)

    def reset_peak(self) -> None:
        """Keep the peak so far, then reset the counter (so the next step's peak is its own)."""
        from stlm_core.bench import peak_memory_mb, reset_peak_memory

        self.process_peak_mb = max(self.process_peak_mb, peak_memory_mb())
        reset_peak_memory()

    def close(self) -> float:
        """Close the bar; the whole process's peak memory in MiB."""
        from stlm_core.bench import peak_memory_mb

        self.bar.close()
        return max(self.process_peak_mb, peak_memory_mb())


def _sklearn_metrics(masks: np.ndarray, maps: np.ndarray, ours: dict, steps: _Steps) -> dict:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    from stlm_core.bench import current_memory_mb, peak_memory_mb

    y, s = masks.reshape(-1), maps.reshape(-1)

    def f1_max() -> float:
        precision, recall, _ = precision_recall_curve(y, s)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.nanmax(2 * precision * recall / (precision + recall)))

    out: dict[str, Any] = {}
    for name, key, fn in (("roc_auc_score", "pixel_auroc", lambda: roc_auc_score(y, s)),
                          ("average_precision_score", "pixel_ap", lambda: average_precision_score(y, s)),
                          ("precision_recall_curve f1_max", "pixel_f1_max", f1_max)):
        steps.start(f"scikit-learn {name}")
        base = current_memory_mb()
        steps.reset_peak()
        start = time.perf_counter()
        value = float(fn())
        elapsed = time.perf_counter() - start
        peak = peak_memory_mb()
        out[key] = {"function": name, "time_s": elapsed, "peak_memory_mb": peak,
                    "extra_memory_mb": None if base is None else peak - base, "value": value,
                    "abs_diff_vs_ours": abs(value - ours[key])}
        steps.done()
    return out


def _anomalib_aupro(masks: np.ndarray, maps: np.ndarray, ours: dict, steps: _Steps) -> dict:
    """anomalib's AUPRO (FPR limit 0.3) on the same data, when anomalib is installed."""
    import torch

    from stlm_core.bench import peak_memory_mb

    try:
        from anomalib.metrics.aupro import _AUPRO as AUPRO  # anomalib >= 2: the raw torchmetrics metric
    except ImportError:
        from anomalib.metrics import AUPRO  # anomalib 1.x
    steps.start("anomalib AUPRO")
    steps.reset_peak()
    start = time.perf_counter()
    metric = AUPRO(fpr_limit=0.3)
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks).int())
    value = float(metric.compute())
    out = {"pixel_aupro": {"function": f"{AUPRO.__module__}.{AUPRO.__name__}", "time_s": time.perf_counter() - start,
                           "peak_memory_mb": peak_memory_mb(), "value": value,
                           "abs_diff_vs_ours": abs(value - ours["pixel_aupro"])}}
    steps.done()
    return out


def _skip_reason(name: str, bytes_per_pixel: int, n_pixels: int) -> str | None:
    """Why a comparison is skipped (not installed, or its estimated memory is over half the available), or None."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        return f"{name} is not installed"
    available = _available_memory_mb()
    need_mb = n_pixels * bytes_per_pixel / 2**20
    if available is None or need_mb >= available / 2:
        shown = "unknown" if available is None else f"{available:.0f} MiB"
        return f"estimated {need_mb:.0f} MiB needed, {shown} available"
    return None


# (module, estimated bytes per pixel, steps, function) of each comparison library.
COMPARISONS = (("sklearn", SKLEARN_BYTES_PER_PIXEL, 3, _sklearn_metrics),
               ("anomalib", ANOMALIB_BYTES_PER_PIXEL, 1, _anomalib_aupro))


def _comparisons(masks: np.ndarray, maps: np.ndarray, ours: dict, steps: _Steps) -> dict:
    """scikit-learn's AUROC / AP / F1-max and anomalib's AUPRO on the same data, each where it fits in memory."""
    out: dict[str, Any] = {}
    for name, bytes_per_pixel, n_steps, fn in COMPARISONS:
        reason = _skip_reason(name, bytes_per_pixel, int(maps.size))
        if reason is None:
            try:
                out[name] = fn(masks, maps, ours, steps)
                continue
            except Exception as exc:  # a comparison library's failure must not lose our own measurements
                reason = f"failed: {type(exc).__name__}: {exc}"
        out[name] = {"skipped": reason}
        steps.bar.update(n_steps)
    return out


def _data_summary(maps: np.ndarray, masks: np.ndarray, region_sizes: np.ndarray, seed: int,
                  generate_s: float) -> dict:
    n_images, size = maps.shape[0], maps.shape[1]
    n_pixels, n_positive = int(maps.size), int(np.count_nonzero(masks))
    return {
        "kind": "synthetic (stlm_core.metrics.benchmark.synthetic_category)", "seed": seed,
        "images": n_images, "size": size, "pixels": n_pixels, "positive_pixels": n_positive,
        "positive_fraction": n_positive / n_pixels, "regions": int(region_sizes.size),
        "region_size_px": {"min": int(region_sizes.min()), "median": float(np.median(region_sizes)),
                           "max": int(region_sizes.max())},
        "anomalous_images": int(np.count_nonzero(masks.reshape(n_images, -1).any(axis=1))),
        "maps_dtype": str(maps.dtype), "inputs_mb": (maps.nbytes + masks.nbytes) / 2**20,
        "generate_s": generate_s,
    }


def bench_metrics(size: int = 1024, n_images: int = 83, n_regions: int = 60, seed: int = 0,
                  compare: bool = False, num_thresholds: int = 200, progress: bool = False) -> dict:
    """Time and peak memory of :func:`stlm_core.metrics.compute_metrics` on :func:`synthetic_category` data.

    ``compare``: also time scikit-learn's AUROC / AP / F1-max and, if installed, anomalib's AUPRO on the same data
    (each only when its estimated memory is below half the available memory). ``progress``: a bar over the steps
    on stderr. ``peak_memory_mb`` covers our metrics alone; ``process_peak_memory_mb`` the whole process
    (interpreter, data generation, metrics and comparisons).
    """
    from stlm_core.bench import current_memory_mb, environment_info, peak_memory_mb
    from stlm_core.metrics import compute_metrics
    from stlm_core.metrics.pro import label_regions

    names = ["generate data", "label regions", "our metrics"]
    if compare:
        names += [name for name, _, n_steps, _ in COMPARISONS for _ in range(n_steps)]
    steps = _Steps(names, progress)
    try:
        steps.start("generate data")
        start = time.perf_counter()
        maps, masks = synthetic_category(n_images, size, n_regions, seed)
        generate_s = time.perf_counter() - start
        steps.done()
        steps.start("label regions")
        _, region_sizes = label_regions(masks)
        steps.done()

        steps.start("our metrics")
        base = current_memory_mb()
        steps.reset_peak()
        timings: dict[str, float] = {}
        metrics = compute_metrics(masks=masks, maps=maps, aupro_thresholds=num_thresholds, timings=timings)
        peak = peak_memory_mb()
        steps.done()
        approx = metrics.pop("pixel_aupro_thresholds")
        comparison = _comparisons(masks, maps, metrics, steps) if compare else None
    finally:
        process_peak = steps.close()
    exact_pixel_s = sum(timings[k] for k in ("validate_s", "pixel_sort_s", "pixel_auroc_s", "pixel_ap_f1_s",
                                             "regions_s", "pixel_aupro_s"))
    not_requested = {"skipped": "not requested (--compare)"}
    return {
        "data": _data_summary(maps, masks, region_sizes, seed, generate_s),
        "metrics": metrics,
        "timings_s": timings,
        "pixel_metrics_s": exact_pixel_s,
        "total_s": timings["total_s"],
        "peak_memory_mb": peak,
        "memory_before_mb": base,
        "process_peak_memory_mb": process_peak,
        "aupro_thresholds": {
            "num_thresholds": num_thresholds, "value": approx, "exact": metrics["pixel_aupro"],
            "deviation_points": None if approx is None else 100.0 * (approx - metrics["pixel_aupro"]),
            "time_s": timings["pixel_aupro_thresholds_s"],
            "definition": "RD4AD/DeSTSeg-style compute_pro: evenly spaced thresholds, FPR < limit kept, "
                          "FPR rescaled by its largest kept value",
        },
        "target": {"time_s": TARGET_TIME_S, "peak_memory_gib": TARGET_PEAK_GIB,
                   "applies": size == 1024 and n_images == 83,
                   "met": timings["total_s"] <= TARGET_TIME_S and peak / 1024.0 <= TARGET_PEAK_GIB},
        "compare": compare,
        "sklearn": comparison["sklearn"] if comparison else not_requested,
        "anomalib": comparison["anomalib"] if comparison else not_requested,
        "environment": environment_info("cpu"),
    }
