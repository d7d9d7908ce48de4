"""Reading finished runs back: one run's record, its loss log and extras, and every run as one table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stlm_core.errors import StlmError
from stlm_core.fileio import read_json
from stlm_core.runs.layout import (CONFIG_FILE, EXTRAS_FILE, FINISHED_FILE, LOSSES_FILE, METRICS_FILE,
                                   PROVENANCE_KEY, SECONDARY_KEY, config_id, is_finished, recorded_provenance)


def read_run(run_dir: str | os.PathLike) -> dict:
    """``{"run_dir", "config", "metrics", "secondary", "map", "provenance"}`` of a run with ``metrics.json``."""
    run_dir = Path(run_dir)
    record = read_json(run_dir / METRICS_FILE)
    if not isinstance(record, dict):
        raise StlmError(f"{run_dir / METRICS_FILE} does not hold a JSON object; delete it and rerun the experiment.")
    provenance = record.pop(PROVENANCE_KEY, {}) or {}
    secondary = record.pop(SECONDARY_KEY, {}) or {}
    primary = record.pop("map", None)
    config = read_json(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).exists() else {}
    return {"run_dir": run_dir, "config": config, "metrics": record, "secondary": secondary, "map": primary,
            "provenance": provenance}


def read_losses(run_dir: str | os.PathLike):
    """``losses.jsonl`` as a ``pandas.DataFrame`` (one row per optimisation step; empty if there is none)."""
    import pandas as pd

    path = Path(run_dir) / LOSSES_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["epoch", "step", "loss"])
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def read_extras(run_dir: str | os.PathLike) -> list[dict]:
    """The per-image JSON records of a run (``extras.json``), or ``[]``."""
    path = Path(run_dir) / EXTRAS_FILE
    return read_json(path) if path.is_file() else []


def _flatten(prefix: str, obj: Any, out: dict) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = obj


def load_runs(runs_dir: str | os.PathLike, run_dirs: list[str | os.PathLike] | None = None):
    """Every finished run under ``runs_dir`` (or exactly ``run_dirs``) as a ``pandas.DataFrame``, one row per run.

    Columns: ``method``, ``dataset``, ``category``, ``run_id``, ``profile``, ``map`` (the primary map's name),
    ``weights`` (JSON of the identities), ``random_init``, ``synthetic``, ``seed``, ``device``, ``threads``,
    ``git_commit``, ``run_dir``, ``recorded`` (``""`` for a run made here, else when and on which machine the
    unpacked recorded run was measured, see :mod:`stlm_core.runs.archive`), ``changed`` (comma-separated config fields that differ from the profile's recipe,
    seed and schedule aside; ``""`` = the profile as is), ``train_steps``, the primary map's metrics (``pixel_auroc`` ...), every secondary map's as
    ``<name>.<metric>`` (e.g. ``wo_fa.pixel_auroc``), and timings as ``time.<phase>``. Unfinished runs are skipped.
    """
    import pandas as pd

    from stlm_core.configs import changed_from_profile

    if run_dirs is None:
        runs_dir = Path(runs_dir)
        candidates = sorted(p.parent for p in runs_dir.rglob(FINISHED_FILE)) if runs_dir.is_dir() else []
    else:
        candidates = [Path(d) for d in run_dirs]
    rows = []
    for run_dir in candidates:
        if not is_finished(run_dir):
            continue
        run = read_run(run_dir)
        cfg, prov = run["config"], run["provenance"]
        ds = prov.get("dataset") if isinstance(prov.get("dataset"), dict) else {}
        weights = prov.get("weights")
        row: dict[str, Any] = {
            "method": cfg.get("method"), "dataset": cfg.get("dataset"), "category": cfg.get("category"),
            "run_id": config_id(cfg), "profile": prov.get("profile"), "map": run["map"],
            "weights": json.dumps(weights, sort_keys=True) if isinstance(weights, dict) else weights,
            "random_init": prov.get("random_init"),
            "synthetic": ds.get("synthetic", cfg.get("dataset") == "synthetic"),
            "seed": prov.get("seed"), "device": prov.get("device"), "threads": prov.get("threads"),
            "git_commit": prov.get("git_commit"), "run_dir": str(run_dir),
            "recorded": _recorded_label(run_dir),
            "changed": ",".join(changed_from_profile(cfg.get("method"), cfg.get("config") or {})),
            "train_steps": (cfg.get("config") or {}).get("train_steps"),
        }
        row.update(run["metrics"])
        for name, metrics in run["secondary"].items():
            _flatten(name, metrics, row)
        for key, value in (prov.get("timings") or {}).items():
            row[f"time.{key}"] = value
        rows.append(row)
    id_cols = ["method", "dataset", "category", "run_id"]
    if not rows:
        return pd.DataFrame(columns=id_cols)
    return pd.DataFrame(rows).sort_values(id_cols, kind="stable").reset_index(drop=True)


def _recorded_label(run_dir: Path) -> str:
    recorded = recorded_provenance(run_dir)
    if recorded is None:
        return ""
    gflops = f", {recorded['gflops']:.0f}-GFLOPS machine" if recorded.get("gflops") else ""
    return f"recorded {recorded.get('recorded_utc', '?')[:10]}{gflops}"


def recipe_runs(frame):
    """The runs of each profile's own recipe (no ablation or variant: ``changed == ""``), one per method, dataset,
    category and profile: the longest schedule (``train_steps``; none = the profile's full schedule), then the
    latest run id order. Frames without the ``changed`` column are returned as they are."""
    if "changed" not in frame or frame.empty:
        return frame
    own = frame[frame["changed"].fillna("") == ""]
    steps = own["train_steps"].astype(float).fillna(float("inf")) if "train_steps" in own else 0
    own = own.assign(_steps=steps).sort_values("_steps", kind="stable")
    return own.drop_duplicates(["method", "dataset", "category", "profile"], keep="last").drop(columns="_steps")
