"""Measured speed-vs-accuracy points (STLM Fig. 1 on this device): batch-1 latency from the benchmarks, pixel AUROC
from the run records of the same profile and dataset, parameters counted from the models."""

from __future__ import annotations

from pathlib import Path


def measured_points(runs_dir: str | Path, dataset: str, profile: str = "cpu", runs: int = 3, warmup: int = 1,
                    device: str = "cpu"):
    """One row per method: ``method``, ``latency_ms`` (median, batch 1), ``pixel_auroc`` (mean over the finished
    runs of that method's own recipe, profile and dataset; NaN without runs), ``categories``, ``params_m``,
    ``image_size``."""
    import pandas as pd

    from stlm_core.baselines.bench import bench_patchcore
    from stlm_core.runs import load_runs, recipe_runs
    from stlm_core.stlm.bench import bench_stlm

    frame = recipe_runs(load_runs(runs_dir))  # the profile's own recipe, not the ablation variants
    rows = []
    for method, label, bench in (("stlm", f"STLM ({profile})", lambda: bench_stlm(profile, runs=runs, warmup=warmup,
                                                                                   device=device)),
                                 ("patchcore", f"PatchCore ({profile})",
                                  lambda: bench_patchcore(profile, runs=runs, warmup=warmup, device=device))):
        result = bench()
        mine = frame[(frame["method"] == method) & (frame["dataset"] == dataset) & (frame["profile"] == profile)] \
            if len(frame) else frame
        params = result["parameters"].get("total") or result["parameters"].get("backbone")
        rows.append({"method": label, "latency_ms": result["latency"]["median_ms"],
                     "pixel_auroc": float(mine["pixel_auroc"].mean()) * 100 if len(mine) else float("nan"),
                     "categories": int(mine["category"].nunique()) if len(mine) else 0,
                     "params_m": params / 1e6 if params else None, "image_size": result["image_size"],
                     "threads": result["latency"]["threads"]})
    return pd.DataFrame(rows)
