"""Run or reuse one method on one category: the calls the notebooks (and the study workflow) make.

Both functions have the same shape: they build the method's config with ``from_profile``, compute the run record
(the run id hashes config, dataset, category, data and weights identities), return the existing run directory
when that run has finished, and otherwise call the library entry point. A different configuration gets a
different directory; nothing here overwrites another configuration's results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stlm_core.data.spec import DataSpec
from stlm_core.runs import is_finished, run_dir_for
from stlm_core.weights import AUTO


def stlm_run(dataset: str, root: str | Path, category: str, *, profile: str = "cpu", runs_dir: str | Path = "runs",
             force: bool = False, limit: int | None = None, dtd: str | Path | None = None, device: str = "auto",
             progress: bool = False, **overrides: Any) -> Path:
    """Train and evaluate STLM on one category (or reuse the finished run); returns the run directory.

    ``overrides``: :class:`~stlm_core.stlm.config.StlmConfig` fields (e.g. ``seed=1``, ``use_fa=False``).
    """
    from stlm_core.stlm import StlmConfig, train
    from stlm_core.stlm.pseudo_anomaly import texture_source
    from stlm_core.stlm.training import stlm_record

    config = StlmConfig.from_profile(profile, **overrides)
    data = DataSpec(dataset, root, category, limit)
    record, _ = stlm_record(config, data, texture_source(dtd).name)
    run_dir = run_dir_for(runs_dir, record)
    if is_finished(run_dir) and not force:
        return run_dir
    return train(config, data, run_dir=run_dir, dtd=dtd, device=device, force=True, progress=progress)


def clipsam_run(dataset: str, root: str | Path, category: str, *, profile: str = "cpu",
                runs_dir: str | Path = "runs", force: bool = False, limit: int | None = None,
                adapters: str | Path | None = None, device: str = "auto", progress: bool = False,
                **overrides: Any) -> Path:
    """Run the zero-shot CLIP-SAM cascade on one category (or reuse the finished run); returns the run directory.

    ``overrides``: :class:`~stlm_core.clipsam.config.ClipSamConfig` fields (e.g. ``tau=0.4``, ``cps_stages=1``).
    """
    import warnings

    from stlm_core.clipsam import ClipSamConfig, run
    from stlm_core.clipsam.zeroshot import adapters_identity, clipsam_record, effective_config

    config = ClipSamConfig.from_profile(profile, **overrides)
    data = DataSpec(dataset, root, category, limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run itself repeats the localiser note
        effective = effective_config(config, adapters)
    record = clipsam_record(effective, data, adapters_identity(adapters), AUTO, AUTO)
    run_dir = run_dir_for(runs_dir, record)
    if is_finished(run_dir) and not force:
        return run_dir
    return run(effective, data, run_dir=run_dir, adapters=adapters, device=device, force=True, progress=progress)


def patchcore_run(dataset: str, root: str | Path, category: str, *, profile: str = "cpu",
                  runs_dir: str | Path = "runs", force: bool = False, device: str = "auto", progress: bool = False,
                  **overrides: Any) -> Path:
    """Fit and evaluate the PatchCore baseline on one category (or reuse the finished run)."""
    from stlm_core.baselines.patchcore_run import PatchCoreConfig, patchcore_record, run

    config = PatchCoreConfig.from_profile(profile, **overrides)
    data = DataSpec(dataset, root, category)
    run_dir = run_dir_for(runs_dir, patchcore_record(config, data))
    if is_finished(run_dir) and not force:
        return run_dir
    return run(config, data, run_dir=run_dir, device=device, force=True, progress=progress)
