"""The recipe fields of the generalisation study: pseudo-anomaly fill, detached FA head, per-level normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stlm_core.data.spec import DataSpec
from stlm_core.errors import ConfigError
from stlm_core.runs import read_run
from stlm_core.stlm.build import build_for_training
from stlm_core.stlm.config import StlmConfig
from stlm_core.stlm.evaluation import load_model
from stlm_core.stlm.pseudo_anomaly import (MixedTextures, ProceduralTextures, TrainingPatches, anomaly_fill,
                                           synthesize)
from stlm_core.stlm.training import step_losses, train


def tiny_config(**overrides):
    values = dict(image_size=64, eval_size=64, epochs=2, batch_size=2, top_k=10, wo_fa_combine="sum")
    values.update(overrides)
    return StlmConfig.from_profile("smoke", **values)


def _images(n=3, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_training_patches_come_from_the_training_images_and_repeat_with_the_seed():
    flat = [np.full((64, 64, 3), value, np.uint8) for value in (10, 200)]
    patches = TrainingPatches(flat)
    samples = [patches.sample(32, np.random.default_rng(s)) for s in range(20)]
    assert all(p.shape == (32, 32, 3) and p.dtype == np.uint8 for p in samples)
    assert {int(p[0, 0, 0]) for p in samples} == {10, 200}  # every pixel from one of the training images
    again = TrainingPatches(flat).sample(32, np.random.default_rng(3))
    assert np.array_equal(again, samples[3])


def test_anomaly_fill_names_the_three_sources():
    textures, images = ProceduralTextures(), _images()
    assert anomaly_fill("texture", textures, images) is textures
    assert isinstance(anomaly_fill("patches", textures, images), TrainingPatches)
    mixed = anomaly_fill("mixed", textures, images)
    assert isinstance(mixed, MixedTextures) and "procedural" in mixed.name
    with pytest.raises(ValueError, match="anomaly_source"):
        anomaly_fill("dtd", textures, images)
    with pytest.raises(ConfigError, match="anomaly_source"):
        tiny_config(anomaly_source="dtd")


def test_patch_anomalies_change_the_image_only_inside_the_mask():
    images = _images(4, seed=1)
    image, mask = synthesize(images[0], TrainingPatches(images[1:]), np.random.default_rng(5), aug_prob=1.0)
    changed = np.any(image != images[0], axis=-1)
    assert mask.any() and not changed[mask == 0].any()


def test_level_norm_needs_a_sum_and_standardises_every_level_on_the_calibration_images():
    with pytest.raises(ConfigError, match="sum"):
        tiny_config(level_norm="normal_stats", wo_fa_combine="product")
    config = tiny_config(level_norm="normal_stats")
    model, _ = build_for_training(config, {})
    for p in model.denoise.parameters():  # make the streams differ
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.randn(4, 3, 64, 64)
    stats = model.set_level_stats([x[:2], x[2:]])
    assert stats.shape == (config.n_levels, 2) and (stats[:, 1] > 0).all()
    model.eval()
    with torch.no_grad():
        distances = model.level_distances(*model.streams(x))
        wo_fa = model(x)["wo_fa_map"]
    standardised = [(d - m) / s for d, (m, s) in zip(distances, stats)]
    for level in standardised:  # mean 0, std 1 on the images the statistics came from
        assert abs(float(level.mean())) < 1e-4 and abs(float(level.std(unbiased=False)) - 1) < 1e-3
    assert torch.allclose(wo_fa, sum(standardised), atol=1e-5)


def test_fa_detach_keeps_the_fa_losses_out_of_the_streams():
    x_a, x_n = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    mask = (torch.rand(2, 1, 64, 64) > 0.7).float()
    for detach, reaches in ((True, False), (False, True)):
        model, teacher = build_for_training(tiny_config(fa_detach=detach), {})
        model.train()
        parts = step_losses(model, teacher, x_a, x_n, mask)
        (parts["focal"] + parts["l1"]).backward()
        streams = [p.grad for p in model.denoise.parameters() if p.requires_grad]
        head = [p.grad for p in model.fa.parameters()]
        assert all(g is not None for g in head)
        assert any(g is not None and bool(g.abs().sum() > 0) for g in streams) is reaches


def test_a_level_norm_run_saves_its_statistics_and_evaluates_with_them(tmp_path, mvtec_tree):
    root = mvtec_tree(category="widget", n_train=4, n_good=2, defects={"scratch": 2}, size=48)
    config = tiny_config(level_norm="normal_stats", anomaly_source="mixed", fa_detach=True)
    run_dir = train(config, DataSpec("mvtec", root, "widget"), run_dir=tmp_path / "run", progress=False)
    model, loaded, _ = load_model(run_dir)
    assert loaded.level_norm == "normal_stats"
    assert not torch.equal(model.level_stats, torch.tensor([[0.0, 1.0]] * config.n_levels))  # measured, not init
    assert read_run(run_dir)["metrics"]["pixel_auroc"] is not None


def _rows():
    rows = []
    for variant, values in {"cpu": {"a": (0.99, 0.90), "b": (0.80, 0.97)}, "robust": {"a": (0.95, 0.93), "b": (0.93, 0.94)}}.items():
        for category, (fa, wo_fa) in values.items():
            for step, scale in ((250, 0.9), (500, 1.0)):
                rows.append({"variant": variant, "dataset": "synthetic", "category": category, "seed": 0, "step": step,
                             "fa.pixel_auroc": fa * scale, "fa.pixel_aupro": 0.8, "fa.image_auroc": 0.9,
                             "wo_fa.pixel_auroc": wo_fa * scale, "wo_fa.pixel_aupro": 0.7, "wo_fa.image_auroc": 1.0})
    return rows


def test_robustness_table_judges_each_recipe_by_its_worst_category_at_the_last_step():
    import pandas as pd

    from stlm_core.report import describe_robustness, robustness_views
    from stlm_core.stlm.study import robustness_table

    table = robustness_table(pd.DataFrame(_rows()))
    first = table.iloc[0]  # worst 0.93 on both robust maps; the FA map has the higher mean
    assert (first["variant"], first["map"], first["worst"]) == ("robust", "fa", pytest.approx(0.93))
    by_recipe = table.set_index(["variant", "map"])
    assert by_recipe.loc[("cpu", "fa"), "worst"] == pytest.approx(0.80)
    assert by_recipe.loc[("cpu", "fa"), "worst_category"] == "b"
    assert by_recipe.loc[("robust", "fa"), "worst"] == pytest.approx(0.93)
    assert by_recipe.loc[("robust", "fa"), "spread"] == pytest.approx(0.02)
    assert list(table["worst"]) == sorted(table["worst"], reverse=True)
    summary, per_category = robustness_views(table)
    assert list(per_category.columns) == ["a", "b"] and summary.shape[0] == len(table)
    assert "worst category" in " ".join(describe_robustness(table))


def test_recipes_within_half_a_point_are_tied_and_ranked_by_their_worst_aupro():
    import pandas as pd

    from stlm_core.report import describe_robustness
    from stlm_core.stlm.study import robustness_table

    recipes = {"sharp": (0.962, 0.86), "covering": (0.960, 0.91), "far": (0.950, 0.99)}  # worst AUROC, worst AUPRO
    rows = [{"variant": name, "category": category, "seed": 0, "step": 500, "fa.pixel_auroc": auroc + bump,
             "fa.pixel_aupro": aupro + bump, "fa.image_auroc": 1.0}
            for name, (auroc, aupro) in recipes.items() for category, bump in (("a", 0.0), ("b", 0.02))]
    table = robustness_table(pd.DataFrame(rows))
    assert list(table["variant"]) == ["covering", "sharp", "far"]  # 0.2 points apart: a tie; 1.2 points: not
    assert "sharp / FA map (96.2 %, AUPRO 86.0 %)" in " ".join(describe_robustness(table, reference="covering"))


def test_a_recorded_study_round_trips_with_its_provenance(tmp_path, capsys):
    import json

    from stlm_core.cli import main
    from stlm_core.stlm.study import load_recorded_study

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in _rows() + _rows()[:1]))  # a repeated row is kept once
    out = tmp_path / "study.json"
    assert main(["bench", "record-study", str(rows), "--out", str(out), "--note", "test rows", "--gflops", "47"]) == 0
    frame, provenance = load_recorded_study(out)
    assert len(frame) == len(_rows()) and provenance["gflops"] == 47 and provenance["note"] == "test rows"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main(["bench", "record-study", str(bad), "--out", str(out)]) == 2
    assert "bad.jsonl, line 1" in capsys.readouterr().err


def test_the_recorded_study_shipped_with_the_package_covers_every_new_variant():
    from stlm_core.stlm.study import load_recorded_study

    from stlm_core.stlm.study import VARIANTS, robustness_table

    frame, provenance = load_recorded_study()
    assert {"cpu", "texture_anomalies", "patch_anomalies", "fa_detach_textures", "fa_detach", "teacher_lite2"} <= set(frame["variant"])
    assert frame[frame["variant"].isin(["cpu", "fa_detach", "teacher_lite2"])].groupby("variant")["category"].nunique().min() == 5
    assert set(frame["variant"]) <= set(VARIANTS)  # every recorded name still means a set of overrides
    assert provenance["gflops"] and provenance["stlm_core_commit"]
    assert frame.groupby("variant")["step"].max().min() >= 500
    best = robustness_table(frame).iloc[0]  # the evidence supports the profile as it is
    assert (best["variant"], best["map"]) == ("cpu", "fa")
