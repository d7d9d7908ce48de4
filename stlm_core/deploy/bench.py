"""``stlm bench deploy``: is STLM the lighter model on a CPU, on the backends a factory would deploy?

For each model (STLM ``cpu`` at 256 px, STLM ``paper`` at 1024 px, PatchCore-Lite0 at 256 px, PatchCore with the
paper's WideResNet-50 at 224 px), backend (eager PyTorch, ``torch.compile``, onnxruntime, OpenVINO), precision
(fp32; int8 where the export supports it) and thread count: batch-1 latency (median and p95 after warm-up),
throughput at batch 8, peak resident memory and the model file's size. Every measurement runs in its own process
(peak memory is per measurement, and no backend's thread pool outlives it). Latency does not depend on the
weights, so the graphs are built from the profiles directly (no trained run needed; PatchCore's memory bank has the
size a fit on 200 images gives, as in :func:`stlm_core.baselines.bench.bench_patchcore`) and int8 is calibrated
on random images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MODELS: dict[str, dict[str, Any]] = {
    "stlm_cpu_256": {"method": "stlm", "profile": "cpu"},
    "stlm_paper_1024": {"method": "stlm", "profile": "paper"},
    "patchcore_lite0_256": {"method": "patchcore", "profile": "cpu"},
    "patchcore_wrn50_224": {"method": "patchcore", "profile": "paper"},
}
BACKENDS = ("eager", "torch.compile", "onnxruntime", "openvino")
INT8_MODELS = ("stlm_cpu_256", "patchcore_lite0_256", "patchcore_wrn50_224")  # TinyViT int8 does not run in ORT


def build_graph(name: str):
    """(inference module, input size) of a benchmark model (see :data:`MODELS`)."""
    import torch

    spec = MODELS[name]
    torch.manual_seed(0)
    if spec["method"] == "stlm":
        from stlm_core.deploy.graphs import StlmGraph
        from stlm_core.stlm.build import build_stlm
        from stlm_core.stlm.config import StlmConfig

        config = StlmConfig.from_profile(spec["profile"])
        return StlmGraph(build_stlm(config), eval_size=config.eval_size, top_k=config.top_k), config.image_size
    import numpy as np

    from stlm_core.baselines.patchcore_run import PatchCoreConfig, build_patchcore
    from stlm_core.deploy.graphs import PatchCoreGraph

    config = PatchCoreConfig.from_profile(spec["profile"])
    detector = build_patchcore(config, "cpu")
    size = config.image_size
    features = detector.embed(np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8))
    features = features.reshape(-1, features.shape[-1])
    bank = max(1, round(config.coreset_fraction * 200 * features.shape[0] / 2))
    detector.memory_bank = features.repeat(-(-bank // features.shape[0]), 1)[:bank].contiguous()
    return PatchCoreGraph(detector, eval_size=config.eval_size), size


def export_models(names: list[str], workdir: Path, int8: bool = True) -> dict[tuple[str, str], Path]:
    """ONNX files (fp32, and int8 for :data:`INT8_MODELS`) of the models, in ``workdir``; reused when present."""
    import numpy as np

    from stlm_core.deploy.export import export_onnx, quantise_int8

    workdir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in names:
        fp32 = workdir / f"{name}.onnx"
        graph, size = build_graph(name)
        if not fp32.is_file():
            export_onnx(graph, size, fp32)
        files[name, "fp32"] = fp32
        if int8 and name in INT8_MODELS:
            out = workdir / f"{name}-int8.onnx"
            if not out.is_file():
                calibration = np.random.default_rng(0).uniform(0, 255, (4, 3, size, size)).astype(np.float32)
                quantise_int8(fp32, out, calibration, MODELS[name]["method"])
            files[name, "int8"] = out
    return files


def measure_one(name: str, backend: str, precision: str, threads: int, runs: int, warmup: int,
                model_file: str | None) -> dict[str, Any]:
    """One row of the table, measured in this process (called in a fresh process by :func:`bench_deploy`)."""
    import numpy as np

    from stlm_core.bench import measure_latency, peak_memory_mb, reset_peak_memory

    row: dict[str, Any] = {"model": name, "backend": backend, "precision": precision, "threads": threads}
    if backend in ("eager", "torch.compile"):
        import torch

        torch.set_num_threads(threads)
        graph, size = build_graph(name)
        if backend == "torch.compile":
            graph = torch.compile(graph)

        def run(batch):
            with torch.inference_mode():
                return graph(torch.from_numpy(batch))
        row["file_mb"] = None
    else:
        from stlm_core.deploy.runtime import ExportedModel

        model = ExportedModel.load(model_file, threads, backend=backend, sidecar=False)
        size = model.input_size
        run = model
        row["file_mb"] = _file_mb(Path(model_file))
    reset_peak_memory()
    one = np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)
    eight = np.repeat(one, 8, axis=0)
    latency = measure_latency(lambda: run(one), warmup=warmup, runs=runs)
    times = sorted(latency["times_ms"])
    row.update(median_ms=latency["median_ms"], p95_ms=float(np.percentile(times, 95)), runs=runs, warmup=warmup)
    batch = measure_latency(lambda: run(eight), warmup=1, runs=max(2, runs // 10))
    row["images_per_s_b8"] = 8000.0 / batch["median_ms"]
    row["peak_rss_mb"] = peak_memory_mb()
    row["input_size"] = size
    return row


def _file_mb(path: Path) -> float:
    weights = path.with_suffix(".bin") if path.suffix == ".xml" else path
    return round(weights.stat().st_size / 2**20, 2)


def bench_deploy(models: list[str] | None = None, backends: list[str] | None = None, threads: list[int] | None = None,
                 runs: int = 20, warmup: int = 3, workdir: str | Path = "runs/bench/deploy", int8: bool = True,
                 progress: bool = True, row_timeout_s: float = 1800.0) -> list[dict[str, Any]]:
    """Every (model, backend, precision, threads) row, each measured in a fresh process; a row that fails (e.g.
    ``torch.compile`` without a working compiler) or takes longer than ``row_timeout_s`` (its process group is
    killed: a hang guard, e.g. for a compile that does not finish) carries ``error`` instead of timings."""
    from tqdm import tqdm

    models = list(models or MODELS)
    backends = list(backends or BACKENDS)
    threads = list(threads or [1, 2])
    unknown = [m for m in models if m not in MODELS] + [b for b in backends if b not in BACKENDS]
    if unknown:
        from stlm_core.errors import StlmError

        raise StlmError(f"unknown model or backend {unknown}; models: {', '.join(MODELS)}; backends: "
                        f"{', '.join(BACKENDS)}.")
    files = export_models(models, Path(workdir), int8) if {"onnxruntime", "openvino"} & set(backends) else {}
    jobs = []
    for name in models:
        for backend in backends:
            precisions = ["fp32"] + (["int8"] if (name, "int8") in files and backend in ("onnxruntime", "openvino")
                                     else [])
            jobs += [(name, backend, p, t) for p in precisions for t in threads]
    rows = []
    for name, backend, precision, n_threads in tqdm(jobs, desc="bench deploy", disable=not progress):
        model_file = str(files.get((name, precision), "")) or None
        args = json.dumps([name, backend, precision, n_threads, runs, warmup, model_file])
        code = f"import json, sys; from stlm_core.deploy.bench import measure_one; print(json.dumps(measure_one(*json.loads({args!r}))))"
        returncode, stdout, stderr = _run_isolated([sys.executable, "-c", code], row_timeout_s,
                                                   {**os.environ, "OMP_NUM_THREADS": str(n_threads)})
        if returncode == 0:
            rows.append(json.loads(stdout.strip().splitlines()[-1]))
        else:
            rows.append({"model": name, "backend": backend, "precision": precision, "threads": n_threads,
                         "error": (stderr.strip().splitlines() or ["failed"])[-1][:300]})
    return rows


def _run_isolated(command: list[str], timeout_s: float, env: dict[str, str]) -> tuple[int, str, str]:
    """(return code, stdout, stderr) of ``command`` in its own process group; after ``timeout_s`` the whole group
    (compiler workers included) is killed and stderr says so."""
    import signal

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
        return process.returncode, stdout, stderr
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return -9, "", f"did not finish within {timeout_s:.0f} s (hang guard; the row's process group was killed)"


def speed_ratio_table(rows: list[dict[str, Any]]):
    """Per backend, precision and threads: PatchCore-Lite0 / STLM-cpu and PatchCore-WRN50 / STLM-paper median
    latency ratios (> 1: STLM is faster), as the paper's "8x faster than PatchCore" reads."""
    import pandas as pd

    frame = pd.DataFrame([r for r in rows if "error" not in r])
    if frame.empty:
        return frame
    table = frame.pivot_table(index=["backend", "precision", "threads"], columns="model", values="median_ms")
    out = pd.DataFrame(index=table.index)
    pairs = {"PatchCore-Lite0 / STLM cpu (256 px)": ("patchcore_lite0_256", "stlm_cpu_256"),
             "PatchCore-WRN50 / STLM paper": ("patchcore_wrn50_224", "stlm_paper_1024")}
    for label, (patchcore, stlm) in pairs.items():
        if patchcore in table and stlm in table:
            out[label] = table[patchcore] / table[stlm]
    return out


