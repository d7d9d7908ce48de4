"""stlm_core: a runnable reproducibility study of STLM and the CLIP-SAM cascaded-prompt method.

The public API, one call per method and the same shape for each::

    from stlm_core import ClipSamConfig, DataSpec, StlmConfig, clipsam, load_runs, stlm
    data = DataSpec("mvtec", "data/mvtec", "bottle")
    stlm_run = stlm.train(StlmConfig.from_profile("cpu"), data)          # -> run directory
    clip_run = clipsam.run(ClipSamConfig.from_profile("cpu"), data)      # -> run directory
    load_runs("runs")                                                   # every finished run, one row each

Subpackages: ``stlm``, ``clipsam``, ``baselines`` (PatchCore), ``modeling`` (network parts and builder
registries), ``data`` (readers, synthetic data, downloads), ``metrics``; modules ``runs`` (the run-record layout),
``configs``, ``weights``, ``cli`` (the ``stlm`` command). Importing this package is light: names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_LAZY = {
    "StlmConfig": "stlm_core.stlm.config",
    "ClipSamConfig": "stlm_core.clipsam.config",
    "PatchCoreConfig": "stlm_core.baselines.patchcore_run",
    "DataSpec": "stlm_core.data.spec",
    "load_runs": "stlm_core.runs",
    "load_maps": "stlm_core.runs",
    "compute_metrics": "stlm_core.metrics",
}
_SUBPACKAGES = ("stlm", "clipsam", "baselines", "modeling", "data", "metrics", "runs", "cli")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"stlm_core.{name}")
    raise AttributeError(f"module 'stlm_core' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY, *_SUBPACKAGES]
