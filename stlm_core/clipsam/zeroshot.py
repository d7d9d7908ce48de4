"""Run the zero-shot CLIP-SAM cascade on one category, and train the CLIP stage's adapters.

Entry points: :func:`run` (``stlm zeroshot``; the same shape as :func:`stlm_core.stlm.train`) and
:func:`train_adapters_file` (``stlm zeroshot-adapters train``). A run records two maps: ``cascade`` (the primary
map: CLIP + PPG + CPS + fusion) and ``clip`` (the CLIP stage alone), and per image the prompt points
(``extras.json``; points in original-image pixels (x, y), with the image's (H, W) as ``shape``).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch

from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.data.spec import DataSpec
from stlm_core.errors import StlmError
from stlm_core.fileio import ensure_writable, file_sha256
from stlm_core.runs import Run, RunMaps
from stlm_core.runtime import resolve_device
from stlm_core.weights import AUTO


def adapters_identity(adapters: str | Path | None) -> dict | None:
    """What a run records of its adapter file: path, sha256 and the metadata :func:`load_adapters` reads from
    either format (ours, or an APRIL-GAN release, whose dataset comes from its file name); ``None`` without one."""
    from stlm_core.clipsam.adapters import load_adapters

    if adapters is None:
        return None
    path = Path(adapters)
    _, meta = load_adapters(path)
    return {"file": str(path.resolve()), "sha256": file_sha256(path), "trained_on": meta.get("trained_on"),
            "categories": meta.get("categories"), "epochs": meta.get("epochs")}


def effective_config(config: ClipSamConfig, adapters: str | Path | None) -> ClipSamConfig:
    """The localiser actually used: ``adapters`` with an adapter file, else ``training_free`` (with a warning
    when the config asked for adapters)."""
    if adapters is not None:
        return config.replace(localiser="adapters")
    if config.localiser == "adapters":
        warnings.warn("no adapter file given: the CLIP stage uses the training-free (WinCLIP-style) localiser, not "
                      "APRIL-GAN adapters ('stlm zeroshot-adapters train' on another dataset makes them).",
                      stacklevel=3)
    return config.replace(localiser="training_free")


def plan_clipsam(config: ClipSamConfig, data: DataSpec, adapters: dict | None, *,
                 clip_checkpoint: str | Path | None = AUTO, sam_checkpoint: str | Path | None = AUTO,
                 runs_dir: str | Path = "runs", run_dir: str | Path | None = None) -> Run:
    """The :class:`~stlm_core.runs.Run` of a CLIP-SAM run (``adapters``: :func:`adapters_identity`); its record
    names the CLIP, SAM and adapter weights, and the data identity counts the test split only."""
    from stlm_core.weights import resolve_weights, weights_identity

    required = config.profile == "paper"
    clip = resolve_weights(config.clip_weights, required=required, path=clip_checkpoint,
                           purpose=f"the CLIP stage ({config.profile} profile)")
    sam = resolve_weights(config.sam_weights, required=required, path=sam_checkpoint,
                          purpose=f"the SAM stage ({config.profile} profile)")
    weights = {"clip": weights_identity(config.clip_weights or "clip", clip),
               "sam": weights_identity(config.sam_weights or "sam", sam),
               "adapters": f"adapters@{adapters['sha256']}" if adapters else "none"}
    return Run.plan("clipsam", config, data, weights, runs_dir=runs_dir, run_dir=run_dir, splits=("test",),
                    adapters=adapters)


def run(config: ClipSamConfig, data: DataSpec, *, run_dir: str | Path | None = None, runs_dir: str | Path = "runs",
        device: str = "auto", adapters: str | Path | None = None, clip_checkpoint: str | Path | None = AUTO,
        sam_checkpoint: str | Path | None = AUTO, force: bool = False, save_maps: bool = True,
        progress: bool = True, planned: Run | None = None) -> Path:
    """Zero-shot segmentation of one category's test split; writes the run record and returns the run dir.

    Args:
        config: settings (``ClipSamConfig.from_profile``); ``localiser`` follows ``adapters``.
        data: the category (``limit``: an evenly spaced subset of the test images).
        run_dir: output folder; default ``runs_dir/clipsam/<dataset>/<category>/<run-id>``.
        adapters: APRIL-GAN adapter file trained on ANOTHER dataset; ``None`` = training-free CLIP map.
        clip_checkpoint, sam_checkpoint: ``"auto"`` = registry lookup; a file; ``None`` = random weights.
        force: replace an existing run with a different configuration.
        planned: the run of :func:`plan_clipsam` for the effective config (planned here when not given).
    """
    from stlm_core.clipsam.pipeline import ClipSamPipeline

    device = resolve_device(device)
    data.validate(("test",), action=f"run CLIP-SAM on {data.dataset}/{data.category}")
    config = effective_config(config, adapters)
    adapter_info = adapters_identity(adapters)
    if adapter_info and adapter_info["trained_on"] == data.dataset:
        warnings.warn(f"the adapters were trained on {data.dataset}, the dataset evaluated here: this is not the "
                      "cross-dataset zero-shot protocol.", stacklevel=2)
    samples = data.open("test")
    if len(samples) == 0:
        raise StlmError(f"no test images for category {data.category!r} under {data.root}.")
    the_run = planned or plan_clipsam(config, data, adapter_info, clip_checkpoint=clip_checkpoint,
                                      sam_checkpoint=sam_checkpoint, runs_dir=runs_dir, run_dir=run_dir)
    with the_run.writing(force=force):
        torch.manual_seed(config.seed)
        t_build = time.perf_counter()
        pipe = ClipSamPipeline.build(config, adapters=adapters, clip_checkpoint=clip_checkpoint,
                                     sam_checkpoint=sam_checkpoint, device=device)
        build_s = time.perf_counter() - t_build
        t_run = time.perf_counter()
        result = pipe.run_dataset(samples, data.category, progress=progress)
        run_s = time.perf_counter() - t_run
        run_maps = RunMaps(primary="cascade", maps={"cascade": result["maps"], "clip": result["clip_maps"]},
                           scores={"cascade": result["scores"], "clip": result["clip_scores"]},
                           labels=result["labels"], masks=result["masks"],
                           defects=np.array([r.defect for r in samples.records]), paths=np.asarray(result["paths"]),
                           arrays=result["details"], records=result["prompts"])
        stage_ms = {stage: float(np.mean(v)) if v else None for stage, v in result["timings_ms"].items()}
        the_run.finish(
            run_maps, profile=config.profile, device=device, seed=config.seed, save=save_maps,
            weights={**pipe.weights, "adapters": the_run.weights["adapters"]},
            timings={"build_s": build_s, "infer_s": run_s},
            localiser=pipe.localiser.name, adapters_trained_on=adapter_info and adapter_info["trained_on"],
            cross_dataset=None if not adapter_info else adapter_info["trained_on"] != data.dataset,
            images=len(samples), sam_calls=result["sam_calls"], stage_ms_mean=stage_ms,
        )
    return the_run.run_dir


def train_adapters_file(config: ClipSamConfig, dataset: str, root: str | Path, out: str | Path, *,
                        categories: list[str] | None = None, limit: int | None = None, epochs: int | None = None,
                        device: str = "auto", clip_checkpoint: str | Path | None = AUTO,
                        progress: bool = True) -> dict:
    """Train APRIL-GAN adapters on the TEST split (images + masks) of ``dataset``; writes ``out`` (atomically).

    Returns ``{"path", "history", "categories", "random_clip"}``.
    """
    from stlm_core.clipsam.adapters import adapter_meta, save_adapters, train_adapters
    from stlm_core.clipsam.clip_localiser import build_clip
    from stlm_core.data import list_categories

    device = resolve_device(device)
    categories = categories or list_categories(dataset, root)
    for category in categories:
        DataSpec(dataset, root, category).validate(("test",), action=f"train adapters on {dataset}/{category}")
    ensure_writable(Path(out).parent)
    datasets = [DataSpec(dataset, root, c, limit).open("test") for c in categories]
    if not any(len(ds) for ds in datasets):
        raise StlmError(f"no test images with masks under {root} for {categories}.")
    torch.manual_seed(config.seed)
    backbone = build_clip(config, clip_checkpoint, device)
    t0 = time.perf_counter()
    adapters, history = train_adapters(backbone, datasets, dataset, config, epochs=epochs, seed=config.seed,
                                       progress=progress)
    meta = adapter_meta(backbone, dataset, categories, history, config)
    meta.update({"root": str(root), "seed": config.seed, "train_s": time.perf_counter() - t0, "limit": limit})
    path = save_adapters(out, adapters, meta)
    return {"path": path, "history": history, "categories": categories,
            "random_clip": backbone.weights == "random-init"}