RECORDED = Path(__file__).with_name("recorded_bench.json")


def record_bench(rows: list[dict[str, Any]], path: str | Path = RECORDED, **provenance: Any) -> Path:
    """Write benchmark rows (``stlm bench deploy``, ``stlm bench int8``) with their provenance (machine GFLOPS, date,
    commit, a note) as one JSON."""
    from stlm_core.fileio import atomic_write_json

    return atomic_write_json(Path(path), {"provenance": provenance, "rows": rows})


def load_recorded_bench(path: str | Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, provenance) of a recorded benchmark (default: the deploy benchmark recorded with this package)."""
    data = json.loads(Path(path or RECORDED).read_text())
    return data["rows"], data["provenance"]


def latency_table(rows: list[dict[str, Any]]):
    """Median batch-1 latency (ms) per model (rows) and backend / precision / threads (columns); failed rows
    are left out."""
    import pandas as pd

    frame = pd.DataFrame([r for r in rows if "error" not in r])
    if frame.empty:
        return frame
    frame["setting"] = frame["backend"] + " " + frame["precision"] + ", " + frame["threads"].astype(str) + " thr"
    return frame.pivot_table(index="model", columns="setting", values="median_ms").round(1)


def describe_deploy(rows: list[dict[str, Any]]) -> list[str]:
    """Sentences: the fastest setting of STLM cpu and of PatchCore-Lite0 (same input size), the ratio between them,
    and each one's speed-up over eager PyTorch at the same thread count."""
    good = [r for r in rows if "error" not in r]
    sentences = []
    best = {}
    for model in ("stlm_cpu_256", "patchcore_lite0_256"):
        mine = [r for r in good if r["model"] == model]
        if not mine:
            continue
        top = min(mine, key=lambda r: r["median_ms"])
        eager = [r for r in mine if r["backend"] == "eager" and r["threads"] == top["threads"]]
        speedup = f", {eager[0]['median_ms'] / top['median_ms']:.1f}x eager PyTorch's {eager[0]['median_ms']:.0f} ms" \
            if eager else ""
        sentences.append(f"{model}: fastest with {top['backend']} {top['precision']} at {top['threads']} thread(s), "
                         f"{top['median_ms']:.0f} ms per image{speedup}.")
        best[model] = top
    if len(best) == 2:
        ratio = best["patchcore_lite0_256"]["median_ms"] / best["stlm_cpu_256"]["median_ms"]
        sentences.append(f"Best against best, PatchCore-Lite0 takes {ratio:.2f}x STLM cpu's time: STLM is "
                         + (f"{ratio:.1f}x faster" if ratio > 1 else f"{1 / ratio:.1f}x slower")
                         + " on this CPU (the paper: about 9x faster, on a GPU, against PatchCore with WideResNet-50).")
    return sentences


RATIO_PAIRS = {"PatchCore-WRN50 (224 px) / STLM paper (1024 px)": ("patchcore_wrn50_224", "stlm_paper_1024"),
               "PatchCore-Lite0 / STLM cpu (256 px)": ("patchcore_lite0_256", "stlm_cpu_256")}


def best_backend_ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per pair of :data:`RATIO_PAIRS`: each model at its fastest measured setting (backend, precision, threads)
    and the PatchCore / STLM latency ratio (> 1: STLM is faster)."""
    good = [r for r in rows if "error" not in r]
    out = {}
    for label, (patchcore, stlm) in RATIO_PAIRS.items():
        best = {m: min((r for r in good if r["model"] == m), key=lambda r: r["median_ms"], default=None)
                for m in (patchcore, stlm)}
        if None in best.values():
            continue
        out[label] = {"ratio": best[patchcore]["median_ms"] / best[stlm]["median_ms"],
                      "patchcore": best[patchcore], "stlm": best[stlm]}
    return out
