"""The study grid through a real SLURM cluster: a throwaway single-node cluster (workflow/cluster/start.sh: munge,
MariaDB + slurmdbd, slurmctld, slurmd) runs a small plan submitted by Snakemake's SLURM executor. Every job must go
through sbatch (job ids in Snakemake's log and in sacct), the runs must equal the same plan run with the local
executor (metrics and maps), and an STLM job cancelled with scancel mid-training must be resubmitted by the
profile's retries and resume from its checkpoint.

Needs root (the daemons run as root): skipped with the reason otherwise. Run by ``make test-slurm`` (CI runs it after
``make test``); about 4 minutes on 2 cores once the Debian packages are installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "workflow" / "cluster"
STEPS = 400  # STLM smoke steps: long enough (20 epochs, tens of seconds) to cancel the job between checkpoints
PLAN = {
    "plan": "grid",
    "profile": "smoke",
    "device": "cpu",
    "runs_dir": "results/grid/runs",
    "datasets": {"synthetic": {"layout": "synthetic", "categories": ["carpet_like"],
                               "generate": {"size": 64, "seed": 0}}},
    "methods": {"stlm": {"datasets": ["synthetic"], "variants": ["cpu"], "seeds": [0], "steps": STEPS},
                "clipsam": {"datasets": ["synthetic"], "seeds": [0]},
                "patchcore": {"datasets": ["synthetic"], "seeds": [0]}},
    "benchmarks": [],
    "resources": {"default": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0}},
    # the report step: one chapter that reuses the plan's CLIP-SAM run, and the HTML
    "book": {"data": ["synthetic"], "only": ["clipsam_zero_shot.ipynb"]},
}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


def _run(command, env=None, timeout=1800, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=cwd)


@pytest.fixture(scope="module")
def cluster():
    """A running single-node cluster; every daemon stopped (and checked gone) at the end."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (its daemons and jobs run as root); not run on this machine")
    # munged refuses a socket below a folder that is not searchable by all, as pytest's own 0700 temp folders are
    state = Path(tempfile.mkdtemp(prefix="stlm-slurm-"))
    state.chmod(0o755)
    started = _run(["bash", CLUSTER / "start.sh", state])
    if started.returncode == 3:
        pytest.skip(f"cannot start the SLURM test cluster here: {started.stderr.strip()[-300:]}")
    assert started.returncode == 0, started.stderr[-5000:]
    print(started.stderr)  # package install and start times
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "PATH": f"{state / 'bin'}:{os.environ['PATH']}"}
    env.pop("OMP_NUM_THREADS", None)
    yield {"state": state, "env": env}
    stopped = _run(["bash", CLUSTER / "stop.sh", state])
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    for pid_file in (state / "run").glob("*.pid"):
        pid = pid_file.read_text().strip()
        assert not pid or not Path(f"/proc/{pid}").exists() or \
            "State:\tZ" in Path(f"/proc/{pid}/status").read_text(), f"{pid_file.stem} (pid {pid}) still runs"
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the workflow, book and notebooks (the report step writes into the book folder), and the plan."""
    root = tmp_path_factory.mktemp("project")
    for folder in ("workflow", "book", "notebooks"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("_build", "generated", "*.pyc"))
    (root / "plan.yaml").write_text(yaml.safe_dump(PLAN))
    return root


def _snakemake(project: Path, workdir: Path, *args, env=None, popen=False):
    command = [sys.executable, "-m", "snakemake", "-s", project / "workflow" / "Snakefile", "--configfile",
               project / "plan.yaml", "--directory", workdir, *args]
    if popen:
        log = open(workdir.parent / f"{workdir.name}.log", "w")
        return subprocess.Popen([str(c) for c in command], stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    return _run(command, env=env)


def _sacct(env, *job_ids) -> list[dict]:
    """sacct rows (allocations only) of these jobs; retried briefly, as accounting lags a few seconds."""
    fields = ["JobID", "JobName", "State", "ExitCode", "Elapsed", "Comment"]
    for _ in range(30):
        out = _run(["sacct", "-X", "-P", "-n", f"--format={','.join(fields)}", "-j", ",".join(job_ids)], env=env)
        rows = [dict(zip(fields, line.split("|"))) for line in out.stdout.splitlines() if line.strip()]
        if len(rows) == len(job_ids) and all(r["State"] not in ("PENDING", "RUNNING", "") for r in rows):
            return rows
        time.sleep(1)
    return rows


def _runs(runs_dir: Path) -> dict[str, Path]:
    return {str(p.parent.relative_to(runs_dir)): p.parent for p in runs_dir.rglob("finished.json")}


def _results(run_dir: Path, workdir: Path) -> tuple[dict, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("provenance")  # times, host and dates differ by nature
    with np.load(run_dir / "maps.npz", allow_pickle=False) as maps:
        arrays = {key: maps[key] for key in maps.files}
    arrays["paths"] = np.array([str(Path(p).relative_to(workdir)) for p in arrays["paths"]])  # images read
    return metrics, arrays


def _cancel_stlm_mid_training(snakemake: subprocess.Popen, workdir: Path, env) -> str:
    """Wait for the STLM job's first checkpoint, then scancel it; returns the cancelled SLURM job id."""
    runs = workdir / PLAN["runs_dir"] / "stlm"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and snakemake.poll() is None:
        checkpoints = list(runs.rglob("checkpoint.pt"))
        if checkpoints and not (checkpoints[0].parent / "finished.json").exists():
            queue = _run(["squeue", "-h", "-o", "%i|%k|%T"], env=env).stdout.splitlines()
            stlm = [line.split("|")[0] for line in queue if "rule_stlm_train" in line and line.endswith("RUNNING")]
            if stlm:
                assert _run(["scancel", stlm[0]], env=env).returncode == 0
                return stlm[0]
        time.sleep(0.5)
    raise AssertionError("the STLM job never ran with a checkpoint written (or Snakemake ended first)")


