"""Baselines measured on the same device and data as the methods: PatchCore.

``from stlm_core.baselines import PatchCoreConfig, run`` (the same entry-point shape as the methods).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run(config: Any, data: Any, **options: Any) -> Path:
    """Fit and evaluate PatchCore on one category; see :func:`stlm_core.baselines.patchcore_run.run`."""
    from stlm_core.baselines.patchcore_run import run as _run

    return _run(config, data, **options)


def __getattr__(name: str):
    if name == "PatchCoreConfig":
        from stlm_core.baselines.patchcore_run import PatchCoreConfig

        return PatchCoreConfig
    raise AttributeError(name)


__all__ = ["run", "PatchCoreConfig"]
