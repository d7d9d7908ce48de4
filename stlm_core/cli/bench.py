"""``stlm bench``: parameter counts, latency and memory of a model/profile, or of the metrics, on this device.

Light module (no torch/numpy import at module level); the work happens in ``stlm_core.metrics.benchmark``,
``stlm_core.stlm.bench`` and ``stlm_core.clipsam.bench``, imported by the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
from pathlib import Path
from typing import Any

from stlm_core.cli.options import add_dataset, positive_int
from stlm_core.configs import PROFILE_HELP, PROFILES, check_profile
from stlm_core.runtime import THREADS_HELP
from stlm_core.errors import StlmError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure parameters, latency and memory of a model, or the speed of the metrics",
        description="Benchmarks on this device. 'metrics': all pixel metrics on a synthetic MVTec-sized "
                    "category; 'stlm' / 'clipsam': parameter counts per module and batch-1 latency of a model "
                    "profile (random weights: the cost does not depend on them).",
    )
    targets = parser.add_subparsers(dest="target", metavar="<target>")
    targets.required = True

    metrics = targets.add_parser(
        "metrics", help="time and peak memory of the pixel metrics on synthetic data",
        description="Computes pixel AUROC, AP, F1-max and exact AUPRO (plus the 200-threshold AUPRO "
                    "approximation) on SYNTHETIC maps of --images images of --size squared with about --regions "
                    "defect regions; prints the time of each step, the peak memory of the metrics and of the whole "
                    "process, and the approximation's deviation. Only our metrics are measured unless --compare. "
                    "Target at 1024 px and 83 images: <= 10 s and <= 6 GiB.",
    )
    metrics.add_argument("--size", type=positive_int, default=1024, help="image side in pixels (default: 1024)")
    metrics.add_argument("--images", type=positive_int, default=83, help="number of test images (default: 83)")
    metrics.add_argument("--regions", type=positive_int, default=60, help="number of defect regions (default: 60)")
    metrics.add_argument("--thresholds", type=positive_int, default=200,
                         help="grid size of the AUPRO approximation (default: 200)")
    metrics.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default: 0)")
    metrics.add_argument("--compare", action="store_true",
                         help="also time scikit-learn's AUROC / AP / F1-max and, if installed, anomalib's AUPRO on the "
                              "same data, each where it fits in memory (slower; more memory)")
    metrics.add_argument("--quiet", action="store_true", help="no progress bar")
    metrics.add_argument("--json", action="store_true", help="print the result as JSON")
    metrics.set_defaults(func=_bench_metrics)

    for name, default_runs, default_warmup, what in (
        ("stlm", 10, 2, "STLM's inference model (students + shared decoder + FA head; the teacher only where it "
                        "stands in for the plain stream)"),
        ("clipsam", 3, 1, "the CLIP-SAM cascade, per stage"),
        ("patchcore", 5, 1, "PatchCore (backbone + 1-NN search against a MVTec-sized memory bank)"),
    ):
        model = targets.add_parser(
            name, help=f"parameters and batch-1 latency of {what}",
            description=f"Parameter counts per module, batch-1 latency (median and spread after warm-up) and "
                        f"peak memory of {what}, with threads and device recorded.",
        )
        model.add_argument("--profile", choices=PROFILES, required=True, help=PROFILE_HELP)
        model.add_argument("--image-size", type=positive_int, default=None,
                           help="input side in pixels (default: the profile's)")
        model.add_argument("--runs", type=positive_int, default=default_runs,
                           help=f"timed runs (default: {default_runs})")
        model.add_argument("--warmup", type=int, default=default_warmup,
                           help=f"untimed warm-up runs (default: {default_warmup})")
        model.add_argument("--device", default="cpu", help="torch device (default: cpu)")
        model.add_argument("--json", action="store_true", help="print the result as JSON")
        model.set_defaults(func=_bench_model, model=name)

    ratios = targets.add_parser(
        "ratios", help="STLM vs PatchCore batch-1 latency on this device, next to the paper's '8x faster' claim",
        description="Batch-1 latency of STLM (paper architecture at 1024 px, the cpu profile at 256 px) and PatchCore "
                    "(WideResNet-50 at 224 px with random weights, for timing; EfficientNet-Lite0 at 256 px) on this "
                    "device, and the ratios PatchCore / STLM that STLM's Fig. 1 states as '8x faster than PatchCore' "
                    "(PatchCore about 9x STLM's time). Run it alone: other jobs on the cores distort every figure.")
    ratios.add_argument("--runs", type=positive_int, default=5, help="timed runs per model (default: 5)")
    ratios.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default: 1)")
    ratios.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ratios.add_argument("--json", action="store_true", help="print the result as JSON")
    ratios.set_defaults(func=_bench_ratios)

    knn = targets.add_parser(
        "knn", help="PatchCore's nearest-neighbour search: inside the exported graph vs faiss",
        description="Time one image's nearest-neighbour search (all its patches against the memory bank) as the "
                    "exported PatchCore does it, inside the graph (one matrix product, in onnxruntime and OpenVINO), "
                    "and with faiss's exact IndexFlatL2 beside it, on the bank sizes of PatchCore-Lite0 (256 px) and "
                    "PatchCore-WRN50 (224 px), at each --threads; checks both find the same distances. Prints this "
                    "machine's matmul GFLOPS first.")
    knn.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    knn.add_argument("--runs", type=positive_int, default=20, help="timed searches per row (default 20)")
    knn.add_argument("--out", type=Path, default=None,
                     help="also write the rows with their provenance as JSON here; the efficiency chapter shows "
                          "such a file (stlm_core/deploy/recorded_knn.json)")
    knn.add_argument("--note", default="", help="how the rows were measured (kept with them in --out)")
    knn.set_defaults(func=_bench_knn)

    machine = targets.add_parser(
        "machine", help="this machine's speed figure (torch fp32 2048x2048 matmul GFLOPS)",
        description="Torch fp32 2048x2048 matrix-product throughput in GFLOPS (median of --runs after warm-up): the "
                    "figure quoted beside every timing of this project. Machines of the same kind differ up to ~3x; "
                    "run it alone, other jobs on the cores lower it.")
    machine.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    machine.add_argument("--runs", type=positive_int, default=5, help="timed products (default 5)")
    machine.add_argument("--json", action="store_true", help="print the result as JSON")
    machine.set_defaults(func=_bench_machine)

    deploy = targets.add_parser(
        "deploy", help="latency, throughput, memory and file size per deployment backend (STLM vs PatchCore)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "For STLM cpu (256 px), STLM paper (1024 px), PatchCore-Lite0 (256 px) and PatchCore-WRN50 (224 px), on\n"
            "eager PyTorch, torch.compile, onnxruntime and OpenVINO, fp32 and int8 (all but STLM paper), at each\n"
            "--threads: batch-1 latency (median, p95), images/s at batch 8, peak RSS and file size, each in its own\n"
            "process; "
            "then the PatchCore / STLM latency ratio per backend (the paper: about 9x, on a GPU).\n"
            "Prints this machine's matmul GFLOPS first. Run it on a quiet machine: the paper model takes minutes."))
    deploy.add_argument("--models", default=None, help="comma-separated subset of the models (default all)")
    deploy.add_argument("--backends", default=None, help="comma-separated subset of eager,torch.compile,onnxruntime,"
                                                         "openvino (default all)")
    deploy.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    deploy.add_argument("--runs", type=positive_int, default=20, help="timed batch-1 runs (default 20)")
    deploy.add_argument("--warmup", type=positive_int, default=3, help="untimed runs first (default 3)")
    deploy.add_argument("--workdir", type=Path, default=Path("runs/bench/deploy"), help="where exported files go")
    deploy.add_argument("--row-timeout", type=positive_int, default=1800, metavar="S",
                        help="seconds before a row's process is killed and recorded as not finished (default 1800; "
                             "torch.compile of the 1024-px paper model can take longer)")
    deploy.add_argument("--out", type=Path, default=None,
                        help="also write the rows with their provenance (GFLOPS, date, commit, --note) as JSON here; "
                             "the efficiency chapter shows such a file (stlm_core/deploy/recorded_bench.json)")
    deploy.add_argument("--note", default="", help="how the rows were measured (kept with them in --out)")
    deploy.set_defaults(func=_bench_deploy)

    int8 = targets.add_parser(
        "int8", help="accuracy of exported models (fp32 and int8) against the eager run on its test split",
        description="Export each finished STLM or PatchCore run (fp32 and int8, into <run>/export/), score the "
                    "exports on the run's test images with the same metrics as the run, and print pixel AUROC, AUPRO "
                    "and image AUROC per backend and precision beside the eager values, then the largest int8 loss "
                    "per method and backend.")
    int8.add_argument("--run", action="append", required=True, type=Path, help="a finished run folder (repeatable)")
    int8.add_argument("--format", action="append", choices=("onnx", "openvino"), default=None,
                      help="export format, repeatable (default both: onnx runs in onnxruntime, openvino in OpenVINO)")
    int8.add_argument("--calibration", type=positive_int, default=32, help="int8 calibration images (default 32)")
    int8.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    int8.add_argument("--out", type=Path, default=None,
                      help="also write the rows with their provenance (GFLOPS, date, commit, --note) as JSON here; "
                           "the efficiency chapter shows such a file (stlm_core/deploy/recorded_int8.json)")
    int8.add_argument("--note", default="", help="what the runs are (kept with the rows in --out)")
    int8.set_defaults(func=_bench_int8)

    learning = targets.add_parser(
        "learning", help="learning curves of STLM variants (pixel AUROC of the FA and w/o-FA maps against steps)",
        description="Train each named variant (stlm_core.stlm.study.VARIANTS, on top of --profile) for --steps steps on "
                    "one category and evaluate it every --eval-every steps; prints one line per evaluation as it is "
                    "measured and appends each variant's rows to --out (JSON lines) when it finishes. Runs are "
                    "ordinary run records under --runs-dir; each keeps its curve so far in curve.json. An "
                    "interrupted curve resumes from its last checkpoint when run again; a finished one is reused.")
    add_dataset(learning)
    learning.add_argument("--variants", default="cpu,paper_faithful,random_teacher",
                          help="comma-separated variant names (default: cpu,paper_faithful,random_teacher)")
    learning.add_argument("--profile", choices=PROFILES, default="cpu", help=PROFILE_HELP + " (default cpu)")
    learning.add_argument("--steps", type=positive_int, default=600, help="optimisation steps (default 600)")
    learning.add_argument("--eval-every", type=positive_int, default=100, help="evaluation interval (default 100)")
    learning.add_argument("--runs-dir", default="runs", help="run records (default runs)")
    learning.add_argument("--out", default=None, help="append the curve rows to this JSON-lines file")
    learning.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    learning.add_argument("--force", action="store_true",
                          help="retrain from step 0 even if a finished or interrupted curve exists")
    learning.set_defaults(func=_bench_learning)

    record = targets.add_parser(
        "record-study", help="turn learning-study rows (JSON lines of 'bench learning --out') into a recorded study",
        description="Read the JSON-lines files written by 'stlm bench learning --out' (several categories and "
                    "variants), keep each (variant, dataset, category, seed, step) once, and write them with their "
                    "provenance (date, stlm_core commit, torch version, threads, this machine's matmul GFLOPS, "
                    "your --note) to --out as one JSON file. The learning-study chapter shows the recorded study "
                    "shipped with the package and its robustness table (every recipe judged by its worst category).")
    record.add_argument("rows", nargs="+", help="JSON-lines files of learning-study rows")
    record.add_argument("--out", required=True, help="JSON file to write")
    record.add_argument("--note", default="", help="what the rows were measured on and how (shown with them)")
    record.add_argument("--gflops", type=float, default=None,
                        help="matmul GFLOPS of the machine the rows were trained on ('stlm bench machine' there, "
                             "quiet); default: measured now on this machine")
    record.add_argument("--threads", type=positive_int, default=None,
                        help="torch threads the rows were trained with (default: this process's)")
    record.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                        help="record rows of variant OLD under the name NEW (repeatable), e.g. when the profile "
                             "changed after they were measured and OLD's overrides now have another name; the "
                             "mapping is kept in the provenance")
    record.set_defaults(func=_bench_record_study)


# ---- handlers ---------------------------------------------------------------------------------------------------


def _bench_metrics(args) -> int:
    from stlm_core.metrics.benchmark import bench_metrics

    result = bench_metrics(size=args.size, n_images=args.images, n_regions=args.regions, seed=args.seed,
                           compare=args.compare, num_thresholds=args.thresholds, progress=not args.quiet)
    print(_to_json(result) if args.json else format_metrics_bench(result))
    return 0


_MODEL_BENCH = {
    "stlm": ("stlm_core.stlm.bench", "bench_stlm"),
    "clipsam": ("stlm_core.clipsam.bench", "bench_clipsam"),
    "patchcore": ("stlm_core.baselines.bench", "bench_patchcore"),
}


def _bench_machine(args) -> int:
    from stlm_core.bench import matmul_gflops

    result = matmul_gflops(runs=args.runs, threads=args.threads)
    if args.json:
        print(_to_json(result))
    else:
        print(f"{result['gflops']:.1f} GFLOPS (torch fp32 {result['size']}x{result['size']} matmul, "
              f"{result['threads']} threads, {result['cpu_count']} CPUs, torch {result.get('torch', '?')})")
    return 0


def _print_machine_gflops() -> float:
    """This machine's matmul GFLOPS, printed before any timing (every timing is read beside it)."""
    from stlm_core.bench import matmul_gflops

    gflops = matmul_gflops()["gflops"]
    print(f"this machine: {gflops:.1f} GFLOPS (torch fp32 2048x2048 matmul, default threads)", flush=True)
    return gflops


