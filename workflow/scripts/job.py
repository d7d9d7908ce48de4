"""One workflow job: run (or reuse) one run record through stlm_core.experiments, then write its marker.

    job.py stlm      --dataset D --root R --category C --variant V --seed S --profile P --runs-dir RUNS --marker M
                     [--steps N]
    job.py clipsam   ... [--adapters FILE]
    job.py patchcore ...
    job.py adapters  --dataset D --root R --categories C1,C2 --seed S --profile P --out FILE
    job.py bench     --target stlm|clipsam|patchcore|metrics --profile P --out FILE [--arg KEY=VALUE ...]
    job.py synthetic --out ROOT --size N --seed S [--categories C1,C2]

The marker holds the run directory and is written (atomically) only after the run's finished.json exists, so a job
that fails or is killed leaves no marker. An STLM run directory with a checkpoint but no finished.json (a job killed
mid-training) is continued from its last epoch instead of restarting (``stlm_core.experiments.stlm_run``, whose
rule is the one every caller uses: ``stlm_core.runs.Run.resolve_resume``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _write_marker(marker: str, run_dir: Path) -> None:
    from stlm_core.errors import StlmError
    from stlm_core.fileio import atomic_write_text
    from stlm_core.runs import is_finished

    if not is_finished(run_dir):
        raise StlmError(f"{run_dir} has no finished.json after the job; no marker written.")
    Path(marker).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(marker), f"{Path(run_dir).resolve()}\n")
    print(f"run directory: {Path(run_dir).resolve()}", flush=True)


def stlm(args) -> Path:
    from stlm_core.experiments import stlm_run
    from stlm_core.stlm.study import VARIANTS

    schedule = {} if args.steps is None else {"train_steps": args.steps}
    return stlm_run(args.dataset, args.root, args.category, profile=args.profile, runs_dir=args.runs_dir,
                    limit=args.limit, device=args.device, **VARIANTS[args.variant], **schedule, seed=args.seed)


def clipsam(args) -> Path:
    from stlm_core.experiments import clipsam_run

    return clipsam_run(args.dataset, args.root, args.category, profile=args.profile, runs_dir=args.runs_dir,
                       limit=args.limit, adapters=args.adapters, device=args.device, seed=args.seed)


def patchcore(args) -> Path:
    from stlm_core.experiments import patchcore_run

    return patchcore_run(args.dataset, args.root, args.category, profile=args.profile, runs_dir=args.runs_dir,
                         device=args.device, seed=args.seed)


def adapters(args) -> None:
    from stlm_core.clipsam import ClipSamConfig, train_adapters

    config = ClipSamConfig.from_profile(args.profile, seed=args.seed)
    result = train_adapters(config, args.dataset, args.root, args.out, categories=args.categories.split(","),
                            limit=args.limit, device=args.device, progress=False)
    print(f"wrote {result['path']} ({result['history']['images']} images, random CLIP: {result['random_clip']})")


BENCH = {"stlm": ("stlm_core.stlm.bench", "bench_stlm"), "clipsam": ("stlm_core.clipsam.bench", "bench_clipsam"),
         "patchcore": ("stlm_core.baselines.bench", "bench_patchcore")}


def bench(args) -> None:
    import importlib

    from stlm_core.fileio import atomic_write_text, to_jsonable

    kwargs = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.arg)}
    if args.target == "metrics":
        from stlm_core.metrics.benchmark import bench_metrics

        result = bench_metrics(progress=False, **kwargs)
    else:
        module, name = BENCH[args.target]
        fn = getattr(importlib.import_module(module), name)
        if args.device not in ("auto", "cpu"):
            kwargs["device"] = args.device
        result = fn(args.profile, **kwargs)
    atomic_write_text(Path(args.out), json.dumps(to_jsonable(result), indent=2))


def synthetic(args) -> None:
    from stlm_core.data.synthetic import generate

    generate(args.out, size=args.size, seed=args.seed,
             categories=args.categories.split(",") if args.categories else None, progress=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    for kind in ("stlm", "clipsam", "patchcore", "adapters", "bench", "synthetic"):
        p = sub.add_parser(kind)
        p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
        p.add_argument("--device", default="auto")
        p.add_argument("--profile", default="smoke")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--limit", type=int, default=None)
        if kind in ("stlm", "clipsam", "patchcore", "adapters"):
            p.add_argument("--dataset", required=True)
            p.add_argument("--root", required=True)
        if kind in ("stlm", "clipsam", "patchcore"):
            p.add_argument("--category", required=True)
            p.add_argument("--runs-dir", required=True)
            p.add_argument("--marker", required=True)
        if kind == "stlm":
            p.add_argument("--variant", default="cpu")
            p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the profile's)")
        if kind == "clipsam":
            p.add_argument("--adapters", default=None)
        if kind in ("adapters", "synthetic"):
            p.add_argument("--categories", default=None)
        if kind in ("adapters", "bench", "synthetic"):
            p.add_argument("--out", required=True)
        if kind == "bench":
            p.add_argument("--target", required=True, choices=(*BENCH, "metrics"))
            p.add_argument("--arg", action="append", default=[], metavar="KEY=JSON")
        if kind == "synthetic":
            p.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    from stlm_core.runtime import set_threads

    if args.kind != "synthetic":
        set_threads(args.threads)
    run_dir = globals()[args.kind](args)
    if args.kind in ("stlm", "clipsam", "patchcore"):
        _write_marker(args.marker, Path(run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