def test_plan_runs_through_slurm_like_the_local_executor_and_a_cancelled_job_resumes(cluster, project, tmp_path):
    env = cluster["env"]
    # the same plan with the local executor (the runs only; the report step is checked through SLURM below)
    local = tmp_path / "local"
    local.mkdir()
    started = time.monotonic()
    done = _snakemake(project, local, "--cores", "2", "runs", env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    local_s = time.monotonic() - started

    slurm = tmp_path / "slurm"
    slurm.mkdir()
    started = time.monotonic()
    snakemake = _snakemake(
        project, slurm, "--profile", project / "workflow" / "profiles" / "slurm",
        "--workflow-profile", project / "workflow" / "profiles" / "slurm-cpu",
        "--default-resources", "slurm_partition=cpu", "slurm_account=stlm",
        "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5", "--jobs", "2",
        env=env, popen=True)
    try:
        cancelled = _cancel_stlm_mid_training(snakemake, slurm, env)
        assert snakemake.wait(timeout=1800) == 0, (slurm.parent / "slurm.log").read_text()[-5000:]
    finally:
        if snakemake.poll() is None:
            snakemake.kill()
    slurm_s = time.monotonic() - started
    log = (slurm.parent / "slurm.log").read_text()

    # every job went through sbatch: one SLURM job per executed non-local step, plus the resubmission
    submitted = SUBMITTED.findall(log)
    steps = re.findall(r"(\d+) of (\d+) steps \(100%\) done", log)
    assert steps, log[-3000:]
    total = int(steps[-1][1])
    local_rules = len(re.findall(r"^localrule ", log, flags=re.M))
    assert len({job for job, _ in submitted}) == total - local_rules, log[-5000:]
    assert len(submitted) == total - local_rules + 1  # the cancelled STLM job was submitted twice
    rows = _sacct(env, *[slurm_id for _, slurm_id in submitted])
    states = {row["JobID"]: row["State"] for row in rows}
    assert states.pop(cancelled).startswith("CANCELLED"), rows
    assert set(states.values()) == {"COMPLETED"}, rows
    assert sum("rule_stlm_train" in row["Comment"] for row in rows) == 2, rows
    print(f"local executor: {local_s:.0f} s; SLURM executor (with the cancelled job): {slurm_s:.0f} s")
    print("sacct:\n" + "\n".join("|".join(row.values()) for row in rows))

    # the same runs, the same results
    local_runs, slurm_runs = _runs(local / PLAN["runs_dir"]), _runs(slurm / PLAN["runs_dir"])
    assert sorted(local_runs) == sorted(slurm_runs) and len(local_runs) == 3
    for name, run_dir in local_runs.items():
        local_metrics, local_maps = _results(run_dir, local)
        slurm_metrics, slurm_maps = _results(slurm_runs[name], slurm)
        assert slurm_metrics == local_metrics, name
        assert sorted(slurm_maps) == sorted(local_maps), name
        for key, value in local_maps.items():
            assert np.array_equal(slurm_maps[key], value), f"{name}: {key}"

    # the cancelled job resumed from its checkpoint (not from zero) when the profile's retry resubmitted it
    stlm_run = next(d for n, d in slurm_runs.items() if n.startswith("stlm/"))
    provenance = json.loads((stlm_run / "metrics.json").read_text())["provenance"]
    resumed = provenance.get("resumed_from")
    assert resumed and 0 < resumed["step"] < STEPS, provenance
    # and the report step ran through SLURM too
    assert (slurm / "results" / "grid" / "book.done").is_file()
    assert (project / "book" / "_build" / "html" / "index.html").is_file()
