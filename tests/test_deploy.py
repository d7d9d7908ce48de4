"""Deployment: `stlm export` files reproduce the eager maps (onnxruntime and OpenVINO, fp32 and int8), and
`stlm predict` runs without torch and reports bad input with a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stlm_core.errors import StlmError


REPO = Path(__file__).resolve().parents[1]
FP32_TOLERANCE = 1e-4          # absolute, on STLM maps in [0, 1]
PATCHCORE_RELATIVE = 1e-5      # PatchCore maps are distances (tens): 1e-5 of the map's largest value
INT8_AUROC_TOLERANCE = 0.05    # pixel AUROC of the int8 model within this of the fp32 model's


def _run_stlm(root: Path, runs: Path, dataset: str, category: str) -> Path:
    """A short run of the cpu recipe (EfficientNet-Lite0 streams, FA head) at 64 px: what int8 export supports."""
    import torch

    from stlm_core.experiments import stlm_run

    torch.set_num_threads(1)
    return stlm_run(dataset, root, category, profile="cpu", runs_dir=runs, device="cpu", image_size=64,
                    eval_size=64, train_steps=4)


def _run_patchcore(root: Path, runs: Path, dataset: str, category: str) -> Path:
    from stlm_core.experiments import patchcore_run

    # 128 px (16 x 16 patches): at the smoke profile's 64 px the int8 maps lose ~10 points of pixel AUROC (9-10
    # measured on two synthetic categories), at 128 px 1.4-2.7, at the cpu profile's 256 px at most 0.9
    return patchcore_run(dataset, root, category, profile="smoke", runs_dir=runs, device="cpu", image_size=128,
                         eval_size=128)


def _exported_maps(model_file: Path, run_dir: Path):
    from stlm_core.deploy.accuracy import exported_maps

    return exported_maps(model_file, run_dir, threads=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synthetic_root):
    """STLM (cpu recipe, 64 px) and PatchCore (smoke) runs on one synthetic category, exported in every format."""
    from stlm_core.deploy.export import export_run

    runs = tmp_path_factory.mktemp("deploy_runs")
    stlm = _run_stlm(synthetic_root, runs, "synthetic", "carpet_like")
    patchcore = _run_patchcore(synthetic_root, runs, "synthetic", "carpet_like")
    files = {}
    for fmt in ("onnx", "openvino"):
        files["stlm", fmt, "fp32"] = export_run(stlm, fmt)
        files["stlm", fmt, "int8"] = export_run(stlm, fmt, int8=True, calibration=8)
        files["patchcore", fmt, "fp32"] = export_run(patchcore, fmt)
        files["patchcore", fmt, "int8"] = export_run(patchcore, fmt, int8=True, calibration=8)
    return {"stlm": stlm, "patchcore": patchcore, "files": files}


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("method", ["stlm", "patchcore"])
def test_fp32_export_reproduces_the_eager_maps_and_ranking(exported, method, fmt):
    eager, maps, scores = _exported_maps(exported["files"][method, fmt, "fp32"], exported[method])
    reference = eager.maps[eager.primary]
    tolerance = FP32_TOLERANCE if method == "stlm" else PATCHCORE_RELATIVE * float(np.abs(reference).max())
    assert np.abs(maps - reference).max() <= tolerance
    assert np.array_equal(np.argsort(scores, kind="stable"), np.argsort(eager.scores[eager.primary], kind="stable"))
    sidecar = json.loads(Path(str(exported["files"][method, fmt, "fp32"]) + ".json").read_text())
    assert sidecar["method"] == method and sidecar["precision"] == "fp32" and sidecar["opset"] >= 13
    assert sidecar["input"]["batch"] == "any"  # EfficientNet and PatchCore graphs keep a dynamic batch axis
    assert sidecar["source_run"]["weights"] and len(sidecar["model_sha256"]) == 64
    assert sidecar["versions"]["onnxruntime" if fmt == "onnx" else "openvino"]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("method", ["stlm", "patchcore"])
def test_int8_keeps_the_pixel_auroc(exported, method, fmt):
    from stlm_core.metrics import compute_metrics

    eager, maps, scores = _exported_maps(exported["files"][method, fmt, "int8"], exported[method])
    fp32 = compute_metrics(masks=eager.masks, maps=eager.maps[eager.primary], labels=eager.labels,
                           image_scores=eager.scores[eager.primary])
    int8 = compute_metrics(masks=eager.masks, maps=maps, labels=eager.labels, image_scores=scores)
    assert abs(int8["pixel_auroc"] - fp32["pixel_auroc"]) <= INT8_AUROC_TOLERANCE
    weights = {precision: exported["files"][method, fmt, precision] for precision in ("int8", "fp32")}
    if fmt == "openvino":  # the IR's weights are in the .bin beside the .xml
        weights = {k: v.with_suffix(".bin") for k, v in weights.items()}
    assert weights["int8"].stat().st_size < weights["fp32"].stat().st_size
    sidecar = json.loads(Path(str(exported["files"][method, fmt, "int8"]) + ".json").read_text())
    assert sidecar["precision"] == "int8" and sidecar["quantisation"]["calibration_images"] == 8


def test_int8_patchcore_quantises_the_backbone_and_keeps_its_distances_in_fp32(exported):
    """PatchCore's 1-NN distances to the memory bank collapse when quantised: only backbone convolutions may read
    int8 weights, and the bank stays an fp32 matrix."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(exported["files"]["patchcore", "onnx", "int8"]))
    producers = {out: node for node in model.graph.node for out in node.output}
    initialisers = {t.name: t for t in model.graph.initializer}
    quantised = [node.name for node in model.graph.node if node.op_type in ("Conv", "MatMul", "Gemm")
                 and node.input[1] in producers and producers[node.input[1]].op_type == "DequantizeLinear"]
    assert quantised and all(name.startswith("/backbone/") for name in quantised)
    matmul = next(node for node in model.graph.node if node.op_type == "MatMul" and not node.name.startswith("/backbone/"))
    assert all(producers.get(name) is None or producers[name].op_type != "DequantizeLinear" for name in matmul.input)
    banks = [numpy_helper.to_array(initialisers[n]) for n in matmul.input if n in initialisers]
    banks += [numpy_helper.to_array(initialisers[i]) for n in matmul.input if n in producers
              for i in producers[n].input if i in initialisers]
    assert any(b.dtype == np.float32 and b.ndim == 2 for b in banks)
    sidecar = json.loads(Path(str(exported["files"]["patchcore", "onnx", "int8"]) + ".json").read_text())
    assert "NNCF" in sidecar["quantisation"]["method"]


