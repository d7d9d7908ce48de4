"""Both methods through the same entry-point shape and the same run record: run-or-reuse, one reader for both,
oracle maps through the real run path, and the figure helpers the notebooks use."""

from __future__ import annotations

import numpy as np
import pytest

from stlm_core.experiments import clipsam_run, stlm_run
from stlm_core.plotting import anomaly_map_grid, prompt_marks, scale_points
from stlm_core.runs import example_rows
from stlm_core.runs import load_maps, load_runs, read_extras, read_run


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
    rows = example_rows(first, {"w/o FA": "wo_fa", "FA": "fa"})
    assert rows and all(r["mask"].any() for r in rows)
    assert rows[0]["FA"].shape == rows[0]["mask"].shape
    fig = anomaly_map_grid(rows, ["w/o FA", "FA"])
    assert len(fig.axes) == 4 * len(rows)


def test_both_methods_write_the_same_record_layout(mvtec_tree, tmp_path):
    root = mvtec_tree(n_train=4, n_good=2, defects={"scratch": 2}, size=64)
    runs = tmp_path / "runs"
    stlm = stlm_run("mvtec", root, "widget", profile="smoke", runs_dir=runs, epochs=1)
    clip = clipsam_run("mvtec", root, "widget", profile="smoke", runs_dir=runs)
    assert clipsam_run("mvtec", root, "widget", profile="smoke", runs_dir=runs) == clip  # reused
    frame = load_runs(runs).set_index("method")
    assert frame.loc["stlm", "map"] == "fa" and frame.loc["clipsam", "map"] == "cascade"
    assert {"wo_fa.pixel_auroc", "clip.pixel_auroc"} <= set(frame.columns)
    for run_dir, names in ((stlm, ["fa", "wo_fa"]), (clip, ["cascade", "clip"])):
        maps = load_maps(run_dir)
        assert maps.names == names
        assert all(m.shape == maps.masks.shape and m.dtype == np.float32 for m in maps.maps.values())
        assert {"config.json", "data.json", "finished.json", "metrics.json", "maps.npz"} <= {
            p.name for p in run_dir.iterdir()}
        assert read_run(run_dir)["config"]["data"]["name"] == "mvtec"
    assert len(read_extras(clip)) == 4 and read_extras(stlm) == []


@pytest.mark.parametrize("method", ["stlm", "clipsam"])
def test_oracle_maps_through_the_real_run_path(method, mvtec_tree, tmp_path, monkeypatch):
    """Maps equal to the masks score 1.0 and inverted maps 0.0 AUROC through each method's evaluation and record."""
    root = mvtec_tree(n_train=4, n_good=2, defects={"scratch": 2}, size=64)
    results = {}
    from stlm_core.clipsam.pipeline import ClipSamPipeline

    real = ClipSamPipeline.run_dataset
    for flavour in ("oracle", "inverted"):
        if method == "stlm":
            import stlm_core.stlm.evaluation as evaluation

            def fake_infer(model, images, config, *args, flavour=flavour, **kwargs):
                from stlm_core.data.spec import DataSpec
                from stlm_core.data.transforms import resize_mask

                masks = np.stack([resize_mask(s.mask, config.eval_size)
                                  for s in DataSpec("mvtec", root, "widget").open("test")]).astype(np.float32)
                maps = masks if flavour == "oracle" else 1 - masks
                scores = maps.reshape(len(maps), -1).max(1)
                return {"fa": maps, "wo_fa": maps}, {"fa": scores, "wo_fa": scores}

            monkeypatch.setattr(evaluation, "infer", fake_infer)
            run = stlm_run("mvtec", root, "widget", profile="smoke", runs_dir=tmp_path / flavour, epochs=1)
        else:
            def fake_run_dataset(self, samples, class_name, progress=True, flavour=flavour):
                out = real(self, samples, class_name, progress=False)
                maps = out["masks"].astype(np.float32)
                out["maps"] = out["clip_maps"] = maps if flavour == "oracle" else 1 - maps
                out["scores"] = out["clip_scores"] = out["maps"].reshape(len(maps), -1).max(1)
                return out

            monkeypatch.setattr(ClipSamPipeline, "run_dataset", fake_run_dataset)
            run = clipsam_run("mvtec", root, "widget", profile="smoke", runs_dir=tmp_path / flavour)
        results[flavour] = read_run(run)["metrics"]
    assert results["oracle"]["pixel_auroc"] == 1.0 and results["oracle"]["pixel_aupro"] == pytest.approx(1.0)
    assert results["oracle"]["image_auroc"] == 1.0
    assert results["inverted"]["pixel_auroc"] == 0.0


def test_prompt_points_land_in_place_on_non_square_images():
    """A point at the right edge of a 100 x 300 (H x W) image stays at the right edge of a 64 x 64 panel."""
    xy = scale_points([[299, 50], [0, 99]], from_shape=(100, 300), to_shape=(64, 64))
    np.testing.assert_allclose(xy, [[299 * 64 / 300, 50 * 64 / 100], [0, 99 * 64 / 100]])
    record = {"shape": [100, 300], "components": [{"points": [[150, 50]], "labels": [1]},
                                                  {"points": [[30, 10]], "labels": [0]}]}
    marks = prompt_marks(record, (64, 64), "CLIP map")
    np.testing.assert_allclose(marks["xy"], [[32, 32], [6.4, 6.4]])
    assert marks["labels"].tolist() == [1, 0] and marks["map"] == "CLIP map"


def test_patchcore_baseline_writes_the_same_record(mvtec_tree, tmp_path):
    from stlm_core.experiments import patchcore_run

    root = mvtec_tree(n_train=4, n_good=2, defects={"scratch": 2}, size=64)
    run = patchcore_run("mvtec", root, "widget", profile="smoke", runs_dir=tmp_path / "runs")
    assert patchcore_run("mvtec", root, "widget", profile="smoke", runs_dir=tmp_path / "runs") == run
    record = read_run(run)
    assert record["map"] == "patchcore" and 0.0 <= record["metrics"]["pixel_auroc"] <= 1.0
    assert record["provenance"]["weights"]["backbone"].startswith("efficientnet_lite0@")
    assert load_maps(run).maps["patchcore"].shape == (4, 64, 64)  # 2 good + 2 defective test images
