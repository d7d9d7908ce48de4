"""Run records: atomic JSON, config guard, provenance, read_run and load_runs aggregation."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stlm_core import __version__
from stlm_core.errors import StlmError
from stlm_core.results import (
    atomic_write_json,
    config_id,
    has_metrics,
    load_runs,
    make_provenance,
    prepare_run_dir,
    read_json,
    read_run,
    run_dir_for,
    write_metrics,
)

REPO = Path(__file__).resolve().parents[1]


def provenance(**overrides):
    kwargs = dict(profile="smoke", device="cpu", weights="random-init",
                  dataset={"name": "synthetic", "category": "tile", "files": 12}, seed=0,
                  timings={"train_s": 1.5, "infer_s": 0.25})
    kwargs.update(overrides)
    return make_provenance(**kwargs)


def test_atomic_write_json_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(path, {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": (1, 2), "p": path})
    assert read_json(path) == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": [1, 2], "p": str(path)}
    atomic_write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(StlmError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StlmError, match="bad.json is not valid JSON"):
        read_json(bad)


def test_config_id_is_order_independent_and_content_sensitive():
    assert config_id({"a": 1, "b": [1, 2]}) == config_id({"b": [1, 2], "a": 1})
    assert config_id({"a": 1}) != config_id({"a": 2})
    assert run_dir_for("runs", "stlm", "mvtec", "bottle", {"a": 1}) == Path("runs/stlm/mvtec/bottle") / config_id({"a": 1})


def test_prepare_run_dir_refuses_a_different_config_unless_forced(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, {"lr": 0.1, "epochs": 5})
    write_metrics(run, {"pixel_auroc": 0.9}, provenance())
    # the same config (any key order) reuses the directory and keeps its results
    prepare_run_dir(run, {"epochs": 5, "lr": 0.1})
    assert has_metrics(run)
    with pytest.raises(StlmError, match=r"different configuration \(differs in: epochs\)"):
        prepare_run_dir(run, {"lr": 0.1, "epochs": 6})
    assert read_json(run / "config.json") == {"lr": 0.1, "epochs": 5}
    prepare_run_dir(run, {"lr": 0.1, "epochs": 6}, force=True)
    assert read_json(run / "config.json") == {"lr": 0.1, "epochs": 6}
    assert not has_metrics(run)  # stale results of the old config are gone


def test_prepare_run_dir_refuses_results_without_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    with pytest.raises(StlmError, match="no config.json"):
        prepare_run_dir(run, {"a": 1})


def test_provenance_fields():
    prov = provenance()
    for key in ("package_version", "git_commit", "profile", "device", "torch_version", "weights", "random_init",
                "dataset", "seed", "timings", "created_utc", "python_version"):
        assert key in prov
    assert prov["package_version"] == __version__
    assert prov["random_init"] is True
    assert prov["timings"] == {"train_s": 1.5, "infer_s": 0.25}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        assert prov["git_commit"] is None
    else:
        assert prov["git_commit"].split("+")[0] == head
    real = make_provenance(profile="paper", device="cuda:0", weights={"teacher": "sam_vit_h@abc"},
                           dataset="mvtec/bottle", seed=1)
    assert real["random_init"] is False and real["timings"] == {}


def test_write_and_read_run_round_trip(tmp_path):
    run = prepare_run_dir(tmp_path / "r", {"a": 1})
    write_metrics(run, {"pixel_auroc": np.float64(0.93), "image_auroc": None}, provenance())
    raw = json.loads((run / "metrics.json").read_text())
    assert raw["pixel_auroc"] == 0.93 and raw["provenance"]["profile"] == "smoke"  # metric keys at the top
    record = read_run(run)
    assert record["config"] == {"a": 1}
    assert record["metrics"] == {"pixel_auroc": 0.93, "image_auroc": None}
    assert record["provenance"]["seed"] == 0
    with pytest.raises(ValueError, match="reserved"):
        write_metrics(run, {"provenance": 1}, provenance())


def test_load_runs_one_row_per_method_dataset_category_config(tmp_path):
    runs = tmp_path / "runs"
    for method, dataset, category, lr, auroc in [("stlm", "mvtec", "bottle", 0.1, 0.91),
                                                 ("stlm", "mvtec", "bottle", 0.2, 0.92),
                                                 ("stlm", "mvtec", "cable", 0.1, 0.81),
                                                 ("clipsam", "visa", "pcb1", 0.0, 0.71)]:
        config = {"method": method, "dataset": dataset, "category": category, "lr": lr}
        run = prepare_run_dir(run_dir_for(runs, method, dataset, category, config), config)
        write_metrics(run, {"pixel_auroc": auroc, "pixel_aupro": auroc - 0.1}, provenance(seed=int(lr * 10)))
        write_metrics(run, {"pixel_auroc": auroc - 0.05}, provenance(), name="metrics_wo_fa.json")
    frame = load_runs(runs)
    assert len(frame) == 4
    assert not frame.duplicated(["method", "dataset", "category", "config_id"]).any()
    assert set(frame.columns) >= {"method", "dataset", "category", "config_id", "profile", "weights", "random_init",
                                  "seed", "pixel_auroc", "pixel_aupro", "time.train_s", "run_dir"}
    bottle = frame[(frame.method == "stlm") & (frame.category == "bottle")].sort_values("pixel_auroc")
    assert bottle.pixel_auroc.tolist() == [0.91, 0.92]
    assert frame.random_init.all()
    wo_fa = load_runs(runs, name="metrics_wo_fa.json")
    assert len(wo_fa) == 4 and "pixel_aupro" not in wo_fa.columns
    empty = load_runs(tmp_path / "nothing")
    assert empty.empty and list(empty.columns) == ["method", "dataset", "category", "config_id"]


def test_load_runs_reads_identity_from_the_path_when_config_lacks_it(tmp_path):
    run = prepare_run_dir(tmp_path / "runs" / "stlm" / "mvtec" / "tile" / "abc", {"lr": 0.1})
    write_metrics(run, {"pixel_auroc": 0.5}, provenance(dataset="mvtec tile, 12 files"))
    row = load_runs(tmp_path / "runs").iloc[0]
    assert (row.method, row.dataset, row.category) == ("stlm", "mvtec", "tile")
    assert row.config_id == config_id({"lr": 0.1})
    # a dataset identity in the provenance wins over the folder name
    write_metrics(run, {"pixel_auroc": 0.5}, provenance())
    row = load_runs(tmp_path / "runs").iloc[0]
    assert row.dataset == "synthetic" and bool(row.synthetic) is True
    write_metrics(run, {"pixel_auroc": 0.5}, provenance(method="clipsam"))
    assert load_runs(tmp_path / "runs").iloc[0].method == "clipsam"


def test_no_temp_files_left_in_run_dirs(tmp_path):
    run = prepare_run_dir(tmp_path / "r", {"a": 1})
    for _ in range(3):
        write_metrics(run, {"pixel_auroc": 0.5}, provenance())
    assert sorted(os.listdir(run)) == ["config.json", "metrics.json"]
