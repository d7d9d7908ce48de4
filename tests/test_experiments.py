"""Run-or-reuse helpers behind the notebooks, and the figure helpers they use."""

from __future__ import annotations

import numpy as np

from stlm_core.experiments import clipsam_run, stlm_run
from stlm_core.plotting import anomaly_map_grid, load_test_examples
from stlm_core.results import load_runs


def test_stlm_run_trains_once_then_reuses(mvtec_tree, tmp_path):
    root = mvtec_tree(n_train=4, n_good=2, defects={"scratch": 2}, size=64)
    runs = tmp_path / "runs"
    first = stlm_run("mvtec", root, "widget", profile="smoke", runs_dir=runs, epochs=1)
    stamp = (first / "checkpoint.pt").stat().st_mtime_ns
    assert stlm_run("mvtec", root, "widget", profile="smoke", runs_dir=runs, epochs=1) == first
    assert (first / "checkpoint.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    other = stlm_run("mvtec", root, "widget", profile="smoke", runs_dir=runs, epochs=1, seed=1)
    assert other != first  # a different config gets its own run directory
    frame = load_runs(runs)
    assert len(frame) == 2 and set(frame["method"]) == {"stlm"}
    rows = load_test_examples(first / "maps.npz", {"w/o FA": "tlm_maps", "FA": "fa_maps"})
    assert rows and all(r["mask"].any() for r in rows)
    assert rows[0]["FA"].shape == rows[0]["mask"].shape
    fig = anomaly_map_grid(rows, ["w/o FA", "FA"])
    assert len(fig.axes) == 4 * len(rows)


def test_clipsam_run_reuses_finished_run(mvtec_tree, tmp_path):
    root = mvtec_tree(n_train=1, n_good=2, defects={"scratch": 2}, size=64)
    runs = tmp_path / "runs"
    first = clipsam_run("mvtec", root, "widget", profile="smoke", runs_dir=runs)
    assert (first / "maps.npz").is_file() and (first / "prompts.json").is_file()
    stamp = (first / "metrics.json").stat().st_mtime_ns
    assert clipsam_run("mvtec", root, "widget", profile="smoke", runs_dir=runs) == first
    assert (first / "metrics.json").stat().st_mtime_ns == stamp
    metrics = load_runs(runs).iloc[0]
    assert 0.0 <= metrics["pixel_auroc"] <= 1.0 and bool(metrics["random_init"])
    maps = np.load(first / "maps.npz")
    assert maps["maps"].shape == maps["masks"].shape
