"""The run-record module: atomic files, config guard, provenance, RunMaps round trip, one scoring rule, the
finished marker, the writer lock and load_runs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
import sys

import numpy as np
import pytest

from stlm_core import __version__
from stlm_core.errors import StlmError
from stlm_core.fileio import atomic_write_json, read_json
from stlm_core.runs import (
    RunLocked, RunMaps, config_id, is_finished, load_maps, load_runs, make_provenance, mark_finished,
    prepare_run_dir, read_run, run_lock, save_maps, score_maps, write_metrics,
)


def provenance(**overrides):
    kwargs = dict(profile="smoke", device="cpu", weights="random-init",
                  dataset={"name": "synthetic", "category": "tile", "files": 12}, seed=0,
                  timings={"train_s": 1.5, "infer_s": 0.25})
    kwargs.update(overrides)
    return make_provenance(**kwargs)


def run_maps(n: int = 6, size: int = 16, seed: int = 0) -> RunMaps:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    masks[n // 2:, 4:9, 4:9] = 1
    good = masks.astype(np.float32)
    noisy = rng.random((n, size, size)).astype(np.float32)
    return RunMaps(primary="good", maps={"good": good, "noise": noisy},
                   scores={"good": good.reshape(n, -1).max(1), "noise": noisy.reshape(n, -1).max(1)},
                   labels=(masks.reshape(n, -1).max(1) > 0).astype(int), masks=masks,
                   defects=np.array(["good"] * (n // 2) + ["hole"] * (n - n // 2)),
                   paths=np.array([f"/img/{i}.png" for i in range(n)]),
                   records=[{"i": i} for i in range(n)])


def test_atomic_write_json_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(path, {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": (1, 2), "p": path})
    assert read_json(path) == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": [1, 2], "p": str(path)}
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    atomic_write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1} and sorted(os.listdir(path.parent)) == ["x.json"]


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert read_json(path) == {"a": 1} and os.listdir(tmp_path) == ["x.json"]


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(StlmError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(StlmError, match="bad.json.*not valid JSON"):
        read_json(bad)


def test_config_id_is_order_independent_and_content_sensitive():
    assert config_id({"a": 1, "b": [1, 2]}) == config_id({"b": [1, 2], "a": 1})
    assert config_id({"a": 1}) != config_id({"a": 2})


def test_prepare_run_dir_refuses_a_different_config_unless_forced(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, {"lr": 0.1, "epochs": 5})
    prepare_run_dir(run, {"lr": 0.1, "epochs": 5})  # same config: fine
    write_metrics(run, {"m": {"pixel_auroc": 0.5}}, "m", provenance())
    mark_finished(run)
    with pytest.raises(StlmError, match="differs in: epochs"):
        prepare_run_dir(run, {"lr": 0.1, "epochs": 6})
    prepare_run_dir(run, {"lr": 0.1, "epochs": 6}, force=True)
    assert read_json(run / "config.json") == {"lr": 0.1, "epochs": 6}
    assert not (run / "metrics.json").exists() and not is_finished(run)  # stale results went with the old config


def test_provenance_fields():
    prov = provenance(weights={"teacher": "random-init", "decoder": "mobile_sam@abc"})
    assert prov["package_version"] == __version__ and prov["random_init"] is True
    assert set(prov["versions"]) >= {"torch", "numpy"} and prov["python_version"]
    assert provenance(weights="sam@123")["random_init"] is False


def test_run_maps_round_trip_in_float32_and_one_scoring_rule(tmp_path):
    maps = run_maps()
    save_maps(tmp_path, maps)
    back = load_maps(tmp_path)
    assert back.primary == "good" and back.names == ["good", "noise"]
    assert back.maps["good"].dtype == np.float32 and np.array_equal(back.maps["noise"], maps.maps["noise"])
    assert back.records == maps.records and back.defects.tolist() == maps.defects.tolist()
    metrics = score_maps(back)
    assert metrics["good"]["pixel_auroc"] == 1.0 and metrics["good"]["image_auroc"] == 1.0
    assert set(metrics["noise"]) == set(metrics["good"])
    with pytest.raises(ValueError, match="primary"):
        RunMaps(primary="x", maps=maps.maps, scores=maps.scores, labels=maps.labels, masks=maps.masks,
                defects=maps.defects, paths=maps.paths)


def test_only_finished_runs_are_loaded(tmp_path):
    runs = tmp_path / "runs"
    done, unfinished = runs / "a" / "synthetic" / "tile" / "1", runs / "a" / "synthetic" / "tile" / "2"
    for run, seed in ((done, 0), (unfinished, 1)):
        prepare_run_dir(run, {"method": "a", "dataset": "synthetic", "category": "tile", "seed": seed})
        write_metrics(run, score_maps(run_maps()), "good", provenance(seed=seed))
    mark_finished(done)
    frame = load_runs(runs)
    assert len(frame) == 1 and frame.iloc[0]["run_dir"] == str(done)
    row = frame.iloc[0]
    assert row["map"] == "good" and row["pixel_auroc"] == 1.0 and "noise.pixel_auroc" in frame
    assert row["time.train_s"] == 1.5 and row["run_id"] == config_id(read_json(done / "config.json"))
    assert read_run(done)["secondary"]["noise"]["pixel_auroc"] < 1.0


def test_run_lock_refuses_a_second_writer_and_takes_over_a_stale_lock(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(RunLocked, match=f"process {os.getpid()}"):
            with run_lock(tmp_path):
                pass
    assert not (tmp_path / "run.lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (tmp_path / "run.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with pytest.warns(UserWarning, match="stale lock"):
        with run_lock(tmp_path):
            pass


def test_a_lock_from_another_host_expires_only_without_heartbeat(tmp_path, monkeypatch):
    import stlm_core.runs as runs

    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "node-that-is-not-this-one"}))
    with pytest.raises(RunLocked, match="another host expires"):  # recently touched: its holder may be alive
        with run_lock(tmp_path):
            pass
    old = lock.stat().st_mtime - runs.LOCK_STALE_S - 60
    os.utime(lock, (old, old))
    with pytest.warns(UserWarning, match="node-that-is-not-this-one"):
        with run_lock(tmp_path):
            pass
    assert not lock.exists()
    monkeypatch.setattr(runs.lock, "LOCK_HEARTBEAT_S", 0.05)  # the holder keeps its lock fresh
    with run_lock(tmp_path):
        os.utime(lock, (old, old))
        deadline = time.time() + 5
        while lock.stat().st_mtime <= old + 1 and time.time() < deadline:
            time.sleep(0.05)
        assert lock.stat().st_mtime > old + 1


def test_default_locations_come_from_the_repository_not_the_working_directory(tmp_path, monkeypatch):
    from stlm_core.paths import default_data_root, default_runs_dir, repo_root, resolve
    from stlm_core.stlm.pseudo_anomaly import find_dtd

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STLM_DTD", raising=False)
    root = Path(__file__).resolve().parents[1]
    assert repo_root() == root and default_runs_dir() == root / "runs"
    assert default_data_root("mvtec") == root / "data" / "mvtec"
    assert resolve("runs/x", default_runs_dir()) == root / "runs" / "x"
    (tmp_path / "data" / "dtd").mkdir(parents=True)  # a DTD folder relative to the working directory is not used
    assert find_dtd() in (None, (root / "data" / "dtd").resolve())


# ------------------------------------------------------------------------------------------------- the Run lifecycle


class _Data:
    """The part of a DataSpec a Run reads."""

    dataset, category, root, limit = "synthetic", "tile", Path("/data/synthetic"), None

    def identity(self, splits=("train", "test")):
        return {"name": self.dataset, "category": self.category, "files": {s: 3 for s in splits}}


class _Config:
    def __init__(self, **values):
        self.values = values

    def to_dict(self):
        return dict(self.values)


def test_run_plans_once_writes_under_its_lock_and_finishes_last(tmp_path):
    from stlm_core.runs import Run

    run = Run.plan("demo", _Config(lr=0.1), _Data(), {"backbone": "random-init"}, runs_dir=tmp_path, extra_fact=1)
    assert run.run_dir == tmp_path / "demo" / "synthetic" / "tile" / run.id
    assert run.record["extra_fact"] == 1 and run.weights == {"backbone": "random-init"} and not run.is_finished
    with run.writing():
        assert (run.run_dir / "run.lock").is_file() and (run.run_dir / "config.json").is_file()
        with pytest.raises(RunLocked):  # one writer at a time
            with Run.plan("demo", _Config(lr=0.1), _Data(), {"backbone": "random-init"}, runs_dir=tmp_path,
                          extra_fact=1).writing():
                pass
        run.log_steps([{"epoch": 1, "step": 1, "loss": 0.5}, {"epoch": 1, "step": 2, "loss": 0.4}])
        run.finish(run_maps(), profile="smoke", device="cpu", seed=0, timings={"train_s": 1.0}, note="x")
    assert run.is_finished and not (run.run_dir / "run.lock").exists()
    record = read_run(run.run_dir)
    assert record["map"] == "good" and record["metrics"]["pixel_auroc"] == 1.0
    assert record["provenance"]["method"] == "demo" and record["provenance"]["note"] == "x"
    assert record["provenance"]["dataset"]["files"] == 6 and record["provenance"]["weights"] == run.weights
    other = Run.plan("demo", _Config(lr=0.2), _Data(), {"backbone": "random-init"}, run_dir=run.run_dir)
    with pytest.raises(StlmError, match="differs in: config.lr"):
        with other.writing():
            pass
    assert run.is_finished  # the refused writer changed nothing


def test_one_resume_rule(tmp_path, capsys):
    from stlm_core.runs import Run

    run = Run.plan("demo", _Config(), _Data(), {}, run_dir=tmp_path / "run")
    with pytest.raises(StlmError, match="no checkpoint"):  # nothing to continue
        run.resolve_resume(True)
    assert run.resolve_resume("auto") is False and run.resolve_resume(False) is False
    with run.writing():
        pass
    assert run.resolve_resume(True) is False and "no saved epoch yet" in capsys.readouterr().err  # set up, no epoch
    with run.writing():
        run.save_checkpoint({"epoch": 1}, format_version=1)
        run.log_steps([{"epoch": 1, "step": 1, "loss": 1.0}])
    assert run.resolve_resume("auto") is True and run.resolve_resume(True) is True
    with pytest.raises(StlmError, match="--resume to continue it or --force"):
        run.resolve_resume(False)
    with run.writing(resume="auto"):
        assert run.resumed and run.checkpoint_path.is_file() and run.log_path.is_file()
    assert "resuming" in capsys.readouterr().out
    with run.writing(resume="auto", force=True):  # force: from zero, checkpoint and log dropped
        assert not run.resumed and not run.checkpoint_path.exists() and not run.log_path.exists()
