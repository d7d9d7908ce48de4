"""The Snakemake workflow (workflow/Snakefile): dry-run job counts computed from the plan files, a real local run of
the smoke plan into run records, an interrupted / failed run completed by a rerun without redoing finished jobs, a
job killed mid-training resumed from its checkpoint, and the SLURM profile. CPU only, one core, no network."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "workflow"
SNAKEFILE = WORKFLOW / "Snakefile"
PLANS = WORKFLOW / "plans"
PROFILE = WORKFLOW / "profiles" / "slurm"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
JOB = WORKFLOW / "scripts" / "job.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

MVTEC = ["bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw", "tile",
         "toothbrush", "transistor", "wood", "zipper"]
VISA = ["candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2", "pcb3",
        "pcb4", "pipe_fryum"]
DAGM = [f"Class{k}" for k in range(1, 11)]


# Timeouts here are hang guards only: at least 5x the expected time on the slowest 2-core machine (47 GFLOPS).
def snakemake(workdir: Path, plan: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    command = [SNAKEMAKE, "-s", str(SNAKEFILE), "--configfile", str(plan), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=timeout, cwd=workdir)


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table (job -> count), without the total."""
    lines = output[output.index("Job stats:"):].splitlines()[3:]
    counts = {}
    for line in lines:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts


def expected_counts(plan: dict, target_all: bool = True) -> dict[str, int]:
    """Jobs per rule, from the plan YAML alone (categories written in the plan)."""
    datasets, methods = plan["datasets"], plan["methods"]

    def n_categories(keys):
        return sum(len(datasets[k]["categories"]) for k in keys)

    def n_seeds(method):
        return len(methods[method].get("seeds", [0]))

    stlm, clipsam, patchcore = methods["stlm"], methods["clipsam"], methods["patchcore"]
    pairs = clipsam.get("adapters") or []
    counts = {
        "stlm_train": n_categories(stlm["datasets"]) * len(stlm["variants"]) * n_seeds("stlm"),
        "clipsam_zeroshot": (n_categories(clipsam["datasets"]) + n_categories(p["test"] for p in pairs))
        * n_seeds("clipsam"),
        "clipsam_adapters": len({p["train"] for p in pairs}) * n_seeds("clipsam"),
        "patchcore": n_categories(patchcore["datasets"]) * n_seeds("patchcore"),
        "bench": len(plan.get("benchmarks") or []),
    }
    used = set(stlm["datasets"]) | set(clipsam["datasets"]) | set(patchcore["datasets"])
    used |= {p[k] for p in pairs for k in ("train", "test")}
    counts["synthetic_data"] = sum(1 for k in used if "generate" in datasets[k])
    if target_all:
        counts["all"] = 1
        counts["book"] = 1 if plan.get("book") else 0
    return {k: v for k, v in counts.items() if v}


# ------------------------------------------------------------------------------------------------ dry runs


def test_paper_plan_lists_the_real_categories():
    plan = yaml.safe_load((PLANS / "paper.yaml").read_text())
    assert plan["datasets"]["mvtec"]["categories"] == MVTEC
    assert plan["datasets"]["visa"]["categories"] == VISA
    assert plan["datasets"]["dagm"]["categories"] == DAGM
    pairs = {(p["train"], p["test"]) for p in plan["methods"]["clipsam"]["adapters"]}
    assert pairs == {("visa", "mvtec"), ("mvtec", "visa")}
    from stlm_core.stlm.study import VARIANTS

    for name in ("paper", "cpu", "smoke"):
        variants = yaml.safe_load((PLANS / f"{name}.yaml").read_text())["methods"]["stlm"]["variants"]
        assert set(variants) <= set(VARIANTS)


@pytest.mark.parametrize("plan_name", ["paper", "cpu", "smoke"])
def test_dry_run_job_counts_follow_the_plan(tmp_path, plan_name):
    plan_file = PLANS / f"{plan_name}.yaml"
    result = snakemake(tmp_path, plan_file, "-n", "-p")
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout + result.stderr
    assert job_counts(out) == expected_counts(yaml.safe_load(plan_file.read_text()))
    assert not (tmp_path / "results").exists()  # a dry run writes nothing and needs no data
    # The book rule reads the finished records of the plan's runs directory.
    book = out[out.index("rule book:"):]
    book = book[book.index("Shell command:"):].splitlines()[0]
    profile = yaml.safe_load(plan_file.read_text())["profile"]
    assert "book/build.py" in book and "--runs-dir" in book and f"--profile {profile}" in book