def test_export_on_the_real_bottle_sample(tmp_path, sample_root):
    """On real images: the fp32 export reproduces the eager maps within the tolerance."""
    from stlm_core.deploy.export import export_run

    run = _run_stlm(sample_root, tmp_path / "runs", "mvtec", "bottle")
    eager, maps, scores = _exported_maps(export_run(run, "onnx"), run)
    assert np.abs(maps - eager.maps[eager.primary]).max() <= FP32_TOLERANCE
    assert np.array_equal(np.argsort(scores, kind="stable"), np.argsort(eager.scores[eager.primary], kind="stable"))


def _predict(*args: str) -> subprocess.CompletedProcess:
    """`stlm predict` in a fresh interpreter where importing torch fails: the command must not need it."""
    code = ("import sys; sys.modules['torch'] = None; from stlm_core.cli import main; "
            f"sys.exit(main({['predict', *args]!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO)


def test_predict_writes_overlays_and_scores_without_torch(exported, tmp_path):
    model = exported["files"]["stlm", "onnx", "fp32"]
    images = Path(json.loads((exported["stlm"] / "data.json").read_text())["root"]) / "carpet_like" / "test"
    result = _predict("--model", str(model), "--input", str(images), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    n_images = len([p for p in images.rglob("*.png")])
    assert rows[0] == "file,score" and len(rows) == n_images + 1
    assert len(list((tmp_path / "out").glob("*.png"))) == n_images


def test_predict_reports_bad_input_with_exit_2_and_no_traceback(exported, tmp_path):
    model = exported["files"]["stlm", "onnx", "fp32"]
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    truncated = tmp_path / "stlm.onnx"
    truncated.write_bytes(model.read_bytes()[:4000])
    (tmp_path / "stlm.onnx.json").write_text(Path(str(model) + ".json").read_text())
    wrong_size = tmp_path / "sized" / "stlm.onnx"
    wrong_size.parent.mkdir()
    wrong_size.write_bytes(model.read_bytes())
    sidecar = json.loads(Path(str(model) + ".json").read_text())
    sidecar["input"]["size"] = 128
    (wrong_size.parent / "stlm.onnx.json").write_text(json.dumps(sidecar))
    cases = {"not_image": (("--model", str(model), "--input", str(not_image)), str(not_image)),
             "truncated": (("--model", str(truncated), "--input", str(not_image)), str(truncated)),
             "wrong_size": (("--model", str(wrong_size), "--input", str(not_image)), "takes 64x64 inputs")}
    for name, (args, expected) in cases.items():
        result = _predict(*args, "--out", str(tmp_path / name), "--quiet")
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert expected in result.stderr and "Traceback" not in result.stderr, (name, result.stderr[-2000:])


def test_bench_deploy_measures_each_row_in_its_own_process(tmp_path):
    """One real row per backend (PatchCore-Lite0, the cheapest model), and the ratio table from rows."""
    from stlm_core.deploy.bench import bench_deploy, speed_ratio_table

    rows = bench_deploy(["patchcore_lite0_256"], ["eager", "onnxruntime"], [1], runs=2, warmup=1,
                        workdir=tmp_path, progress=False)
    assert [(r["backend"], r["precision"]) for r in rows] == [("eager", "fp32"), ("onnxruntime", "fp32"),
                                                              ("onnxruntime", "int8")]
    for row in rows:
        assert "error" not in row, row
        assert row["median_ms"] > 0 and row["p95_ms"] >= row["median_ms"] * 0.5 and row["peak_rss_mb"] > 0
        assert row["images_per_s_b8"] > 0 and row["input_size"] == 256
    assert rows[1]["file_mb"] > 1  # backbone and memory bank
    fake = [{"model": m, "backend": "onnxruntime", "precision": "fp32", "threads": 1, "median_ms": ms}
            for m, ms in (("stlm_cpu_256", 100.0), ("patchcore_lite0_256", 50.0))]
    assert speed_ratio_table(fake).iloc[0, 0] == 0.5  # PatchCore twice as fast: STLM is 2x slower


def test_the_paper_architecture_exports_and_runs_one_image(tmp_path):
    """STLM at the paper's size (TinyViT students, shared decoder, FA head at 1024 px; seeded random weights, no
    official checkpoint needed for the graph): exported, run by onnxruntime, equal to eager. TinyViT's patch merging
    freezes the traced batch size, so the file takes one image at a time and the runtime feeds a batch image by
    image (before this, a batch of two failed in onnxruntime)."""
    import torch

    from stlm_core.deploy.bench import build_graph
    from stlm_core.deploy.export import export_onnx
    from stlm_core.deploy.runtime import ExportedModel

    torch.set_num_threads(1)
    graph, size = build_graph("stlm_paper_1024")
    assert size == 1024
    path = export_onnx(graph, size, tmp_path / "stlm_paper.onnx")
    (tmp_path / "stlm_paper.onnx.json").write_text(json.dumps({"input": {"size": size}}))
    images = np.random.default_rng(0).uniform(0, 255, (2, 3, size, size)).astype(np.float32)
    model = ExportedModel.load(path, threads=1)
    assert model.fixed_batch
    maps, scores = model(images)
    with torch.inference_mode():
        eager_map, eager_score = graph(torch.from_numpy(images))
    assert maps.shape == tuple(eager_map.shape) and np.abs(maps - eager_map.numpy()).max() <= FP32_TOLERANCE
    assert np.abs(scores - eager_score.numpy()).max() <= FP32_TOLERANCE


def test_export_accuracy_rows_start_from_the_runs_own_record(exported):
    from stlm_core.deploy.accuracy import describe_int8_cost, export_accuracy
    from stlm_core.runs import read_run

    table = export_accuracy([exported["stlm"], exported["patchcore"]], ["onnx"], calibration=8, threads=1)
    assert set(table["backend"]) == {"onnxruntime"}
    assert table.groupby("method")["precision"].apply(sorted).to_dict() == {
        "patchcore": ["eager", "fp32", "int8"], "stlm": ["eager", "fp32", "int8"]}
    stlm = table[table["method"] == "stlm"].set_index("precision")
    record = read_run(exported["stlm"])["metrics"]
    assert stlm.loc["eager", "pixel_auroc"] == pytest.approx(record["pixel_auroc"])
    assert stlm.loc["fp32", "pixel_auroc"] == pytest.approx(record["pixel_auroc"], abs=1e-3)
    assert abs(stlm.loc["int8", "pixel_auroc"] - record["pixel_auroc"]) <= INT8_AUROC_TOLERANCE
    assert [s.split(":")[0] for s in describe_int8_cost(table)] == ["patchcore in onnxruntime", "stlm in onnxruntime"]


def test_recorded_int8_accuracy_loads_and_renders():
    import pandas as pd

    from stlm_core.deploy.accuracy import RECORDED_INT8, describe_int8_cost, int8_table
    from stlm_core.deploy.bench import load_recorded_bench

    rows, provenance = load_recorded_bench(RECORDED_INT8)
    assert provenance["gflops"] > 0 and provenance["note"]
    table = int8_table(rows)
    assert ("pixel_auroc", "int8") in table.columns and ("mvtec", "bottle") in [i[1:3] for i in table.index]
    assert {i[3] for i in table.index} == {"onnxruntime", "openvino"}
    assert table[("pixel_auroc", "int8")].notna().all()  # both methods, both backends
    eager, fp32 = table[("pixel_auroc", "eager")], table[("pixel_auroc", "fp32")]
    assert (eager - fp32).abs().max() < 0.01  # the fp32 export is the eager run (values in %)
    sentences = describe_int8_cost(pd.DataFrame(rows))
    assert [s.split(":")[0] for s in sentences] == [f"{m} in {b}" for m in ("patchcore", "stlm")
                                                   for b in ("onnxruntime", "openvino")]


def test_a_bench_row_that_hangs_is_killed_and_recorded(tmp_path):
    import os

    from stlm_core.deploy.bench import _run_isolated

    code, _, stderr = _run_isolated([sys.executable, "-c", "import time; time.sleep(60)"], 1, dict(os.environ))
    assert code != 0 and "did not finish within 1 s" in stderr


def test_knn_search_in_the_graph_and_with_faiss_agree(tmp_path):
    """The in-graph search of the PatchCore export and faiss's exact index find the same nearest distances."""
    from stlm_core.deploy.knn import SEARCHES, bench_knn, describe_knn, knn_table

    rows = bench_knn(("patchcore_lite0_256",), threads=(1,), runs=2, warmup=0)
    assert [r["search"] for r in rows] == list(SEARCHES)
    for row in rows:
        assert row["median_ms"] > 0 and row["max_rel_diff"] < 1e-4, row
        assert row["queries"] == 32 * 32 and row["dim"] > 0 and row["bank"] > 0
    assert len(knn_table(rows)) == len(SEARCHES)
    assert describe_knn(rows)[0].startswith("patchcore_lite0_256, 1 thread(s): fastest ")


def test_recorded_knn_search_loads_and_renders():
    from stlm_core.deploy.bench import load_recorded_bench
    from stlm_core.deploy.knn import KNN_MODELS, RECORDED_KNN, SEARCHES, describe_knn, knn_table

    rows, provenance = load_recorded_bench(RECORDED_KNN)
    assert provenance["gflops"] > 0 and provenance["note"]
    assert {(r["model"], r["search"]) for r in rows} == {(m, s) for m in KNN_MODELS for s in SEARCHES}
    assert all(r["max_rel_diff"] < 1e-4 for r in rows)  # both ways find the same distances
    assert len(knn_table(rows)) == len(KNN_MODELS) * len(SEARCHES) and len(describe_knn(rows)) == 2 * len(KNN_MODELS)
