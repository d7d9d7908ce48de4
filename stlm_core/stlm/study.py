"""Learning curves of STLM variants on the CPU: pixel AUROC / AUPRO / image AUROC of the FA and w/o-FA maps
against training steps, from one training run per variant (the model is evaluated in memory at chosen steps).

Used by ``stlm bench learning`` and the book's learning-study chapter. Variants are named sets of config
overrides (:data:`VARIANTS`), each applied on top of a profile, so every row says exactly what changed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from stlm_core.data.spec import DataSpec

# Named variants: overrides on top of the profile they are run with. "paper_faithful" is the official code's
# recipe at the profile's resolution (random TinyViT students, shared decoder, jointly trained FA head).
VARIANTS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "paper_faithful": {"teacher": "efficientnet_lite0", "student": "tinyvit", "use_plain": True, "fa_prior": None,
                       "wo_fa_combine": "product", "student_freeze_bn": False},
    "paper_faithful_sam_teacher": {"teacher": "reduced", "student": "tinyvit", "use_plain": True, "fa_prior": None,
                                   "wo_fa_combine": "product", "student_freeze_bn": False},
    "random_teacher": {"teacher_pretrained": False},
    "plain_stream": {"use_plain": True},
    "no_fa_prior": {"fa_prior": None},
    "product_map": {"wo_fa_combine": "product"},
    "student_bn_train": {"student_freeze_bn": False},
    "no_fa": {"use_fa": False},
    "one_level": {"use_decoder": False},
    "aug_prob_1": {"aug_prob": 1.0},
}


def evaluate_in_memory(model, config, data: DataSpec, images: np.ndarray, masks: np.ndarray,
                       labels: np.ndarray) -> dict[str, dict]:
    """Metrics of every map of ``model`` on preloaded test images (eval mode; restores nothing)."""
    from stlm_core.runs import RunMaps, score_maps
    from stlm_core.stlm.evaluation import infer

    model.eval()
    maps, scores = infer(model, images, config, device=next(model.parameters()).device.type, progress=False)
    n = len(labels)
    run_maps = RunMaps(primary="fa" if "fa" in maps else "wo_fa", maps=maps, scores=scores, labels=labels,
                       masks=masks, defects=np.array([""] * n), paths=np.array([""] * n))
    return score_maps(run_maps)


CURVE_FILE = "curve.json"


def variant_config(variant: str, *, profile: str = "cpu", steps: int | None = None, seed: int = 0, **extra: Any):
    """The :class:`~stlm_core.stlm.config.StlmConfig` of a named variant trained for ``steps`` steps (``None``: the
    profile's schedule)."""
    from stlm_core.stlm.config import StlmConfig

    if variant not in VARIANTS:
        from stlm_core.errors import ConfigError

        raise ConfigError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}.")
    schedule = {} if steps is None else {"train_steps": steps}
    return StlmConfig.from_profile(profile, **{**VARIANTS[variant], **extra, **schedule, "seed": seed})


def learning_curve(variant: str, data: DataSpec, *, profile: str = "cpu", steps: int | None = None,
                   eval_every: int = 100, runs_dir: str | Path = "runs", seed: int = 0, force: bool = False,
                   progress: bool = False, **extra: Any) -> list[dict]:
    """Train ``variant`` for ``steps`` optimisation steps (``None``: the profile's schedule), evaluating at every epoch end that crosses a multiple
    of ``eval_every``; returns one row per evaluation (variant, step, training seconds, ``<map>.<metric>``).

    The run is an ordinary STLM run record (final metrics, maps) with the curve in ``curve.json``; a finished run
    with its curve is reused unless ``force``.
    """
    from stlm_core.fileio import atomic_write_json, read_json
    from stlm_core.runs import is_finished, run_dir_for
    from stlm_core.stlm.pseudo_anomaly import texture_source
    from stlm_core.stlm.training import stlm_record, train

    config = variant_config(variant, profile=profile, steps=steps, seed=seed, **extra)
    record, _ = stlm_record(config, data, texture_source(None).name)
    run_dir = run_dir_for(runs_dir, record)
    curve_path = run_dir / CURVE_FILE
    if not force and is_finished(run_dir) and curve_path.is_file():
        saved = read_json(curve_path)
        if saved.get("eval_every") == eval_every:
            return saved["rows"]
    n_train = len(data.open("train"))
    total_epochs = (-(-config.train_steps // max(1, n_train // config.batch_size)) if config.train_steps
                    else config.epochs)
    test = data.load_test(config.image_size, config.eval_size, progress=False)
    images, masks, labels = test["images"], test["masks"], test["labels"]
    rows: list[dict] = []
    state = {"next": eval_every, "t0": time.perf_counter(), "eval_s": 0.0}

    def on_epoch_end(epoch: int, step: int, model) -> None:
        if step < state["next"] and epoch < total_epochs:
            return
        t = time.perf_counter()
        metrics = evaluate_in_memory(model, config, data, images, masks, labels)
        state["eval_s"] += time.perf_counter() - t
        row = {"variant": variant, "dataset": data.dataset, "category": data.category, "step": step,
               "train_s": time.perf_counter() - state["t0"] - state["eval_s"]}
        for name, values in metrics.items():
            row.update({f"{name}.{k}": v for k, v in values.items()})
        rows.append(row)
        while state["next"] <= step:
            state["next"] += eval_every

    train(config, data, run_dir=run_dir, force=True, progress=progress, on_epoch_end=on_epoch_end)
    atomic_write_json(curve_path, {"variant": variant, "eval_every": eval_every, "rows": rows})
    return rows
