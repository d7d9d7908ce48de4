"""Run or reuse one method on one category: the calls the notebooks make.

A run is reused when its directory already holds ``metrics.json`` for the same configuration (the directory
name is derived from the configuration, so a different configuration gets a different directory); ``force=True``
reruns it. Nothing here hides a different configuration's results: :func:`stlm_core.results.prepare_run_dir`
refuses to overwrite them.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from stlm_core.results import config_id, has_metrics


def stlm_run(dataset: str, root: str | Path, category: str, profile: str = "smoke", runs_dir: str | Path = "runs",
             force: bool = False, seed: int = 0, progress: bool = False, **overrides: Any) -> Path:
    """Train and evaluate STLM on one category (or reuse the finished run); returns the run directory.

    The run directory is the one ``stlm train`` picks by default, ``runs_dir/stlm/<dataset>/<category>/<id>``.
    Maps are saved (``maps.npz``) for the qualitative figures.
    """
    from stlm_core.results import run_dir_for
    from stlm_core.stlm.config import profile_config
    from stlm_core.stlm.pseudo_anomaly import texture_source
    from stlm_core.stlm.train import run_config, train_stlm

    config = profile_config(profile, seed=seed, **overrides)
    textures = texture_source(None)
    run_dir = run_dir_for(runs_dir, "stlm", dataset, category, run_config(config, dataset, category, textures.name))
    if has_metrics(run_dir) and (Path(run_dir) / "maps.npz").is_file() and not force:
        return Path(run_dir)
    train_stlm(config, dataset, root, category, run_dir=run_dir, force=True, save_maps=True, progress=progress)
    return Path(run_dir)


def clipsam_run(dataset: str, root: str | Path, category: str, profile: str = "smoke", runs_dir: str | Path = "runs",
                force: bool = False, seed: int = 0, limit: int | None = None, extra_args: list[str] | None = None
                ) -> Path:
    """Run the zero-shot CLIP-SAM cascade (``stlm zeroshot``) on one category, or reuse the finished run.

    The run directory is ``runs_dir/clipsam/<dataset>/<category>/<id>``, the id hashed from the arguments.
    Maps and prompt points are saved for the figures.
    """
    from stlm_core.cli import main

    arguments = ["--dataset", dataset, "--root", str(root), "--category", category, "--profile", profile,
                 "--seed", str(seed), *(["--limit", str(limit)] if limit else []), *(extra_args or [])]
    run_dir = Path(runs_dir) / "clipsam" / dataset / category / config_id({"args": arguments})
    if has_metrics(run_dir) and (run_dir / "maps.npz").is_file() and not force:
        return run_dir
    # The command's console summary would repeat what the notebooks tabulate: keep it, show it only on failure.
    console = io.StringIO()
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        status = main(["zeroshot", *arguments, "--out", str(run_dir), "--save-maps", "--quiet", "--force"])
    if status != 0:
        raise RuntimeError(f"stlm zeroshot failed for {dataset}/{category} (exit status {status}):\n"
                           f"{console.getvalue()}")
    return run_dir
