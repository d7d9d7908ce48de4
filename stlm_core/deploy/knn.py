"""PatchCore's nearest-neighbour search on a CPU: inside the exported graph, or with faiss beside it?

An exported PatchCore computes each patch feature's distance to its nearest memory-bank entry inside the graph
(:class:`~stlm_core.deploy.graphs.PatchCoreGraph`: ``|f|^2 - 2 f.m + |m|^2`` with one matrix product, then the
minimum). The alternative keeps the bank out of the graph and searches it with faiss (exact ``IndexFlatL2``; an
approximate index would change the maps). :func:`bench_knn` times the search alone, both ways, on the bank and
query sizes of the benchmark models of :mod:`stlm_core.deploy.bench` (random features: the time does not depend on
the values), and checks that both find the same distances. ``stlm bench knn`` prints it; the efficiency chapter
shows the recorded run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SEARCHES = ("in-graph onnxruntime", "in-graph openvino", "faiss IndexFlatL2")
KNN_MODELS = ("patchcore_lite0_256", "patchcore_wrn50_224")
RECORDED_KNN = Path(__file__).with_name("recorded_knn.json")  # 'stlm bench knn --out' shipped here


def search_sizes(model: str) -> dict[str, int]:
    """``bank`` entries, feature ``dim`` and ``queries`` (patches of one image) of a PatchCore benchmark model."""
    from stlm_core.deploy.bench import build_graph

    graph, size = build_graph(model)
    bank, dim = graph.bank.shape
    return {"bank": int(bank), "dim": int(dim), "queries": (size // 8) ** 2}


def _nearest_distance_onnx(bank: np.ndarray, path: Path) -> Path:
    """The in-graph search of :class:`~stlm_core.deploy.graphs.PatchCoreGraph` alone, as ONNX: features (Q, D) ->
    distance to the nearest of ``bank`` (N, D), (Q,)."""
    import torch

    from stlm_core.deploy.export import OPSET
    from stlm_core.deploy.graphs import nearest_distance

    class NearestDistance(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("bank", torch.from_numpy(bank))
            self.register_buffer("bank_sq", (self.bank ** 2).sum(dim=1))

        def forward(self, flat: torch.Tensor) -> torch.Tensor:
            return nearest_distance(flat, self.bank, self.bank_sq)

    example = torch.zeros(1, bank.shape[1])
    torch.onnx.export(NearestDistance(), (example,), str(path), dynamo=False, opset_version=OPSET,
                      input_names=["features"], output_names=["distance"], dynamic_axes={"features": {0: "queries"}})
    return path


def _searchers(bank: np.ndarray, threads: int, workdir: Path) -> dict[str, Any]:
    """Callables features (Q, D) float32 -> nearest distances (Q,), one per :data:`SEARCHES`."""
    import faiss
    import onnxruntime as ort
    import openvino as ov

    onnx_file = _nearest_distance_onnx(bank, workdir / "nearest.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(str(onnx_file), "CPU", {"INFERENCE_NUM_THREADS": threads})
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(bank)
    return {
        "in-graph onnxruntime": lambda q: session.run(None, {"features": q})[0],
        "in-graph openvino": lambda q: compiled({"features": q})[0],
        "faiss IndexFlatL2": lambda q: np.sqrt(np.maximum(index.search(q, 1)[0][:, 0], 0)),
    }


def bench_knn(models: tuple[str, ...] = KNN_MODELS, threads: tuple[int, ...] = (1, 2), runs: int = 20,
              warmup: int = 3) -> list[dict[str, Any]]:
    """One row per model, search and thread count: ``median_ms`` and ``p95_ms`` of one image's search (all its
    patches against the whole bank), sizes, and ``max_rel_diff``: the largest difference to the in-graph
    onnxruntime distances, relative to the largest distance (float32 rounding: ~1e-6)."""
    from stlm_core.bench import measure_latency

    rows = []
    rng = np.random.default_rng(0)
    for model in models:
        sizes = search_sizes(model)
        bank = rng.standard_normal((sizes["bank"], sizes["dim"])).astype(np.float32)
        queries = rng.standard_normal((sizes["queries"], sizes["dim"])).astype(np.float32)
        for n_threads in threads:
            with tempfile.TemporaryDirectory() as tmp:
                searchers = _searchers(bank, n_threads, Path(tmp))
                reference = searchers["in-graph onnxruntime"](queries)
                for search, fn in searchers.items():
                    latency = measure_latency(lambda: fn(queries), warmup=warmup, runs=runs)
                    diff = float(np.abs(fn(queries) - reference).max() / np.abs(reference).max())
                    rows.append({"model": model, **sizes, "search": search, "threads": n_threads,
                                 "median_ms": latency["median_ms"],
                                 "p95_ms": float(np.percentile(latency["times_ms"], 95)), "max_rel_diff": diff})
    return rows


def knn_table(rows: list[dict[str, Any]]):
    """Median ms per model (with its bank x dim, queries) and search (rows), threads (columns)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["model"] = frame.apply(lambda r: f"{r['model']} ({r['bank']} x {r['dim']}, {r['queries']} queries)", axis=1)
    table = frame.pivot_table(index=["model", "search"], columns="threads", values="median_ms").round(2)
    table.columns = [f"{t} thread(s), ms" for t in table.columns]
    return table


def describe_knn(rows: list[dict[str, Any]]) -> list[str]:
    """Per model and thread count: the fastest search and faiss's time relative to the in-graph onnxruntime one."""
    sentences = []
    frame = {(r["model"], r["threads"], r["search"]): r["median_ms"] for r in rows}
    for model, n_threads in sorted({(r["model"], r["threads"]) for r in rows}):
        times = {s: frame[model, n_threads, s] for s in SEARCHES if (model, n_threads, s) in frame}
        best = min(times, key=times.get)
        ratio = times["faiss IndexFlatL2"] / times["in-graph onnxruntime"]
        sentences.append(f"{model}, {n_threads} thread(s): fastest {best} ({times[best]:.1f} ms); faiss takes "
                         f"{ratio:.2f}x the in-graph onnxruntime time.")
    return sentences
