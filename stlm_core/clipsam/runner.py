"""Work behind ``stlm zeroshot`` and ``stlm zeroshot-adapters train`` (heavy imports live here)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stlm_core.clipsam.config import get_config
from stlm_core.errors import StlmError


def _checkpoint(value: str | None):
    return "auto" if value in (None, "auto") else value


def config_from_args(args: argparse.Namespace):
    """The profile's config with the CLI's overrides applied."""
    overrides = dict(
        tau=args.tau, k_positive=args.k, k_negative=args.k, min_spacing_px=args.min_spacing,
        ring_kernel=args.ring_kernel, cps_stages=args.cps_stages, fusion=args.fusion,
        image_score=args.image_score, box_mode=args.box_mode, sam_image_size=args.sam_image_size,
    )
    if args.multimask:
        overrides["multimask"] = True
    if args.global_region:
        overrides["per_component"] = False
    overrides["localiser"] = "adapters" if args.adapters else "training_free"
    return get_config(args.profile, **overrides)


def evaluate(result: dict, key: str = "maps") -> dict:
    """Metrics of DESIGN.md section 4 from ``run_dataset`` output (``key``: ``maps`` or ``clip_maps``)."""
    from stlm_core.metrics import compute_metrics

    scores = result["scores"] if key == "maps" else result["clip_scores"]
    return compute_metrics(masks=result["masks"], maps=result[key], labels=result["labels"], image_scores=scores)


def run_zeroshot(args: argparse.Namespace) -> int:
    from stlm_core.clipsam.pipeline import ClipSamPipeline
    from stlm_core.data import open_dataset
    from stlm_core.results import atomic_write_json, make_provenance, prepare_run_dir, write_metrics
    from stlm_core.weights import file_sha256

    config = config_from_args(args)
    samples = open_dataset(args.dataset, args.root, args.category, "test")
    if len(samples) == 0:
        raise StlmError(f"no test images for category {args.category!r} under {args.root}.")
    torch.manual_seed(args.seed)
    t_build = time.perf_counter()
    pipe = ClipSamPipeline.build(config, adapters=args.adapters, clip_checkpoint=_checkpoint(args.clip_checkpoint),
                                 sam_checkpoint=_checkpoint(args.sam_checkpoint), device=args.device)
    build_s = time.perf_counter() - t_build
    trained_on = getattr(pipe.localiser, "trained_on", None)
    if not args.adapters:
        print("note: no --adapters: the CLIP stage is the training-free (WinCLIP-style) localiser, not the spec's "
              "default APRIL-GAN adapters ('stlm zeroshot-adapters train' on another dataset).", file=sys.stderr)
    adapters = None
    if args.adapters:
        meta = pipe.localiser.meta
        adapters = {"file": str(args.adapters), "sha256": file_sha256(Path(args.adapters)),
                    "trained_on": trained_on, "categories": meta.get("categories"), "epochs": meta.get("epochs")}
        if trained_on == args.dataset:
            print(f"warning: the adapters were trained on {trained_on}'s test split, the dataset evaluated here: "
                  "this is not the cross-dataset zero-shot protocol.", file=sys.stderr)
    run_config = {"method": "clipsam", "dataset": args.dataset, "category": args.category,
                  "localiser": pipe.localiser.name, "adapters": adapters, "limit": args.limit,
                  "seed": args.seed, "config": config.to_dict()}
    out = prepare_run_dir(args.out, run_config, force=args.force)

    t_run = time.perf_counter()
    result = pipe.run_dataset(samples, args.category, progress=not args.quiet, limit=args.limit)
    run_s = time.perf_counter() - t_run
    metrics = evaluate(result, "maps")
    clip_metrics = evaluate(result, "clip_maps")

    weights = dict(pipe.weights)
    weights["adapters"] = f"adapters@{adapters['sha256']}" if adapters else "none"
    stage_ms = {stage: float(np.mean(v)) if v else None for stage, v in result["timings_ms"].items()}
    provenance = make_provenance(
        profile=config.profile, device=args.device, weights=weights,
        dataset={"name": args.dataset, "category": args.category, "files": len(result["labels"]),
                 "synthetic": args.dataset == "synthetic", "root": str(args.root)},
        seed=args.seed, timings={"build_s": build_s, "infer_s": run_s},
        method="clipsam", localiser=pipe.localiser.name, adapters_trained_on=trained_on,
        cross_dataset=None if trained_on is None else trained_on != args.dataset,
        images=len(result["labels"]), sam_calls=result["sam_calls"], stage_ms_mean=stage_ms,
    )
    write_metrics(out, metrics, provenance)
    write_metrics(out, clip_metrics, {**provenance, "map": "clip stage only"}, name="metrics_clip.json")
    if args.save_maps:
        np.savez_compressed(out / "maps.npz", maps=result["maps"], clip_maps=result["clip_maps"],
                            masks=result["masks"], scores=result["scores"], clip_scores=result["clip_scores"],
                            labels=result["labels"], paths=np.asarray(result["paths"]))
        atomic_write_json(out / "prompts.json", result["prompts"])
    shown = {k: (None if v is None else round(float(v), 4)) for k, v in metrics.items()}
    random_note = " (random weights: numbers say nothing about the method)" if provenance["random_init"] else ""
    print(f"{args.dataset}/{args.category}: {json.dumps(shown)}{random_note}")
    print(f"wrote {out / 'metrics.json'}")
    return 0


def run_train_adapters(args: argparse.Namespace) -> int:
    from stlm_core.clipsam.adapters import adapter_meta, save_adapters, train_adapters
    from stlm_core.clipsam.clip_localiser import build_clip
    from stlm_core.data import list_categories, open_dataset

    config = get_config(args.profile)
    categories = args.category or list_categories(args.dataset, args.root)
    datasets = []
    for category in categories:
        ds = open_dataset(args.dataset, args.root, category, "test")
        if args.limit is not None and len(ds) > args.limit:          # evenly spaced, as in 'stlm zeroshot'
            keep = np.unique(np.linspace(0, len(ds) - 1, args.limit).round().astype(int))
            ds.records = [ds.records[i] for i in keep]
        datasets.append(ds)
    if not any(len(ds) for ds in datasets):
        raise StlmError(f"no test images with masks under {args.root} for {categories}.")
    torch.manual_seed(args.seed)
    backbone = build_clip(config, _checkpoint(args.clip_checkpoint), args.device)
    t0 = time.perf_counter()
    adapters, history = train_adapters(backbone, datasets, args.dataset, epochs=args.epochs, seed=args.seed,
                                       progress=not args.quiet)
    meta = adapter_meta(backbone, args.dataset, categories, history)
    meta.update({"root": str(args.root), "seed": args.seed, "train_s": time.perf_counter() - t0,
                 "limit": args.limit})
    path = save_adapters(args.out, adapters, meta)
    losses = ", ".join(f"{x:.4f}" for x in history["epoch_loss"])
    print(f"trained adapters on {args.dataset} test split ({history['images']} images, {len(categories)} "
          f"categories); epoch losses: {losses}")
    if backbone.weights == "random-init":
        print("note: CLIP has random weights (no checkpoint found): these adapters are for testing only.")
    print(f"wrote {path}")
    return 0
