"""Benchmark of the pixel metrics on a synthetic MVTec-sized category (``stlm bench metrics``).

The data are synthetic (labelled as such in the output): ``n_images`` float32 anomaly maps of ``size`` squared
with about ``n_regions`` ground-truth regions of varied size and shape (blobs with radii from 3 % to 30 % of
the side, thin scratches) on ~70 % of the images, and maps = smooth noise + a blurred, partly detected
signal. The target: 83 images at 1024 px, all pixel metrics together in <= 10 s and <= 6 GiB peak
memory on 2 cores. Peak memory is the process's peak resident set size during the computation (inputs
included), reset just before it (Linux ``/proc/self/clear_refs``).
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
# float32 maps at 256 px (83 images): ~85 bytes; decides whether --sklearn auto runs it.
SKLEARN_BYTES_PER_PIXEL = 90


def _sklearn_metrics(masks: np.ndarray, maps: np.ndarray, ours: dict) -> dict:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    from stlm_core.bench import current_memory_mb, peak_memory_mb, reset_peak_memory

    y, s = masks.reshape(-1), maps.reshape(-1)

    def f1_max() -> float:
        precision, recall, _ = precision_recall_curve(y, s)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.nanmax(2 * precision * recall / (precision + recall)))

    out: dict[str, Any] = {}
    for name, key, fn in (("roc_auc_score", "pixel_auroc", lambda: roc_auc_score(y, s)),
                          ("average_precision_score", "pixel_ap", lambda: average_precision_score(y, s)),
                          ("precision_recall_curve f1_max", "pixel_f1_max", f1_max)):
        base = current_memory_mb()
        reset_peak_memory()
        start = time.perf_counter()
        value = float(fn())
        elapsed = time.perf_counter() - start
        peak = peak_memory_mb()
        out[key] = {"function": name, "time_s": elapsed, "peak_memory_mb": peak,
                    "extra_memory_mb": None if base is None else peak - base, "value": value,
                    "abs_diff_vs_ours": abs(value - ours[key])}
    return out


def bench_metrics(size: int = 1024, n_images: int = 83, n_regions: int = 60, seed: int = 0,
                  sklearn: str = "auto", num_thresholds: int = 200) -> dict:
    """Time and peak memory of :func:`stlm_core.metrics.compute_metrics` on :func:`synthetic_category` data.

    ``sklearn``: ``"yes"``, ``"no"`` or ``"auto"`` (run scikit-learn's AUROC/AP/F1 for comparison when its
    estimated memory, ~``SKLEARN_BYTES_PER_PIXEL`` bytes per pixel, is below half the available memory).
    """
    from stlm_core.bench import current_memory_mb, environment_info, peak_memory_mb, reset_peak_memory
    from stlm_core.metrics import compute_metrics
    from stlm_core.metrics.pro import label_regions

    if sklearn not in ("auto", "yes", "no"):
        raise ValueError(f"sklearn must be 'auto', 'yes' or 'no', got {sklearn!r}")
    start = time.perf_counter()
    maps, masks = synthetic_category(n_images, size, n_regions, seed)
    generate_s = time.perf_counter() - start
    _, region_sizes = label_regions(masks)
    n_pixels = int(maps.size)
    n_positive = int(np.count_nonzero(masks))

    base = current_memory_mb()
    reset_peak_memory()
    timings: dict[str, float] = {}
    metrics = compute_metrics(masks=masks, maps=maps, aupro_thresholds=num_thresholds, timings=timings)
    peak = peak_memory_mb()
    approx = metrics.pop("pixel_aupro_thresholds")
    exact_pixel_s = sum(timings[k] for k in ("validate_s", "pixel_sort_s", "pixel_auroc_s", "pixel_ap_f1_s",
                                             "regions_s", "pixel_aupro_s"))
    result: dict[str, Any] = {
        "data": {
            "kind": "synthetic (stlm_core.metrics.benchmark.synthetic_category)", "seed": seed,
            "images": n_images, "size": size, "pixels": n_pixels, "positive_pixels": n_positive,
            "positive_fraction": n_positive / n_pixels, "regions": int(region_sizes.size),
            "region_size_px": {"min": int(region_sizes.min()), "median": float(np.median(region_sizes)),
                               "max": int(region_sizes.max())},
            "anomalous_images": int(np.count_nonzero(masks.reshape(n_images, -1).any(axis=1))),
            "maps_dtype": str(maps.dtype), "inputs_mb": (maps.nbytes + masks.nbytes) / 2**20,
            "generate_s": generate_s,
        },
        "metrics": metrics,
        "timings_s": timings,
        "pixel_metrics_s": exact_pixel_s,
        "total_s": timings["total_s"],
        "peak_memory_mb": peak,
        "memory_before_mb": base,
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
    }
    available = _available_memory_mb()
    need_mb = n_pixels * SKLEARN_BYTES_PER_PIXEL / 2**20
    run_sklearn = sklearn == "yes" or (sklearn == "auto" and available is not None and need_mb < available / 2)
    if run_sklearn:
        result["sklearn"] = _sklearn_metrics(masks, maps, metrics)
    else:
        result["sklearn"] = {"skipped": f"--sklearn {sklearn}: estimated {need_mb:.0f} MiB needed, "
                                        f"{available if available is not None else float('nan'):.0f} MiB available"}
    result["environment"] = environment_info("cpu")
    return result
