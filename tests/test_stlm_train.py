"""STLM training on the smoke profile: resume reaches the same weights, NaN guard, CLI train/evaluate, bench."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stlm_core.errors import StlmError
from stlm_core.stlm.config import profile_config
from stlm_core.stlm.train import CHECKPOINT, LOSSES, TrainingDiverged, train_stlm


def tiny_config(**overrides):
    values = dict(image_size=64, eval_size=64, epochs=3, batch_size=2, top_k=10)
    values.update(overrides)
    return profile_config("smoke", **values)


@pytest.fixture
def tiny_root(mvtec_tree):
    return mvtec_tree(category="widget", n_train=4, n_good=2, defects={"scratch": 2}, size=48)


def _state(run_dir):
    return torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)


def test_resume_reaches_same_weights_as_uninterrupted_run(tmp_path, tiny_root):
    config = tiny_config()
    full = train_stlm(config, "mvtec", tiny_root, "widget", tmp_path / "full", evaluate=False, progress=False)
    assert full["epochs"] == 3 and full["steps"] == 6

    part = train_stlm(config, "mvtec", tiny_root, "widget", tmp_path / "part", evaluate=False, progress=False,
                      stop_after_epoch=1)
    assert part["stopped"] and _state(tmp_path / "part")["epoch"] == 1
    # a killed epoch leaves extra log lines behind; resume drops them
    with open(tmp_path / "part" / LOSSES, "a") as handle:
        handle.write(json.dumps({"epoch": 2, "step": 3, "loss": 0.0}) + "\n")
    with pytest.raises(StlmError, match="--resume"):
        train_stlm(config, "mvtec", tiny_root, "widget", tmp_path / "part", evaluate=False, progress=False)
    resumed = train_stlm(config, "mvtec", tiny_root, "widget", tmp_path / "part", resume=True, evaluate=False,
                         progress=False)
    assert resumed["steps"] == 6

    a, b = _state(tmp_path / "full"), _state(tmp_path / "part")
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["numpy_rng"] == b["numpy_rng"]
    log_a = (tmp_path / "full" / LOSSES).read_text().splitlines()
    log_b = (tmp_path / "part" / LOSSES).read_text().splitlines()
    assert log_a == log_b and len(log_a) == 6
    # the weights did change during training (the comparison above is not vacuous)
    first = json.loads(log_a[0])
    assert {"plain", "denoise", "focal", "l1"} <= set(first)
    assert a["step"] == 6


def test_different_seed_gives_different_weights(tmp_path, tiny_root):
    runs = []
    for seed in (0, 1):
        train_stlm(tiny_config(epochs=1, seed=seed), "mvtec", tiny_root, "widget", tmp_path / f"s{seed}",
                   evaluate=False, progress=False)
        runs.append(_state(tmp_path / f"s{seed}")["model"])
    assert not torch.equal(runs[0]["denoise.encoder.neck.0.weight"], runs[1]["denoise.encoder.neck.0.weight"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_root, monkeypatch):
    import stlm_core.stlm.train as train_module

    real_focal = train_module.focal_loss
    calls = {"n": 0}

    def focal_then_nan(logits, target, gamma=4.0):
        calls["n"] += 1
        value = real_focal(logits, target, gamma)
        return value * float("nan") if calls["n"] > 2 else value  # epoch 1 (2 steps) is fine

    monkeypatch.setattr(train_module, "focal_loss", focal_then_nan)
    with pytest.raises(TrainingDiverged, match="nan.*last good checkpoint"):
        train_stlm(tiny_config(), "mvtec", tiny_root, "widget", tmp_path / "run", evaluate=False, progress=False)
    state = _state(tmp_path / "run")
    assert state["epoch"] == 1 and state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_cli_train_then_evaluate(tmp_path, tiny_root, capsys):
    from stlm_core.cli import main

    run = tmp_path / "run"
    args = ["train", "--dataset", "mvtec", "--root", str(tiny_root), "--category", "widget", "--profile", "smoke",
            "--image-size", "64", "--epochs", "1", "--out", str(run), "--quiet", "--save-maps"]
    assert main(args) == 0
    record = json.loads((run / "metrics.json").read_text())
    for key in ("pixel_auroc", "pixel_aupro", "image_auroc"):
        assert 0.0 <= record[key] <= 1.0
        assert 0.0 <= record["wo_fa"][key] <= 1.0
    assert record["map"] == "fa"
    prov = record["provenance"]
    assert prov["profile"] == "smoke" and prov["random_init"] is True
    assert prov["weights"]["teacher"] == "random-init" and prov["epochs"] == 1
    assert json.loads((run / "metrics_wo_fa.json").read_text())["map"] == "wo_fa"
    maps = np.load(run / "maps.npz")
    assert maps["fa_maps"].dtype == np.float16 and maps["fa_maps"].shape == (4, 64, 64)
    assert maps["labels"].tolist().count(1) == 2 and len(maps["paths"]) == 4

    # an existing run is not silently restarted
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err

    (run / "metrics.json").unlink()
    assert main(["evaluate", "--run", str(run), "--quiet"]) == 0
    again = json.loads((run / "metrics.json").read_text())
    assert again["pixel_auroc"] == pytest.approx(record["pixel_auroc"])  # same checkpoint, same numbers


def test_evaluate_without_checkpoint_is_a_clear_error(tmp_path):
    from stlm_core.cli import main

    assert main(["evaluate", "--run", str(tmp_path / "nope"), "--quiet"]) == 2


def test_fa_off_reports_wo_fa_map(tmp_path, tiny_root):
    result = train_stlm(tiny_config(epochs=1, use_fa=False), "mvtec", tiny_root, "widget", tmp_path / "run",
                        progress=False)
    assert result["metrics"]["fa"] is None
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["map"] == "wo_fa" and record["pixel_auroc"] == record["wo_fa"]["pixel_auroc"]
    lines = [json.loads(x) for x in (tmp_path / "run" / LOSSES).read_text().splitlines()]
    assert "focal" not in lines[0]


def test_bench_stlm_smoke():
    from stlm_core.stlm.bench import bench_stlm

    result = bench_stlm("smoke", runs=2, warmup=1)
    assert result["parameters"]["total"] == sum(v for k, v in result["parameters"].items() if k != "total")
    assert result["latency"]["median_ms"] > 0 and result["batch_size"] == 1
    assert result["image_size"] == 128


def test_focal_loss_from_logits_matches_definition_and_keeps_gradient():
    from stlm_core.stlm.train import focal_loss

    logits = torch.tensor([[-3.0, -0.5, 0.0, 2.0]])
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    prob = torch.sigmoid(logits)
    p_t = prob * target + (1 - prob) * (1 - target)
    reference = (torch.nn.functional.binary_cross_entropy(prob, target, reduction="none") * (1 - p_t) ** 4).mean()
    torch.testing.assert_close(focal_loss(logits, target), reference)
    # a saturated, confidently wrong pixel still gets a gradient (it would not through sigmoid + clamped BCE)
    z = torch.tensor([-200.0], requires_grad=True)
    focal_loss(z, torch.tensor([1.0])).backward()
    assert z.grad.item() < 0


def test_paper_profile_evaluation_refuses_without_weights(tmp_path, monkeypatch):
    import json

    from stlm_core.errors import WeightsError
    from stlm_core.stlm.config import profile_config
    from stlm_core.stlm.evaluate import evaluate_run

    monkeypatch.setenv("STLM_WEIGHTS", str(tmp_path / "no_weights_here"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "paper_run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"stlm": profile_config("paper").to_dict()}))
    with pytest.raises(WeightsError, match="stlm weights download sam_vit_h"):
        evaluate_run(run_dir, device="cpu", progress=False)
