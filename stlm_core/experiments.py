"""Run or reuse one method on one category: the calls the notebooks (and the study workflow) make.

The three functions have the same shape: they build the method's config with ``from_profile``, plan the run once
(:class:`~stlm_core.runs.Run`: the run id hashes config, dataset, category, data and weights identities), return
the run directory when that run has finished, and otherwise call the library entry point with the planned run. A
run killed part-way (a notebook interrupted, a machine rebooted) continues from its last checkpoint when called
again, as a workflow job does; ``force=True`` starts it from zero. A different configuration gets a different
directory; nothing here overwrites another configuration's results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stlm_core.data.spec import DataSpec


def stlm_run(dataset: str, root: str | Path, category: str, *, profile: str = "cpu", runs_dir: str | Path = "runs",
             force: bool = False, limit: int | None = None, dtd: str | Path | None = None, device: str = "auto",
             progress: bool = False, **overrides: Any) -> Path:
    """Train and evaluate STLM on one category (or reuse the finished run, or continue a killed one); returns the
    run directory.

    ``overrides``: :class:`~stlm_core.stlm.config.StlmConfig` fields (e.g. ``seed=1``, ``use_fa=False``).
    """
    from stlm_core.stlm import StlmConfig
    from stlm_core.stlm.training import plan_stlm, train

    config = StlmConfig.from_profile(profile, **overrides)
    data = DataSpec(dataset, root, category, limit)
    run = plan_stlm(config, data, dtd=dtd, runs_dir=runs_dir)
    if run.is_finished and not force:
        return run.run_dir
    return train(config, data, planned=run, device=device, resume="auto", force=force, progress=progress)


def clipsam_run(dataset: str, root: str | Path, category: str, *, profile: str = "cpu",
                runs_dir: str | Path = "runs", force: bool = False, limit: int | None = None,
                adapters: str | Path | None = None, device: str = "auto", progress: bool = False,
                **overrides: Any) -> Path:
    """Run the zero-shot CLIP-SAM cascade on one category (or reuse the finished run); returns the run directory.

    ``overrides``: :class:`~stlm_core.clipsam.config.ClipSamConfig` fields (e.g. ``tau=0.4``, ``cps_stages=1``).
    """
    import warnings

    from stlm_core.clipsam import ClipSamConfig, run
    from stlm_core.clipsam.zeroshot import adapters_identity, effective_config, plan_clipsam

    config = ClipSamConfig.from_profile(profile, **overrides)
    data = DataSpec(dataset, root, category, limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run itself repeats the localiser note
        effective = effective_config(config, adapters)
    planned = plan_clipsam(effective, data, adapters_identity(adapters), runs_dir=runs_dir)
    if planned.is_finished and not force:
        return planned.run_dir
    return run(effective, data, planned=planned, adapters=adapters, device=device, force=True, progress=progress)


def patchcore_run(dataset: str, root: str | Path, category: str, *, profile: str = "cpu",
                  runs_dir: str | Path = "runs", force: bool = False, device: str = "auto", progress: bool = False,
                  **overrides: Any) -> Path:
    """Fit and evaluate the PatchCore baseline on one category (or reuse the finished run)."""
    from stlm_core.baselines.patchcore_run import PatchCoreConfig, plan_patchcore, run

    config = PatchCoreConfig.from_profile(profile, **overrides)
    data = DataSpec(dataset, root, category)
    planned = plan_patchcore(config, data, runs_dir=runs_dir)
    if planned.is_finished and not force:
        return planned.run_dir
    return run(config, data, planned=planned, device=device, force=True, progress=progress)
