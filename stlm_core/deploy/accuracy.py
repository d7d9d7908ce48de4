"""What exporting costs in accuracy: a run's test split scored by its eager maps, its fp32 export and its int8 export.

The exported models read the run's own test images (the paths in ``maps.npz``) and are scored by the same
:func:`stlm_core.metrics.compute_metrics` against the run's masks and labels, so the eager row is the run's record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

METRICS = ("pixel_auroc", "pixel_aupro", "image_auroc")
RECORDED_INT8 = Path(__file__).resolve().parent / "recorded_int8.json"  # 'stlm bench int8 --out' shipped here


def exported_maps(model_file: str | Path, run_dir: str | Path, threads: int | None = None):
    """(the run's :class:`~stlm_core.runs.RunMaps`, maps (N, H, W), image scores (N,)) of an exported model on the
    run's test images, in the run's order."""
    eager, images = _run_test_images(run_dir)
    return (eager, *_run_exported(model_file, images, threads))


def _run_test_images(run_dir: str | Path):
    """(the run's :class:`~stlm_core.runs.RunMaps`, its test images as uint8 (H, W, 3) arrays, in the maps' order)."""
    from stlm_core.deploy.runtime import read_input_image
    from stlm_core.runs import load_maps

    eager = load_maps(run_dir)
    return eager, [read_input_image(Path(p)) for p in eager.paths]


def _run_exported(model_file: str | Path, images, threads: int | None):
    """(maps (N, H, W), image scores (N,)) of an exported model on uint8 images."""
    from stlm_core.deploy.runtime import ExportedModel, to_model_input

    model = ExportedModel.load(Path(model_file), threads=threads)
    return model(to_model_input(images, model.input_size))


def export_accuracy(run_dirs: Iterable[str | Path], formats: Sequence[str] = ("onnx", "openvino"),
                    calibration: int = 32, threads: int | None = None):
    """One row per run, backend and precision: ``run`` (``method/dataset/category/id``), ``method``, ``dataset``,
    ``category``, ``backend`` (``onnxruntime`` / ``openvino`` per format of ``formats``), ``precision`` (``eager``: the
    run's own maps, repeated per backend; ``fp32``; ``int8``) and :data:`METRICS` (fractions in [0, 1]) of the primary
    map; exports are written to ``<run>/export/``."""
    import pandas as pd

    from stlm_core.deploy.export import BACKENDS, export_run
    from stlm_core.metrics import compute_metrics
    from stlm_core.runs import read_config

    rows = []
    for run_dir in map(Path, run_dirs):
        record = read_config(run_dir)
        base = {"run": "/".join(run_dir.resolve().parts[-4:]), "method": record["method"], "dataset": record["dataset"],
                "category": record["category"]}
        eager, images = _run_test_images(run_dir)  # read once, scored by every export
        reference = compute_metrics(masks=eager.masks, maps=eager.maps[eager.primary], labels=eager.labels,
                                    image_scores=eager.scores[eager.primary])
        for fmt in formats:
            backend = {**base, "backend": BACKENDS[fmt]}
            for precision in ("fp32", "int8"):
                model_file = export_run(run_dir, fmt, int8=precision == "int8", calibration=calibration)
                maps, scores = _run_exported(model_file, images, threads)
                values = compute_metrics(masks=eager.masks, maps=maps, labels=eager.labels, image_scores=scores)
                rows.append({**backend, "precision": precision, **{k: values[k] for k in METRICS}})
            rows.append({**backend, "precision": "eager", **{k: reference[k] for k in METRICS}})
    return pd.DataFrame(rows)


def describe_int8_cost(table) -> list[str]:
    """One sentence per method and backend: the largest int8 loss against fp32 over the runs, per metric, in
    points."""
    table = table.assign(backend=table["backend"]) if "backend" in table else table.assign(backend="onnxruntime")
    sentences = []
    for (method, backend), group in table.groupby(["method", "backend"]):
        if "int8" not in set(group["precision"]):
            continue
        wide = group.pivot_table(index="run", columns="precision", values=list(METRICS))
        losses = {m: 100 * float(np.max(wide[(m, "fp32")] - wide[(m, "int8")])) for m in METRICS}
        sentences.append(f"{method} in {backend}: int8 loses at most "
                         + ", ".join(f"{v:.2f} points of {k.replace('_', ' ')}" for k, v in losses.items())
                         + f" against its fp32 export over {len(wide)} run(s) (negative = int8 better).")
    return sentences


def int8_table(rows):
    """Recorded or measured :func:`export_accuracy` rows as a table: one row per method, dataset, category and
    backend, columns (metric, precision) in %."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index=["method", "dataset", "category", "backend"], columns="precision",
                              values=list(METRICS))
    order = [(m, p) for m in METRICS for p in ("eager", "fp32", "int8") if (m, p) in table.columns]
    return (100 * table[order]).round(2)
