"""STLM (arXiv 2402.19145): SAM-guided two-stream lightweight anomaly detection.

Public entry points (the same shape as :func:`stlm_core.clipsam.run`)::

    from stlm_core.stlm import StlmConfig, train, evaluate
    from stlm_core.data import DataSpec
    run_dir = train(StlmConfig.from_profile("cpu"), DataSpec("mvtec", "data/mvtec", "bottle"))

Modules: :mod:`.config` (settings; values per profile in ``profiles.yaml``), :mod:`.build` (config -> registry
builders), :mod:`.model` (the inference model and its maps), :mod:`.pseudo_anomaly`, :mod:`.training`,
:mod:`.evaluation`, :mod:`.checkpoint`, :mod:`.bench`. The network parts live in :mod:`stlm_core.modeling`.
Importing this package is light; torch is imported when an entry point is first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stlm_core.stlm.config import StlmConfig


def train(config: StlmConfig, data: Any, **options: Any) -> Path:
    """Train (and evaluate) STLM on one category; see :func:`stlm_core.stlm.training.train`."""
    from stlm_core.stlm.training import train as _train

    return _train(config, data, **options)


def evaluate(run_dir: str | Path, **options: Any) -> Path:
    """Evaluate a trained run; see :func:`stlm_core.stlm.evaluation.evaluate`."""
    from stlm_core.stlm.evaluation import evaluate as _evaluate

    return _evaluate(run_dir, **options)


__all__ = ["StlmConfig", "train", "evaluate"]
