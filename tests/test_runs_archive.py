"""Recorded runs: pack, unpack (data fingerprint, held-back check run, never over an existing run), the table's
``recorded`` column, the check of a recording, and the shipped recording against the default build's plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stlm_core.errors import StlmError
from stlm_core.runs import load_runs, mark_finished
from stlm_core.runs.archive import (RECORDED_FILE, RECORDED_RUNS, data_fingerprint, pack_runs, read_archive,
                                    recorded_provenance, recording_check, unpack_runs)

REPO = Path(__file__).resolve().parents[1]


def fake_run(runs_dir: Path, data_root: Path, category: str, run_id: str, auroc: float) -> Path:
    run_dir = runs_dir / "stlm" / "toy" / category / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"method": "stlm", "dataset": "toy", "category": category,
                                                     "config": {"profile": "cpu", "train_steps": 5}}))
    (run_dir / "data.json").write_text(json.dumps({"dataset": "toy", "root": str(data_root), "category": category}))
    metrics = {"map": "fa", "pixel_auroc": auroc, "pixel_aupro": 0.5, "image_auroc": 0.75,
               "secondary": {"wo_fa": {"pixel_auroc": auroc - 0.1}}, "provenance": {"seed": 0}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "losses.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (run_dir / "checkpoint.pt").write_bytes(b"weights are not packed")
    mark_finished(run_dir)
    return run_dir


@pytest.fixture
def toy(tmp_path):
    data_root = tmp_path / "data"
    for category in ("a", "b"):
        (data_root / category / "train").mkdir(parents=True)
        (data_root / category / "train" / "000.png").write_bytes(category.encode() * 10)
    made = tmp_path / "made"
    runs = [fake_run(made, data_root, "a", "r1", 0.9), fake_run(made, data_root, "b", "r2", 0.8)]
    archive = pack_runs(runs, made, tmp_path / "recorded.json", note="toy", gflops=47.0, check_runs=[runs[0]])
    return data_root, made, runs, archive


def test_pack_keeps_records_only_and_names_the_check_run(toy):
    _, _, _, archive = toy
    packed = read_archive(archive)
    assert packed["check_runs"] == ["stlm/toy/a/r1"]
    assert packed["provenance"]["gflops"] == 47.0 and packed["provenance"]["note"] == "toy"
    files = packed["runs"][0]["files"]
    assert {"config.json", "metrics.json", "losses.jsonl", "finished.json"} <= set(files)
    assert "checkpoint.pt" not in files


def test_unpack_writes_finished_recorded_runs_and_holds_back_the_check_run(toy, tmp_path):
    data_root, _, _, archive = toy
    target = tmp_path / "runs"
    outcome = unpack_runs(target, {"toy": data_root}, archive)
    assert outcome["unpacked"] == ["stlm/toy/b/r2"] and outcome["held_back"] == ["stlm/toy/a/r1"]
    assert not (target / "stlm/toy/a/r1").exists()
    table = load_runs(target)
    assert len(table) == 1 and table["recorded"].iloc[0].startswith("recorded ")
    assert "47-GFLOPS" in table["recorded"].iloc[0]
    assert recorded_provenance(target / "stlm/toy/b/r2")["note"] == "toy"
    assert json.loads((target / "stlm/toy/b/r2/data.json").read_text())["root"] == str(data_root)
    # a second unpack keeps what is there
    again = unpack_runs(target, {"toy": data_root}, archive)
    assert again["kept"] == ["stlm/toy/b/r2"] and again["unpacked"] == []


def test_unpack_skips_categories_whose_local_data_differ_and_datasets_not_given(toy, tmp_path):
    data_root, _, _, archive = toy
    (data_root / "b" / "train" / "000.png").write_bytes(b"other pixels")
    outcome = unpack_runs(tmp_path / "runs", {"toy": data_root}, archive, hold_back=False)
    assert outcome["unpacked"] == ["stlm/toy/a/r1"] and outcome["other_data"] == ["stlm/toy/b/r2"]
    assert unpack_runs(tmp_path / "none", {"elsewhere": data_root}, archive) == {
        "unpacked": [], "kept": [], "other_data": [], "held_back": []}


def test_recording_check_compares_the_run_trained_here_with_its_record(toy, tmp_path):
    data_root, _, _, archive = toy
    target = tmp_path / "runs"
    unpack_runs(target, {"toy": data_root}, archive)
    assert recording_check(target).empty  # the held-back run is not trained yet
    fake_run(target, data_root, "a", "r1", 0.85)  # "trained here": 5 points lower pixel AUROC
    check = recording_check(target).set_index(["map", "metric"])
    assert check.loc[("fa", "pixel_auroc"), "difference"] == pytest.approx(-0.05)
    assert check.loc[("fa", "image_auroc"), "difference"] == pytest.approx(0.0)
    assert check.loc[("wo_fa", "pixel_auroc"), "here"] == pytest.approx(0.75)
    assert recorded_provenance(target / "stlm/toy/a/r1") is None


def test_pack_refuses_unfinished_runs_and_unknown_check_runs(toy, tmp_path):
    data_root, made, runs, _ = toy
    (runs[1] / "finished.json").unlink()
    with pytest.raises(StlmError, match="not a finished run"):
        pack_runs(runs, made, tmp_path / "x.json", note="")
    with pytest.raises(StlmError, match="not among the packed runs"):
        pack_runs(runs[:1], made, tmp_path / "x.json", note="", check_runs=[runs[1]])
    with pytest.raises(StlmError, match="not a folder"):
        data_fingerprint(data_root, "missing")


def test_shipped_recording_matches_the_default_build_plan_and_the_generated_data(tmp_path):
    """The package's recording is current: the synthetic generator still writes the recorded bytes, and every STLM
    and PatchCore run the default build plans (chapters.yml budgets) is in it, with the same run folder."""
    from stlm_core.baselines.patchcore_run import PatchCoreConfig, plan_patchcore
    from stlm_core.data import DataSpec
    from stlm_core.data.synthetic import CATEGORIES, generate
    from stlm_core.stlm import StlmConfig
    from stlm_core.stlm.study import variant_config
    from stlm_core.stlm.training import plan_stlm

    archive = read_archive(RECORDED_RUNS)
    root = generate(tmp_path / "synthetic", progress=False)  # the book's default (book/build.py)
    recorded = {run["path"]: run for run in archive["runs"]}
    for run in archive["runs"]:
        assert data_fingerprint(root, run["data"]["category"]) == run["data"]["fingerprint"], run["path"]
    chapters = {c["notebook"]: c for c in yaml.safe_load((REPO / "book" / "chapters.yml").read_text())["chapters"]}
    study, results = chapters["stlm_learning_study.ipynb"]["budget"], chapters["stlm_main_results.ipynb"]["budget"]
    categories = sorted(CATEGORIES)
    planned = [plan_stlm(variant_config(v, steps=study["steps"]), DataSpec("synthetic", root, c), runs_dir=tmp_path)
               for v in study["variants"] for c in categories[:study["max_categories"]]]
    planned += [plan_stlm(StlmConfig.from_profile("cpu", train_steps=results["steps"]),
                          DataSpec("synthetic", root, c), runs_dir=tmp_path) for c in categories]
    planned += [plan_patchcore(PatchCoreConfig.from_profile("cpu"), DataSpec("synthetic", root, c),
                               runs_dir=tmp_path) for c in categories]
    paths = {run.run_dir.relative_to(tmp_path).as_posix() for run in planned}
    missing = paths - set(recorded)
    assert not missing, f"rerun python book/record_runs.py: the recording lacks {sorted(missing)}"
    assert archive["check_runs"] and set(archive["check_runs"]) & paths
    clipsam_checks = [p for p in archive["check_runs"] if p.startswith("clipsam/")]  # the zero-shot chapter's maps
    assert sorted(p.split("/")[2] for p in clipsam_checks) == categories
    for path in paths:
        assert json.loads(recorded[path]["files"]["config.json"])["config"]["profile"] == "cpu"