def _record_rows(rows: list[dict[str, Any]], args, gflops: float | None = None, **extra: Any) -> None:
    """With ``--out``: the rows and their provenance (GFLOPS, measured now when not given; date; commit; ``--note``;
    ``extra``) as one JSON file."""
    if args.out is None:
        return
    import datetime

    from stlm_core.bench import matmul_gflops
    from stlm_core.deploy.bench import record_bench
    from stlm_core.runs import git_commit

    record_bench(rows, args.out, gflops=gflops if gflops is not None else matmul_gflops()["gflops"],
                 date=datetime.date.today().isoformat(), stlm_core_commit=git_commit(), note=args.note, **extra)


def _bench_deploy(args) -> int:
    import pandas as pd

    from stlm_core.deploy.bench import bench_deploy, speed_ratio_table

    gflops = _print_machine_gflops()
    split = (lambda text: [part.strip() for part in text.split(",") if part.strip()] if text else None)
    rows = bench_deploy(split(args.models), split(args.backends), [int(t) for t in split(args.threads)],
                        runs=args.runs, warmup=args.warmup, workdir=args.workdir, row_timeout_s=args.row_timeout)
    _record_rows(rows, args, gflops)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).round(2).to_string(index=False))
        print(speed_ratio_table(rows).round(2).to_string())
    return 0