def test_dry_run_requests_the_plan_resources(tmp_path):
    plan = yaml.safe_load((PLANS / "paper.yaml").read_text())
    res = plan["resources"]["stlm_train"]
    for dataset, category in (("mvtec", "bottle"), ("visa", "pcb1")):
        result = snakemake(tmp_path, PLANS / "paper.yaml", "-n", f"results/paper/stlm/{dataset}/{category}/cpu/0.done")
        assert result.returncode == 0, result.stderr
        runtime = (res.get("by_dataset", {}).get(dataset) or {}).get("runtime", res["runtime"])
        assert f"threads: {res['threads']}" in result.stdout
        assert f"mem_mb={res['mem_mb']}" in result.stdout and f"runtime={runtime}," in result.stdout
        assert f"gpu={res['gpu']}" in result.stdout and res["gpu"] == 1
    assert res["by_dataset"]["visa"]["runtime"] > res["runtime"]


# ------------------------------------------------------------------------------------------------ real runs


def _markers(workdir: Path, plan: str) -> list[Path]:
    return sorted((workdir / "results" / plan).glob("*/*/*/*/*.done"))


@pytest.mark.slow
def test_smoke_plan_runs_into_finished_records_the_book_reuses(tmp_path):
    from stlm_core.experiments import clipsam_run, patchcore_run, stlm_run
    from stlm_core.runs import load_runs

    plan_file = PLANS / "smoke.yaml"
    plan = yaml.safe_load(plan_file.read_text())
    result = snakemake(tmp_path, plan_file, "--cores", "1", "runs")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = expected_counts(plan, target_all=False)
    markers = _markers(tmp_path, "smoke")
    n_runs = counts["stlm_train"] + counts["clipsam_zeroshot"] + counts["patchcore"]
    assert len(markers) == n_runs
    runs = load_runs(tmp_path / plan["runs_dir"])
    assert len(runs) == n_runs  # load_runs lists finished runs only
    assert sorted(runs["run_dir"]) == sorted(m.read_text().strip() for m in markers)
    assert runs.groupby("method").size().to_dict() == {
        "stlm": counts["stlm_train"], "clipsam": counts["clipsam_zeroshot"], "patchcore": counts["patchcore"]}
    assert set(runs["category"]) == set(plan["datasets"]["synthetic"]["categories"])
    for bench in plan["benchmarks"]:
        assert json.loads((tmp_path / "results" / "smoke" / "bench" / f"{bench['name']}.json").read_text())
    # The book's chapters call these with their defaults (variant "cpu", seed 0, no adapters): the same run
    # directories come back without training.
    root, runs_dir = tmp_path / "results/smoke/data/synthetic", tmp_path / plan["runs_dir"]
    marker = tmp_path / "results/smoke/{}/synthetic/carpet_like/{}/0.done"
    assert str(stlm_run("synthetic", root, "carpet_like", profile="smoke", runs_dir=runs_dir, seed=0)) == \
        Path(str(marker).format("stlm", "cpu")).read_text().strip()
    assert str(clipsam_run("synthetic", root, "carpet_like", profile="smoke", runs_dir=runs_dir, seed=0)) == \
        Path(str(marker).format("clipsam", "training_free")).read_text().strip()
    assert str(patchcore_run("synthetic", root, "carpet_like", profile="smoke", runs_dir=runs_dir)) == \
        Path(str(marker).format("patchcore", "default")).read_text().strip()
    again = snakemake(tmp_path, plan_file, "--cores", "1", "runs")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_interrupted_and_failed_run_completes_on_rerun_without_redoing_finished_jobs(tmp_path):
    plan = {
        "plan": "resume", "profile": "smoke", "device": "cpu", "runs_dir": "runs",
        "datasets": {
            "synthetic": {"layout": "synthetic", "categories": ["carpet_like"], "generate": {"size": 64, "seed": 0}},
            "other": {"layout": "synthetic", "root": "nowhere", "categories": ["carpet_like"]},  # broken root
        },
        "methods": {"stlm": {"datasets": ["synthetic", "other"], "variants": ["cpu"], "seeds": [0]},
                    "clipsam": {"datasets": [], "seeds": [0]},
                    "patchcore": {"datasets": ["synthetic"], "seeds": [0]}},
        "resources": {"default": {"threads": 1, "mem_mb": 1000, "runtime": 5, "gpu": 0}},
    }
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    first = tmp_path / "results/resume/stlm/synthetic/carpet_like/cpu/0.done"
    broken = tmp_path / "results/resume/stlm/other/carpet_like/cpu/0.done"
    pc = tmp_path / "results/resume/patchcore/synthetic/carpet_like/default/0.done"

    # 1. a workflow that stopped after its first run job (here: asked for that job only)
    result = snakemake(tmp_path, plan_file, "--cores", "1", str(first.relative_to(tmp_path)))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(first.read_text().strip())
    finished_mtime, marker_mtime = (run_dir / "finished.json").stat().st_mtime_ns, first.stat().st_mtime_ns

    # 2. the rerun of the whole plan: one job fails (bad root) and leaves no marker; the others complete
    result = snakemake(tmp_path, plan_file, "--cores", "1", "--keep-going", "runs")
    assert result.returncode != 0
    assert "Error in rule stlm_train" in result.stderr + result.stdout
    assert not broken.exists() and pc.is_file()
    assert "nowhere" in (tmp_path / "results/resume/logs/stlm/other/carpet_like/cpu/0.log").read_text()
    assert (run_dir / "finished.json").stat().st_mtime_ns == finished_mtime
    assert first.stat().st_mtime_ns == marker_mtime

    # 3. fix the plan (the same data under another key): the rerun only does the missing job, and that job reuses
    #    the finished record (the run id does not depend on where the data lies)
    plan["datasets"]["other"]["root"] = "results/resume/data/synthetic"
    plan_file.write_text(yaml.safe_dump(plan))
    result = snakemake(tmp_path, plan_file, "--cores", "1", "runs")
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout + result.stderr) == {"stlm_train": 1, "runs": 1}
    assert broken.read_text() == first.read_text()
    assert (run_dir / "finished.json").stat().st_mtime_ns == finished_mtime
    assert first.stat().st_mtime_ns == marker_mtime


