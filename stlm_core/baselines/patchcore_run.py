"""PatchCore as a run: the same entry-point shape and run record as STLM and CLIP-SAM, so the book scores the
baseline with the same code on the same data and device.

``run(PatchCoreConfig.from_profile("cpu"), DataSpec(...))`` fits the memory bank on ``train/good``, predicts the
test split and writes ``runs/patchcore/<dataset>/<category>/<run-id>/`` (primary map ``patchcore``), with fit and
per-image inference times in the provenance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stlm_core import runs
from stlm_core.configs import PROFILE_TABLES, ProfileConfig
from stlm_core.data.spec import DataSpec
from stlm_core.errors import ConfigError
from stlm_core.fileio import ensure_writable
from stlm_core.runs import (RunMaps, begin_run, make_provenance, mark_finished, run_dir_for, run_lock, run_record,
                            score_maps, write_metrics)
from stlm_core.runtime import resolve_device


@dataclass(frozen=True)
class PatchCoreConfig(ProfileConfig):
    """PatchCore settings; values per profile in ``baselines/profiles.yaml``."""

    PROFILE_TABLE = PROFILE_TABLES["patchcore"]
    METHOD = "patchcore"

    backbone: str = ""
    image_size: int = 0
    coreset_fraction: float = 0.0
    coreset_projection_dim: int = 0
    pool_size: int = 0
    blur_sigma: float = 0.0
    eval_size: int = 0
    seed: int = 0

    def validate(self) -> None:
        from stlm_core.baselines.patchcore import BACKBONES

        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; use one of: {', '.join(BACKBONES)}.")
        if not 0.0 < self.coreset_fraction <= 1.0:
            raise ConfigError(f"coreset_fraction must be in (0, 1], got {self.coreset_fraction}.")
        if self.image_size % 16:
            raise ConfigError(f"image_size must be a multiple of 16, got {self.image_size}.")


def build_patchcore(config: PatchCoreConfig, device: str = "cpu"):
    """The :class:`~stlm_core.baselines.patchcore.PatchCore` detector of ``config``."""
    from stlm_core.baselines.patchcore import PatchCore

    return PatchCore(backbone=config.backbone, image_size=config.image_size, coreset_fraction=config.coreset_fraction,
                     coreset_projection_dim=config.coreset_projection_dim, pool_size=config.pool_size,
                     blur=config.blur_sigma > 0, blur_sigma=config.blur_sigma or 4.0, seed=config.seed, device=device)


def patchcore_record(config: PatchCoreConfig, data: DataSpec) -> dict:
    from stlm_core.modeling.efficientnet_lite import VARIANTS, weights_identity

    weights = weights_identity(config.backbone) if config.backbone in VARIANTS else "random-init"
    return run_record("patchcore", config, data.identity(), {"backbone": weights})


def run(config: PatchCoreConfig, data: DataSpec, *, run_dir: str | Path | None = None,
        runs_dir: str | Path = "runs", device: str = "auto", force: bool = False, save_maps: bool = True,
        progress: bool = True) -> Path:
    """Fit PatchCore on the category's normal training images, evaluate the test split; returns the run dir."""
    import torch

    device = resolve_device(device)
    data.validate(("train", "test"), action=f"run PatchCore on {data.dataset}/{data.category}")
    record = patchcore_record(config, data)
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(runs_dir, record)
    ensure_writable(run_dir)
    with run_lock(run_dir):
        begin_run(run_dir, record, data, force=force)
        train_images = [s.image for s in data.open("train")]
        test = data.load_test(None, config.eval_size, progress=progress)
        n_images = len(test["labels"])
        model = build_patchcore(config, device)
        t0 = time.perf_counter()
        model.fit(train_images)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.inference_mode():
            maps, scores = model.predict(test["images"], size=config.eval_size)
        infer_s = time.perf_counter() - t0
        run_maps = RunMaps(primary="patchcore", maps={"patchcore": maps.astype(np.float32)},
                           scores={"patchcore": np.asarray(scores, np.float32)}, labels=test["labels"],
                           masks=test["masks"], defects=test["defects"], paths=test["paths"])
        provenance = make_provenance(
            profile=config.profile, device=device, weights=record["weights"],
            dataset={"name": data.dataset, "category": data.category, "files": n_images, "root": str(data.root),
                     "synthetic": data.dataset == "synthetic"},
            seed=config.seed, method="patchcore",
            timings={"train_s": fit_s, "infer_s": infer_s, "infer_ms_per_image": 1000 * infer_s / n_images},
            memory_bank=int(model.memory_bank.shape[0]), image_size=config.image_size, eval_size=config.eval_size)
        if save_maps:
            runs.save_maps(run_dir, run_maps)
        write_metrics(run_dir, score_maps(run_maps), run_maps.primary, provenance)
        mark_finished(run_dir)
    return run_dir