def _bench_knn(args) -> int:
    import pandas as pd

    from stlm_core.deploy.knn import bench_knn, describe_knn, knn_table

    gflops = _print_machine_gflops()
    rows = bench_knn(threads=tuple(int(t) for t in args.threads.split(",") if t.strip()), runs=args.runs)
    _record_rows(rows, args, gflops)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(knn_table(rows).to_string())
    print("\n".join(describe_knn(rows)))
    return 0


def _bench_int8(args) -> int:
    import pandas as pd

    from stlm_core.deploy.accuracy import describe_int8_cost, export_accuracy, int8_table

    formats = args.format or ["onnx", "openvino"]
    table = export_accuracy(args.run, formats, args.calibration, threads=args.threads)
    _record_rows(table.to_dict(orient="records"), args, formats=formats, calibration=args.calibration)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(int8_table(table).to_string())
    print("\n".join(describe_int8_cost(table)))
    return 0


def _bench_ratios(args) -> int:
    from stlm_core.baselines.bench import speed_ratios

    result = speed_ratios("cpu", device=args.device, runs=args.runs, warmup=args.warmup)
    if args.json:
        print(_to_json(result))
        return 0
    for name, ms in result["median_ms"].items():
        print(f"{name:22s} {ms:10.1f} ms")
    for name, ratio in result["ratios"].items():
        print(f"{name:40s} {ratio:6.2f}x   (paper: about {result['claimed_ratio']:.0f}x)")
    print(result["claim"])
    return 0


