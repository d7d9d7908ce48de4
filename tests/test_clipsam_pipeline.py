"""The whole CLIP-SAM pipeline on the smoke profile: maps of the image's shape, the empty-S_a rule, the CLI
(run records with valid metrics, adapters provenance) and the stage benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stlm_core.cli import main
from stlm_core.runs import load_maps, read_extras
from stlm_core.clipsam.clip_localiser import TrainingFreeLocaliser, build_clip
from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.clipsam.pipeline import ClipSamPipeline
from stlm_core.clipsam.sam_backend import build_sam

METRIC_KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap", "pixel_f1_max", "image_ap", "image_f1_max")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    cfg = ClipSamConfig.from_profile("smoke")
    return build_clip(cfg, checkpoint=None), build_sam(cfg, checkpoint=None)


class NoSam:
    """A SAM backend that fails if used."""

    weights = "none"
    predictor = None

    def set_image(self, image):
        raise AssertionError("SAM must not be called when S_a is empty")


def test_run_image_returns_maps_of_the_image_shape(models):
    clip, sam = models
    cfg = ClipSamConfig.from_profile("smoke", tau=0.0)                   # S_a = whole image: SAM is always called
    pipe = ClipSamPipeline(cfg, clip, TrainingFreeLocaliser(), sam)
    image = np.random.default_rng(1).integers(0, 256, (70, 110, 3), dtype=np.uint8)
    result = pipe.run_image(image, "widget")
    assert result.anomaly_map.shape == result.clip_map.shape == (70, 110)
    assert result.sam_called and result.cascades and all(len(c.logits) == 3 for c in result.cascades)
    assert np.isfinite(result.anomaly_map).all() and 0 <= result.clip_map.min() <= result.clip_map.max() <= 1
    record = result.prompt_record()
    pts = np.concatenate([np.array(c["points"]) for c in record["components"]])
    assert ((pts[:, 0] >= 0) & (pts[:, 0] < 110) & (pts[:, 1] >= 0) & (pts[:, 1] < 70)).all()
    assert set(result.timings_ms) == {"clip", "sam_encoder", "ppg", "cps"}


def test_detail_arrays_are_the_unions_of_what_ppg_and_cps_did(models):
    from stlm_core.clipsam.pipeline import detail_arrays

    clip, sam = models
    cfg = ClipSamConfig.from_profile("smoke", tau=0.0)
    pipe = ClipSamPipeline(cfg, clip, TrainingFreeLocaliser(), sam)
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    result = pipe.run_image(image, "widget")
    arrays = detail_arrays(result, 64, cfg.cps_stages)
    assert set(arrays) == {"ppg_region", "ppg_ring", "ppg_similarity", "cps_stage1", "cps_stage2", "cps_stage3"}
    region = np.any([p.region for p in result.prompts], axis=0)
    np.testing.assert_array_equal(arrays["ppg_region"], region.astype(np.uint8))     # same size: no resampling
    for k in range(3):
        stage = np.any([c.logits[k] > 0 for c in result.cascades], axis=0)
        np.testing.assert_array_equal(arrays[f"cps_stage{k + 1}"], stage.astype(np.uint8))
    # the last stage's union is where the fused logits are positive
    final = np.max([c.final_logits for c in result.cascades], axis=0)
    np.testing.assert_array_equal(arrays["cps_stage3"], (final > 0).astype(np.uint8))
    # no SAM call: everything zero
    cfg_empty = ClipSamConfig.from_profile("smoke", tau=1.5)
    none = ClipSamPipeline(cfg_empty, clip, TrainingFreeLocaliser(), NoSam()).run_image(image, "widget")
    assert all(not a.any() for a in detail_arrays(none, 32, 3).values())


def test_empty_extreme_region_skips_sam_and_halves_clip_map(models):
    clip, _ = models
    cfg = ClipSamConfig.from_profile("smoke", tau=1.5)                   # clip_map <= 1: S_a always empty
    pipe = ClipSamPipeline(cfg, clip, TrainingFreeLocaliser(), NoSam())
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    result = pipe.run_image(image, "widget")
    assert not result.sam_called and result.timings_ms["sam_encoder"] == 0
    np.testing.assert_allclose(result.anomaly_map, 0.5 * result.clip_map)


def _metrics(path):
    record = json.loads(path.read_text())
    for key in METRIC_KEYS:
        value = record[key]
        assert value is None or 0.0 <= value <= 1.0, (key, value)
    assert record["pixel_auroc"] is not None and record["image_auroc"] is not None
    return record


def test_cli_zeroshot_and_cross_dataset_adapters(synthetic_root, mvtec_tree, tmp_path, capsys):
    # adapters trained on another dataset (a tiny MVTec-layout tree), then applied to the synthetic dataset
    other = mvtec_tree(category="widget", n_good=1, defects={"scratch": 3}, size=48)
    adapters = tmp_path / "adapters.pt"
    assert main(["zeroshot-adapters", "train", "--dataset", "mvtec", "--root", str(other), "--out", str(adapters),
                 "--epochs", "1", "--quiet", "--profile", "smoke"]) == 0
    run = tmp_path / "run"
    args = ["zeroshot", "--dataset", "synthetic", "--root", str(synthetic_root), "--category", "nut_like",
            "--profile", "smoke", "--out", str(run), "--limit", "6", "--quiet"]
    assert main(args + ["--adapters", str(adapters)]) == 0
    record = _metrics(run / "metrics.json")
    prov = record["provenance"]
    assert prov["adapters_trained_on"] == "mvtec" and prov["cross_dataset"] is True
    assert prov["localiser"] == "adapters" and prov["random_init"] is True
    assert prov["weights"]["clip"] == "random-init" and prov["weights"]["adapters"].startswith("adapters@")
    assert prov["images"] == 6 and set(prov["stage_ms_mean"]) == {"clip", "sam_encoder", "ppg", "cps"}
    assert set(record["secondary"]) == {"clip"}
    maps = load_maps(run)
    assert maps.maps["cascade"].shape == maps.masks.shape == (6, 64, 64)
    assert len(read_extras(run)) == 6
    assert maps.arrays["cps_stage1"].shape == maps.arrays["ppg_region"].shape == (6, 64, 64)
    assert "random weights" in capsys.readouterr().out
    # the same directory with a different configuration is refused (exit status 2, no traceback)
    assert main(args + ["--tau", "0.7"]) == 2
    assert "different configuration" in capsys.readouterr().err
    # training-free localiser, global region, sam-only fusion
    run2 = tmp_path / "run2"
    assert main(["zeroshot", "--dataset", "synthetic", "--root", str(synthetic_root), "--category", "carpet_like",
                 "--out", str(run2), "--limit", "4", "--global-region", "--fusion", "sam", "--quiet",
                 "--profile", "smoke"]) == 0
    record2 = _metrics(run2 / "metrics.json")
    assert record2["provenance"]["localiser"] == "training_free"
    assert record2["provenance"]["adapters_trained_on"] is None


def test_bench_clipsam_smoke():
    from stlm_core.clipsam.bench import bench_clipsam

    result = bench_clipsam("smoke", runs=1, warmup=0, decoder_runs=2)
    for stage in ("clip", "sam_encoder", "ppg", "cps", "cps_stage1"):
        assert result["median_ms"][stage] > 0
    assert 0 < result["cps_fraction"] < 1 and result["prompts"]["components"] == 1
    assert result["weights"].startswith("random-init")


def test_cli_paper_profile_refuses_without_weights(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STLM_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    code = main(["zeroshot", "--dataset", "synthetic", "--root", str(synthetic_root), "--category", "nut_like",
                 "--profile", "paper", "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    assert "stlm weights download clip_vit_l14_336_openai" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