def _job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), *args], capture_output=True, text=True, env=ENV, timeout=900)


def test_job_resumes_a_run_killed_mid_training_and_respects_the_run_lock(tmp_path):
    import torch

    from stlm_core.data.spec import DataSpec
    from stlm_core.data.synthetic import generate
    from stlm_core.runs import LOCK_FILE, is_finished
    from stlm_core.stlm import StlmConfig
    from stlm_core.stlm.training import train

    root = generate(tmp_path / "data", size=64, categories=["carpet_like"], progress=False)
    runs_dir = tmp_path / "runs"
    config = StlmConfig.from_profile("smoke", seed=0)
    assert config.epochs >= 2
    torch.set_num_threads(1)
    run_dir = train(config, DataSpec("synthetic", root, "carpet_like"), runs_dir=runs_dir, device="cpu",
                    progress=False, stop_after_epoch=1)  # "killed" after the first epoch's checkpoint
    assert (run_dir / "checkpoint.pt").is_file() and not is_finished(run_dir)
    marker = tmp_path / "results/x/stlm/synthetic/carpet_like/cpu/0.done"
    args = ("stlm", "--dataset", "synthetic", "--root", str(root), "--category", "carpet_like", "--variant", "cpu",
            "--seed", "0", "--profile", "smoke", "--device", "cpu", "--runs-dir", str(runs_dir), "--threads", "1",
            "--marker", str(marker))

    # another live writer holds the run (a second workflow on the same runs directory): the job fails, no marker
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    result = _job(*args)
    assert result.returncode != 0 and "being written by process" in result.stderr
    assert not marker.exists() and not is_finished(run_dir)
    (run_dir / LOCK_FILE).unlink()

    result = _job(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stdout
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["resumed_from"]["epoch"] == 1 and state["epoch"] == config.epochs
    assert is_finished(run_dir) and Path(marker.read_text().strip()) == run_dir.resolve()


def test_failed_job_leaves_no_marker(tmp_path):
    marker = tmp_path / "m.done"
    result = _job("patchcore", "--dataset", "synthetic", "--root", str(tmp_path / "missing"), "--category",
                  "carpet_like", "--profile", "smoke", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
                  "--marker", str(marker))
    assert result.returncode != 0 and not marker.exists()


# ------------------------------------------------------------------------------------------------ SLURM


def test_slurm_profile_loads_and_renders_the_paper_plan(tmp_path):
    import snakemake_executor_plugin_slurm  # noqa: F401  (the executor plugin is installed and imports)
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    plan = yaml.safe_load((PLANS / "paper.yaml").read_text())
    gpu_rules = {rule for rule, res in plan["resources"].items() if res.get("gpu")}
    assert {"stlm_train", "clipsam_adapters", "clipsam_zeroshot"} <= gpu_rules
    assert {rule for rule, res in profile["set-resources"].items() if res.get("gpu")} == gpu_rules

    class Resources(dict):
        __getattr__ = dict.__getitem__

    class Job:
        resources = Resources(gpu=profile["set-resources"]["stlm_train"]["gpu"])

    assert set_gres_string(Job()).strip() == "--gpus=1"
    # sbatch is not needed for a dry run with the profile: the DAG renders with the same jobs
    result = subprocess.run([SNAKEMAKE, "-n", "-s", str(SNAKEFILE), "--profile", str(PROFILE), "--configfile",
                             str(PLANS / "paper.yaml"), "--directory", str(tmp_path)],
                            capture_output=True, text=True, env=ENV, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert job_counts(out) == expected_counts(plan)
    assert "gpu=1" in out