def _print_curve_row(row: dict) -> None:
    fa = row.get("fa.pixel_auroc")
    print(f"{row['variant']:20s} step {row['step']:5d}  FA {'n/a' if fa is None else f'{fa:.3f}'}  "
          f"w/o FA {row['wo_fa.pixel_auroc']:.3f}  ({row['train_s']:.0f} s)", flush=True)


def _bench_learning(args) -> int:
    from stlm_core.data.spec import DataSpec
    from stlm_core.runtime import set_threads
    from stlm_core.stlm.study import learning_curve

    set_threads(args.threads)
    data = DataSpec(args.dataset, args.root, args.category)
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        rows = learning_curve(variant, data, profile=args.profile, steps=args.steps, eval_every=args.eval_every,
                              runs_dir=args.runs_dir, force=args.force, on_row=_print_curve_row)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row) + "\n" for row in rows)
    return 0


def _bench_record_study(args) -> int:
    import datetime
    import subprocess
    from pathlib import Path

    import torch

    from stlm_core.bench import matmul_gflops
    from stlm_core.stlm.study import record_study

    rows = []
    for name in args.rows:
        path = Path(name)
        if not path.is_file():
            raise StlmError(f"{path} does not exist; pass the --out file of 'stlm bench learning'.")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise StlmError(f"{path}, line {number} is not JSON ({error.msg}); pass the --out file of "
                                    "'stlm bench learning'.") from None
    renames = {}
    for item in args.rename:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise StlmError(f"--rename expects OLD=NEW, got {item!r}")
        renames[old] = new
    rows = [{**row, "variant": renames.get(row["variant"], row["variant"])} for row in rows]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip() or None
    out = record_study(rows, args.out, date=datetime.date.today().isoformat(), stlm_core_commit=commit,
                       torch=torch.__version__, threads=args.threads or torch.get_num_threads(),
                       gflops=args.gflops if args.gflops is not None else round(matmul_gflops()["gflops"], 1),
                       note=args.note, renamed=renames)
    print(f"recorded {len(rows)} rows to {out}")
    return 0


