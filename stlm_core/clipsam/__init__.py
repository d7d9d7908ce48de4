"""CLIP-SAM cascaded prompts (arXiv 2510.11028): zero-shot anomaly segmentation.

Public entry point (the same shape as :func:`stlm_core.stlm.train`)::

    from stlm_core.clipsam import ClipSamConfig, run
    from stlm_core.data import DataSpec
    run_dir = run(ClipSamConfig.from_profile("cpu"), DataSpec("mvtec", "data/mvtec", "bottle"))

Modules: ``config`` (settings; values per profile in ``profiles.yaml``), ``prompts`` (text ensemble),
``clip_localiser`` (the CLIP map, localiser registry), ``adapters`` (APRIL-GAN adapters), ``sam_backend`` (frozen
SAM), ``ppg`` (point prompts), ``cps`` (the cascade), ``fusion`` (final map, image score), ``pipeline`` (all of it
per image / dataset), ``zeroshot`` (run records, adapters), ``bench`` (stage timings). Importing this package is light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stlm_core.clipsam.config import ClipSamConfig


def run(config: ClipSamConfig, data: Any, **options: Any) -> Path:
    """Run the cascade on one category; see :func:`stlm_core.clipsam.zeroshot.run`."""
    from stlm_core.clipsam.zeroshot import run as _run

    return _run(config, data, **options)


def train_adapters(config: ClipSamConfig, dataset: str, root: str | Path, out: str | Path, **options: Any) -> dict:
    """Train the CLIP stage's adapters; see :func:`stlm_core.clipsam.zeroshot.train_adapters_file`."""
    from stlm_core.clipsam.zeroshot import train_adapters_file

    return train_adapters_file(config, dataset, root, out, **options)


__all__ = ["ClipSamConfig", "run", "train_adapters"]
