"""Rewrite the package's recorded runs (``stlm_core/runs/recorded_runs.json``) from a live build on this machine.

    python book/record_runs.py                      # trains into a fresh temporary runs folder, then packs
    python book/record_runs.py --runs-dir /tmp/rec  # reuses the finished runs of an earlier recording there

Executes the chapters that train or run methods (``RECORDED_CHAPTERS``) with the default build's budgets and
``--live``, then packs every finished STLM, PatchCore and CLIP-SAM run of the embedded synthetic dataset. The check
runs, held back and run again by every default build (their maps are shown), are the learning study's ``cpu`` run on
the first category (the STLM results chapter's run for it too) and the CLIP-SAM runs of the profile as it is (the
zero-shot chapter's; the ablations chapter's variants of them stay recorded). Run it after a change that alters what those runs compute (the default build then says that no
recorded run matches and trains them all); commit the rewritten JSON file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

BOOK = Path(__file__).resolve().parent
REPO = BOOK.parent
sys.path.insert(0, str(BOOK))

RECORDED_CHAPTERS = ("stlm_learning_study.ipynb", "stlm_main_results.ipynb", "clipsam_zero_shot.ipynb",
                     "clipsam_ablations.ipynb")
RECORDED_METHODS = ("stlm", "patchcore", "clipsam")


def check_run(runs_dir: Path, dataset: str, category: str) -> Path:
    """The learning study's ``cpu`` run on ``category``: the run a default build trains again."""
    from stlm_core.fileio import read_json

    for curve in sorted((runs_dir / "stlm" / dataset / category).glob("*/curve.json")):
        if read_json(curve).get("variant") == "cpu":
            return curve.parent
    raise SystemExit(f"no learning-study cpu run of {dataset}/{category} under {runs_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=None, help="runs folder (default: a fresh temporary one)")
    parser.add_argument("--data-root", default="data/synthetic", help="the synthetic dataset (as book/build.py)")
    parser.add_argument("--out", type=Path, default=REPO / "stlm_core" / "runs" / "recorded_runs.json")
    args = parser.parse_args(argv)

    import build
    from stlm_core.bench import matmul_gflops
    from stlm_core.runs import is_finished, load_runs
    from stlm_core.runs.archive import pack_runs

    runs_dir = (args.runs_dir or Path(tempfile.mkdtemp(prefix="recorded-runs-"))).resolve()
    gflops = matmul_gflops()["gflops"]
    print(f"[record] {gflops:.1f} GFLOPS; training into {runs_dir}", flush=True)
    chapters = [arg for name in RECORDED_CHAPTERS for arg in ("--only", name)]
    status = build.main(["--live", "--no-html", "--data-root", args.data_root, "--runs-dir", str(runs_dir),
                         *chapters])
    if status:
        return status
    run_dirs = [d for method in RECORDED_METHODS for d in sorted((runs_dir / method / "synthetic").glob("*/*"))
                if is_finished(d)]
    first = sorted(d.parent.name for d in run_dirs)[0]
    table = load_runs(runs_dir, run_dirs=run_dirs)
    plain_clipsam = table[(table["method"] == "clipsam") & (table["changed"] == "")]["run_dir"].tolist()
    note = ("the default book build's runs (python book/record_runs.py: the STLM learning study and results and the "
            "CLIP-SAM chapters with their build budgets, executed with --live)")
    out = pack_runs(run_dirs, runs_dir, args.out, note=note, gflops=round(gflops, 1),
                    check_runs=[check_run(runs_dir, "synthetic", first), *plain_clipsam])
    print(f"[record] {len(run_dirs)} runs packed into {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
