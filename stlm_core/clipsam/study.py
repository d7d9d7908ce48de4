"""CLIP-SAM ablations (the paper's CS-T2 structure) as data: named config overrides on top of a profile.

Each entry changes one open choice of the method; the book runs every entry on the same images and scores it with
the same code, next to the ``default`` row.
"""

from __future__ import annotations

from typing import Any

ABLATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "CPS: 1 stage": {"cps_stages": 1},
    "CPS: 2 stages": {"cps_stages": 2},
    "fusion: SAM only": {"fusion": "sam"},
    "fusion: additive": {"fusion": "additive"},
    "PPG: tau 0.3": {"tau": 0.3},
    "PPG: tau 0.7": {"tau": 0.7},
    "PPG: k = 1": {"k_positive": 1, "k_negative": 1},
    "PPG: k = 5": {"k_positive": 5, "k_negative": 5},
    "PPG: ring kernel 15": {"ring_kernel": 15},
    "PPG: ring kernel 35": {"ring_kernel": 35},
    "PPG: co-feature max": {"cofeature": "max"},
    "PPG: one global region": {"per_component": False},
    "CPS: best-component box": {"box_mode": "best_component"},
}


def ablation_table(runs, names: dict[str, list[str]], metrics: dict[str, str]):
    """Mean metric (in %) per ablation over its runs, with the difference to ``default``. ``runs``: a
    ``load_runs`` frame; ``names``: ablation -> run directories (as strings)."""
    import pandas as pd

    rows = {}
    for name, run_dirs in names.items():
        part = runs[runs["run_dir"].isin(run_dirs)]
        rows[name] = {label: 100 * part[key].mean() for key, label in metrics.items()}
    table = pd.DataFrame(rows).T
    for label in metrics.values():
        table[f"{label} delta"] = table[label] - table.loc["default", label]
    table.insert(0, "categories", [len(v) for v in names.values()])
    return table.round(2)
