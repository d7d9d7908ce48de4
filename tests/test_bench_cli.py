"""``stlm bench``: metrics benchmark output, model targets dispatching to the method packages."""

from __future__ import annotations

import json
import sys
import types

import pytest

from stlm_core.cli import main
from stlm_core.metrics.benchmark import synthetic_category


def test_synthetic_category_shapes_and_regions():
    from stlm_core.metrics import label_regions

    maps, masks = synthetic_category(n_images=10, size=64, n_regions=8, seed=1)
    assert maps.shape == masks.shape == (10, 64, 64) and maps.dtype.name == "float32"
    assert set(masks.reshape(-1).tolist()) == {0, 1}
    assert 1 <= label_regions(masks)[1].size <= 12
    assert not masks.reshape(10, -1).any(axis=1).all()  # some normal images


SMALL = ["bench", "metrics", "--size", "64", "--images", "12", "--regions", "8"]


def test_bench_metrics_json_measures_only_ours_by_default(capsys):
    assert main([*SMALL, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["data"]["images"] == 12 and result["data"]["size"] == 64
    assert set(result["metrics"]) >= {"pixel_auroc", "pixel_aupro", "pixel_ap", "pixel_f1_max", "image_auroc"}
    assert result["peak_memory_mb"] > 0 and result["total_s"] > 0
    assert result["process_peak_memory_mb"] >= result["peak_memory_mb"]
    approx = result["aupro_thresholds"]
    assert approx["num_thresholds"] == 200
    assert approx["deviation_points"] == pytest.approx(100 * (approx["value"] - approx["exact"]))
    assert result["compare"] is False
    assert "skipped" in result["sklearn"] and "skipped" in result["anomalib"]
    assert result["target"]["applies"] is False
    assert "bench metrics" in captured.err  # the progress bar is on stderr


def test_bench_metrics_compare_agrees_with_sklearn(capsys):
    assert main([*SMALL, "--json", "--compare", "--quiet"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["compare"] is True and captured.err == ""
    for key in ("pixel_auroc", "pixel_ap", "pixel_f1_max"):  # tiny input: scikit-learn runs and agrees
        assert result["sklearn"][key]["abs_diff_vs_ours"] < 1e-9, key
    anomalib = result["anomalib"]
    assert "skipped" in anomalib or anomalib["pixel_aupro"]["value"] is not None


def test_bench_metrics_text(capsys):
    assert main(["bench", "metrics", "--size", "32", "--images", "6", "--regions", "4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC data" in out and "pixel AUPRO (exact)" in out and "peak memory" in out
    assert "peak memory of the whole process" in out and "not run (--compare)" in out


def test_bench_model_targets_call_the_method_benchmarks(monkeypatch, capsys):
    calls = {}

    def fake(profile, image_size=None, runs=10, warmup=2):
        calls.update(profile=profile, image_size=image_size, runs=runs, warmup=warmup)
        return {"model": "fake", "parameters": {"total": 123456}, "latency": {"median_ms": 1.5,
                                                                          "times_ms": list(range(10))}}

    monkeypatch.setitem(sys.modules, "stlm_core.stlm.bench", types.SimpleNamespace(bench_stlm=fake))
    monkeypatch.setitem(sys.modules, "stlm_core.clipsam.bench", types.SimpleNamespace(bench_clipsam=fake))
    assert main(["bench", "stlm", "--profile", "smoke", "--image-size", "128", "--runs", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"]["total"] == 123456
    assert calls == {"profile": "smoke", "image_size": 128, "runs": 4, "warmup": 2}
    assert main(["bench", "clipsam", "--profile", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "total: 123,456" in out and "times_ms: [10 values]" in out
    assert calls["profile"] == "cpu" and calls["runs"] == 3 and calls["warmup"] == 1


def test_bench_model_unknown_profile_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "stlm", "--profile", "huge"])
    assert "invalid choice" in capsys.readouterr().err


def test_bench_machine_prints_a_positive_gflops_figure():
    """In its own process: the 2048x2048 products would otherwise stay resident in this one and hide a later
    test's allocation from the peak-memory reading."""
    import subprocess

    command = [sys.executable, "-m", "stlm_core", "bench", "machine", "--runs", "1"]
    result = json.loads(subprocess.run(command + ["--json"], capture_output=True, text=True, check=True).stdout)
    assert result["gflops"] > 0 and result["size"] == 2048 and result["threads"] >= 1
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "GFLOPS (torch fp32 2048x2048 matmul" in text
