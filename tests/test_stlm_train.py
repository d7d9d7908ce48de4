"""STLM training on the smoke profile: resume reaches the same weights, a step changes the weights, NaN guard,
CLI train/evaluate, run records, bench."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stlm_core.data.spec import DataSpec
from stlm_core.errors import StlmError
from stlm_core.runs import CHECKPOINT_FILE, LOSSES_FILE, is_finished, load_maps, read_run, score_maps
from stlm_core.stlm.config import StlmConfig
from stlm_core.stlm.training import TrainingDiverged, train


def tiny_config(**overrides):
    values = dict(image_size=64, eval_size=64, epochs=3, batch_size=2, top_k=10)
    values.update(overrides)
    return StlmConfig.from_profile("smoke", **values)


@pytest.fixture
def tiny_root(mvtec_tree):
    return mvtec_tree(category="widget", n_train=4, n_good=2, defects={"scratch": 2}, size=48)


def _data(root):
    return DataSpec("mvtec", root, "widget")


def _state(run_dir):
    return torch.load(run_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def test_resume_reaches_same_weights_as_uninterrupted_run(tmp_path, tiny_root):
    config = tiny_config()
    train(config, _data(tiny_root), run_dir=tmp_path / "full", evaluate=False, progress=False)
    assert _state(tmp_path / "full")["step"] == 6

    train(config, _data(tiny_root), run_dir=tmp_path / "part", evaluate=False, progress=False, stop_after_epoch=1)
    assert _state(tmp_path / "part")["epoch"] == 1
    # a killed epoch leaves extra log lines behind; resume drops them
    with open(tmp_path / "part" / LOSSES_FILE, "a") as handle:
        handle.write(json.dumps({"epoch": 2, "step": 3, "loss": 0.0}) + "\n")
    with pytest.raises(StlmError, match="--resume"):
        train(config, _data(tiny_root), run_dir=tmp_path / "part", evaluate=False, progress=False)
    train(config, _data(tiny_root), run_dir=tmp_path / "part", resume=True, evaluate=False, progress=False)

    a, b = _state(tmp_path / "full"), _state(tmp_path / "part")
    assert b["step"] == 6 and b["resumed_from"] == {"epoch": 1, "step": 2}
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["numpy_rng"] == b["numpy_rng"]
    log_a = (tmp_path / "full" / LOSSES_FILE).read_text().splitlines()
    log_b = (tmp_path / "part" / LOSSES_FILE).read_text().splitlines()
    assert log_a == log_b and len(log_a) == 6
    assert {"plain", "denoise", "focal", "l1"} <= set(json.loads(log_a[0]))


def test_a_training_step_changes_the_weights(tmp_path, tiny_root):
    """Every trainable part moves after one step (the equality test above is not vacuous), the teacher does not."""
    from stlm_core.stlm.build import build_for_training

    config = tiny_config(epochs=1, batch_size=4)
    before, teacher = build_for_training(config, {})
    before_state = {k: v.clone() for k, v in before.trained_state().items()}
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    run = train(config, _data(tiny_root), run_dir=tmp_path / "run", evaluate=False, progress=False)
    after = _state(run)
    assert after["step"] == 1
    for prefix in ("plain.", "denoise.", "decoder.mask_decoder.transformer.", "fa."):
        changed = [k for k in before_state if k.startswith(prefix) and before_state[k].is_floating_point()
                   and not torch.equal(before_state[k], after["model"][k])]
        assert changed, f"no parameter under {prefix} changed after a training step"
    assert after["teacher"].keys() == teacher_state.keys()
    assert all(torch.equal(after["teacher"][k], v) for k, v in teacher_state.items())


def test_different_seed_gives_different_weights(tmp_path, tiny_root):
    runs = []
    for seed in (0, 1):
        train(tiny_config(epochs=1, seed=seed), _data(tiny_root), run_dir=tmp_path / f"s{seed}", evaluate=False,
              progress=False)
        runs.append(_state(tmp_path / f"s{seed}")["model"])
    assert not torch.equal(runs[0]["denoise.encoder.neck.0.weight"], runs[1]["denoise.encoder.neck.0.weight"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_root, monkeypatch):
    import stlm_core.stlm.training as training

    real_focal = training.focal_loss
    calls = {"n": 0}

    def focal_then_nan(logits, target, gamma=4.0):
        calls["n"] += 1
        value = real_focal(logits, target, gamma)
        return value * float("nan") if calls["n"] > 2 else value  # epoch 1 (2 steps) is fine

    monkeypatch.setattr(training, "focal_loss", focal_then_nan)
    with pytest.raises(TrainingDiverged, match="nan.*last good checkpoint"):
        train(tiny_config(), _data(tiny_root), run_dir=tmp_path / "run", evaluate=False, progress=False)
    state = _state(tmp_path / "run")
    assert state["epoch"] == 1 and state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not is_finished(tmp_path / "run")


def test_cli_train_then_evaluate(tmp_path, tiny_root, capsys):
    from stlm_core.cli import main

    run = tmp_path / "run"
    args = ["train", "--dataset", "mvtec", "--root", str(tiny_root), "--category", "widget", "--profile", "smoke",
            "--image-size", "64", "--epochs", "1", "--out", str(run), "--quiet", "--threads", "1"]
    assert main(args) == 0
    record = read_run(run)
    assert record["map"] == "fa" and set(record["secondary"]) == {"wo_fa"}
    for key in ("pixel_auroc", "pixel_aupro", "image_auroc"):
        assert 0.0 <= record["metrics"][key] <= 1.0
        assert 0.0 <= record["secondary"]["wo_fa"][key] <= 1.0
    prov = record["provenance"]
    assert prov["profile"] == "smoke" and prov["random_init"] is True and prov["threads"] == 1
    assert prov["weights"]["teacher"] == "random-init" and prov["epochs"] == 1
    assert prov["versions"]["torch"]
    maps = load_maps(run)
    assert maps.maps["fa"].dtype == np.float32 and maps.maps["fa"].shape == (4, 64, 64)
    assert maps.labels.tolist().count(1) == 2 and len(maps.paths) == 4
    # the record reproduces its metrics exactly (maps are stored in float32)
    recomputed = score_maps(maps)
    assert recomputed["fa"]["pixel_ap"] == record["metrics"]["pixel_ap"]
    assert recomputed["wo_fa"]["pixel_aupro"] == record["secondary"]["wo_fa"]["pixel_aupro"]
    assert oct((run / "metrics.json").stat().st_mode & 0o777) == "0o644"

    # an existing run is not silently restarted
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err

    (run / "metrics.json").unlink()
    assert main(["evaluate", "--run", str(run), "--quiet"]) == 0
    again = read_run(run)
    assert again["metrics"]["pixel_auroc"] == pytest.approx(record["metrics"]["pixel_auroc"])  # same checkpoint


def test_evaluate_errors_are_messages(tmp_path, capsys):
    from stlm_core.cli import main

    assert main(["evaluate", "--run", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fa_off_reports_wo_fa_map(tmp_path, tiny_root):
    run = train(tiny_config(epochs=1, use_fa=False), _data(tiny_root), run_dir=tmp_path / "run", progress=False)
    record = read_run(run)
    assert record["map"] == "wo_fa" and record["secondary"] == {}
    lines = [json.loads(x) for x in (run / LOSSES_FILE).read_text().splitlines()]
    assert "focal" not in lines[0]


def test_bench_stlm_smoke():
    from stlm_core.stlm.bench import bench_stlm

    result = bench_stlm("smoke", runs=2, warmup=1)
    assert set(result["parameters"]) >= {"student_plain", "student_denoise", "mask_decoder", "fa_head", "total"}
    assert result["latency"]["median_ms"] > 0 and result["batch_size"] == 1
    assert result["image_size"] == 128


def test_focal_loss_from_logits_matches_definition_and_keeps_gradient():
    from stlm_core.stlm.training import focal_loss

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
    from stlm_core.errors import WeightsError
    from stlm_core.stlm.evaluation import evaluate

    monkeypatch.setenv("STLM_WEIGHTS", str(tmp_path / "no_weights_here"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "paper_run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"method": "stlm",
                                                     "config": StlmConfig.from_profile("paper").to_dict()}))
    with pytest.raises(WeightsError, match="stlm weights download sam_vit_h"):
        evaluate(run_dir, device="cpu", progress=False)


class _Stop(Exception):
    pass


def test_interrupted_learning_curve_keeps_its_rows_and_resumes_to_the_uninterrupted_curve(tmp_path, tiny_root):
    from stlm_core.stlm.study import CURVE_FILE, learning_curve

    kwargs = dict(profile="smoke", steps=6, eval_every=2, image_size=64, eval_size=64, batch_size=2, top_k=10)
    full = learning_curve("cpu", _data(tiny_root), runs_dir=tmp_path / "full", **kwargs)
    assert [row["step"] for row in full] == [2, 4, 6]
    assert {"probe.undone", "probe.streams_inside", "probe.streams_outside"} <= set(full[0])

    def stop_after_first(row):
        if row["step"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        learning_curve("cpu", _data(tiny_root), runs_dir=tmp_path / "part", on_row=stop_after_first, **kwargs)
    (saved,) = (tmp_path / "part").rglob(CURVE_FILE)
    partial = json.loads(saved.read_text())
    assert partial["complete"] is False and [row["step"] for row in partial["rows"]] == [2]

    seen = []
    resumed = learning_curve("cpu", _data(tiny_root), runs_dir=tmp_path / "part", on_row=seen.append, **kwargs)
    assert [row["step"] for row in seen] == [2, 4, 6]  # the kept row first, then the new ones
    assert _state(saved.parent)["resumed_from"] == {"epoch": 1, "step": 2}  # continued, not restarted
    metric_keys = [k for k in full[0] if k.endswith(("pixel_auroc", "aupro", "image_auroc", "inside", "outside"))]
    assert metric_keys
    for a, b in zip(full, resumed):
        assert a["step"] == b["step"]
        for key in metric_keys:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    assert resumed[-1]["train_s"] > resumed[0]["train_s"]
    # finished: reused without training again
    again = learning_curve("cpu", _data(tiny_root), runs_dir=tmp_path / "part", **kwargs)
    assert again == resumed


def test_denoising_diagnostics_read_a_copying_student_as_undoing_nothing(tiny_root):
    """At step 0 the cpu profile's denoising student is a copy of the teacher and the plain stream is the teacher:
    D(I_a) = T(I_a), so it has undone none of the pseudo-anomaly and the streams agree everywhere. A student that
    outputs T(I_n) exactly would have undone all of it; a plain stream doing the same keeps none of it."""
    from stlm_core.stlm.build import build_for_training, resolve_stlm_weights
    from stlm_core.stlm.study import denoising_diagnostics, pseudo_anomaly_probes

    config = StlmConfig.from_profile("cpu", image_size=64, eval_size=64)
    model, teacher = build_for_training(config, resolve_stlm_weights(config))
    probes = pseudo_anomaly_probes(config, _data(tiny_root), n=4)
    assert probes["x_a"].shape == (4, 3, 64, 64) and probes["masks"].sum() > 0
    start = denoising_diagnostics(model, teacher, probes)
    assert start["gap_inside"] > 0.01
    assert start["undone"] == pytest.approx(0.0, abs=1e-4)
    assert start["streams_inside"] == pytest.approx(0.0, abs=1e-5)
    assert start["reproduced"] == pytest.approx(1.0, abs=1e-6)  # the plain stream is the teacher itself

    class Oracle(torch.nn.Module):  # denoises perfectly: D(I_a) = T(I_n) on the probes
        def __init__(self):
            super().__init__()
            self.levels, self.weight = model.levels, torch.nn.Parameter(torch.zeros(()))

        def streams(self, x):
            return teacher(x)[:self.levels], teacher(probes["x_n"])[:self.levels]

    perfect = denoising_diagnostics(Oracle(), teacher, probes)
    assert perfect["undone"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["streams_inside"] == pytest.approx(perfect["gap_inside"], rel=1e-4)

    class BothDenoise(Oracle):  # the plain stream removes the anomaly too: nothing left to disagree on
        def streams(self, x):
            normal = teacher(probes["x_n"])[:self.levels]
            return normal, normal

    both = denoising_diagnostics(BothDenoise(), teacher, probes)
    assert both["reproduced"] == pytest.approx(0.0, abs=1e-4) and both["undone"] == pytest.approx(1.0, abs=1e-4)
    assert both["streams_inside"] == pytest.approx(0.0, abs=1e-5)


def test_a_notebook_run_killed_mid_training_continues_like_a_workflow_job(tmp_path, tiny_root):
    """experiments.stlm_run (what the notebooks call) continues a run from its checkpoint instead of restarting,
    and reaches the weights of an uninterrupted run; force=True starts it from zero."""
    from stlm_core.experiments import stlm_run

    config = StlmConfig.from_profile("smoke", seed=0)
    data = _data(tiny_root)
    kwargs = dict(profile="smoke", runs_dir=tmp_path / "runs", device="cpu", seed=0)
    run_dir = train(config, data, runs_dir=tmp_path / "runs", evaluate=False, progress=False, stop_after_epoch=1)
    assert stlm_run(data.dataset, data.root, data.category, **kwargs) == run_dir
    resumed = _state(run_dir)
    assert resumed["resumed_from"] == {"epoch": 1, "step": 2} and (run_dir / "finished.json").is_file()
    full = train(config, data, run_dir=tmp_path / "full", evaluate=False, progress=False)
    for name, value in _state(full)["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=0, atol=0)
    stlm_run(data.dataset, data.root, data.category, force=True, **kwargs)
    assert _state(run_dir)["resumed_from"] is None
