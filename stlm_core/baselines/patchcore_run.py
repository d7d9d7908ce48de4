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

from stlm_core.configs import PROFILE_TABLES, ProfileConfig
from stlm_core.data.spec import DataSpec
from stlm_core.errors import ConfigError
from stlm_core.runs import Run, RunMaps
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


def plan_patchcore(config: PatchCoreConfig, data: DataSpec, *, runs_dir: str | Path = "runs",
                   run_dir: str | Path | None = None) -> Run:
    """The :class:`~stlm_core.runs.Run` of PatchCore with ``config`` on ``data`` (its record names the backbone's
    weights identity)."""
    from stlm_core.modeling.efficientnet_lite import VARIANTS, weights_identity

    weights = weights_identity(config.backbone) if config.backbone in VARIANTS else "random-init"
    return Run.plan("patchcore", config, data, {"backbone": weights}, runs_dir=runs_dir, run_dir=run_dir)


def run(config: PatchCoreConfig, data: DataSpec, *, run_dir: str | Path | None = None,
        runs_dir: str | Path = "runs", device: str = "auto", force: bool = False, save_maps: bool = True,
        progress: bool = True, planned: Run | None = None) -> Path:
    """Fit PatchCore on the category's normal training images, evaluate the test split; returns the run dir.
    ``planned``: the run of :func:`plan_patchcore` (planned here when not given)."""
    import torch

    device = resolve_device(device)
    data.validate(("train", "test"), action=f"run PatchCore on {data.dataset}/{data.category}")
    the_run = planned or plan_patchcore(config, data, runs_dir=runs_dir, run_dir=run_dir)
    with the_run.writing(force=force):
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
        the_run.finish(run_maps, profile=config.profile, device=device, seed=config.seed, save=save_maps,
                       timings={"train_s": fit_s, "infer_s": infer_s, "infer_ms_per_image": 1000 * infer_s / n_images},
                       memory_bank=int(model.memory_bank.shape[0]), image_size=config.image_size,
                       eval_size=config.eval_size)
    return the_run.run_dir