def _bench_model(args) -> int:
    check_profile(args.profile)
    if args.warmup < 0:
        raise StlmError(f"--warmup must be >= 0, got {args.warmup}")
    module_name, function_name = _MODEL_BENCH[args.model]
    try:
        fn = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise StlmError(f"the {args.model} benchmark ({module_name}.{function_name}) is not available in this "
                        f"installation: {exc}") from None
    kwargs: dict[str, Any] = {"image_size": args.image_size, "runs": args.runs, "warmup": args.warmup}
    if args.device != "cpu":
        kwargs["device"] = args.device
    result = fn(args.profile, **kwargs)
    print(_to_json(result) if args.json else format_nested(result))
    return 0


# ---- output -----------------------------------------------------------------------------------------------------


def _to_json(result: dict) -> str:
    from stlm_core.fileio import to_jsonable

    return json.dumps(to_jsonable(result), indent=2)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return "n/a" if value is None else str(value)


def format_nested(result: dict, indent: int = 0) -> str:
    """A readable indented listing of a (nested) benchmark dict; long number lists are summarised."""
    lines = []
    pad = "  " * indent
    for key, value in result.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(format_nested(value, indent + 1))
        elif isinstance(value, (list, tuple)) and len(value) > 6:
            lines.append(f"{pad}{key}: [{len(value)} values]")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{key}: [{', '.join(_fmt(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_fmt(value)}")
    return "\n".join(line for line in lines if line)


def _comparison_lines(r: dict) -> list[str]:
    """The scikit-learn and anomalib rows of ``stlm bench metrics --compare``."""
    lines = [""]
    for name in ("sklearn", "anomalib"):
        result = r[name]
        if "skipped" in result:
            lines.append(f"{name}: skipped ({result['skipped']})")
            continue
        lines.append(f"{name:<38}time [s]  peak [MiB]  |value - ours|")
        for item in result.values():
            lines.append(f"  {item['function']:<34}{item['time_s']:8.2f}  {item['peak_memory_mb']:10.0f}  "
                         f"{item['abs_diff_vs_ours']:.2e}")
    return lines


def format_metrics_bench(r: dict) -> str:
    """The human-readable report of ``stlm bench metrics``."""
    d, t = r["data"], r["timings_s"]
    lines = [
        f"SYNTHETIC data: {d['images']} images of {d['size']}x{d['size']} ({d['pixels']:,} pixels, "
        f"{d['positive_fraction']:.2%} anomalous), {d['regions']} regions "
        f"({d['region_size_px']['min']}-{d['region_size_px']['max']} px, median {d['region_size_px']['median']:.0f}), "
        f"{d['anomalous_images']} anomalous images; maps {d['maps_dtype']}, inputs {d['inputs_mb']:.0f} MiB "
        f"(generated in {d['generate_s']:.1f} s)",
        "",
        "step                         time [s]",
        f"  validate inputs           {t['validate_s']:8.3f}",
        f"  image metrics             {t['image_s']:8.3f}",
        f"  pixel sort (shared)       {t['pixel_sort_s']:8.3f}",
        f"  pixel AUROC               {t['pixel_auroc_s']:8.3f}",
        f"  pixel AP + F1-max         {t['pixel_ap_f1_s']:8.3f}",
        f"  GT regions (8-conn.)      {t['regions_s']:8.3f}",
        f"  pixel AUPRO (exact)       {t['pixel_aupro_s']:8.3f}",
        f"  AUPRO {r['aupro_thresholds']['num_thresholds']} thresholds      "
        f"{t['pixel_aupro_thresholds_s']:8.3f}",
        f"  all pixel metrics (exact) {r['pixel_metrics_s']:8.3f}",
        f"  total (incl. image, approx.) {t['total_s']:5.3f}",
        "",
        f"peak memory (process RSS during the metrics, inputs included): {r['peak_memory_mb']:.0f} MiB "
        f"({r['peak_memory_mb'] / 1024:.2f} GiB); before: {_fmt(r['memory_before_mb'])} MiB",
        "",
        "metrics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in r["metrics"].items()),
        f"AUPRO exact {r['aupro_thresholds']['exact']:.6f} vs {r['aupro_thresholds']['num_thresholds']}-threshold "
        f"approximation {_fmt(r['aupro_thresholds']['value'])}: deviation "
        f"{_fmt(r['aupro_thresholds']['deviation_points'])} points",
    ]
    target = r["target"]
    if target["applies"]:
        lines.append(f"target <= {target['time_s']:.0f} s and <= {target['peak_memory_gib']:.0f} GiB: "
                     f"{'MET' if target['met'] else 'NOT MET'}")
    lines += ["", f"peak memory of the whole process (interpreter, data generation, metrics"
                  f"{', comparisons' if r['compare'] else ''}): {r['process_peak_memory_mb']:.0f} MiB"]
    lines += _comparison_lines(r) if r["compare"] else ["comparison with scikit-learn / anomalib: not run (--compare)"]
    env = r["environment"]
    lines.append("")
    lines.append(f"environment: {env['cpu_count']} CPUs ({env['affinity_cpus']} usable), python {env['python']}, "
                 f"{env['platform']}")
    return "\n".join(lines)
