"""``stlm zeroshot`` (the CLIP-SAM cascade on one category) and ``stlm zeroshot-adapters train``.

Thin handlers over :func:`stlm_core.clipsam.run` / :func:`stlm_core.clipsam.train_adapters`.
"""

from __future__ import annotations

import argparse

from stlm_core.cli.options import add_dataset, add_runtime, positive_int


def _checkpoint(value: str | None):
    from stlm_core.weights import AUTO

    return AUTO if value in (None, AUTO) else value


def overrides_from(args: argparse.Namespace) -> dict:
    """Config overrides named on the command line (options left out keep the profile's value)."""
    named = {"tau": args.tau, "k_positive": args.k, "k_negative": args.k, "min_spacing_px": args.min_spacing,
             "ring_kernel": args.ring_kernel, "cps_stages": args.cps_stages, "fusion": args.fusion,
             "image_score": args.image_score, "box_mode": args.box_mode, "sam_image_size": args.sam_image_size,
             "seed": args.seed}
    overrides = {k: v for k, v in named.items() if v is not None}
    if args.multimask:
        overrides["multimask"] = True
    if args.global_region:
        overrides["per_component"] = False
    return overrides


def _zeroshot(args: argparse.Namespace) -> int:
    from stlm_core.cli.stlm import print_metrics
    from stlm_core.clipsam import ClipSamConfig, run
    from stlm_core.data.spec import DataSpec
    from stlm_core.runs import read_run
    from stlm_core.runtime import set_threads

    set_threads(args.threads)
    config = ClipSamConfig.from_profile(args.profile, **overrides_from(args))
    run_dir = run(config, DataSpec(args.dataset, args.root, args.category, args.limit), run_dir=args.out,
                  runs_dir=args.runs_dir, device=args.device, adapters=args.adapters,
                  clip_checkpoint=_checkpoint(args.clip_checkpoint), sam_checkpoint=_checkpoint(args.sam_checkpoint),
                  force=args.force, save_maps=not args.no_maps, progress=not args.quiet)
    print(f"run directory: {run_dir}")
    print_metrics(run_dir)
    if read_run(run_dir)["provenance"].get("random_init"):
        print("random weights: these numbers say nothing about the method.")
    return 0


def _train_adapters(args: argparse.Namespace) -> int:
    from stlm_core.clipsam import ClipSamConfig, train_adapters
    from stlm_core.runtime import set_threads

    set_threads(args.threads)
    config = ClipSamConfig.from_profile(args.profile, **({"seed": args.seed} if args.seed is not None else {}))
    result = train_adapters(config, args.dataset, args.root, args.out, categories=args.category, limit=args.limit,
                            epochs=args.epochs, device=args.device,
                            clip_checkpoint=_checkpoint(args.clip_checkpoint), progress=not args.quiet)
    losses = ", ".join(f"{x:.4f}" for x in result["history"]["epoch_loss"])
    print(f"trained adapters on {args.dataset} test split ({result['history']['images']} images, "
          f"{len(result['categories'])} categories); epoch losses: {losses}")
    if result["random_clip"]:
        print("note: CLIP has random weights (no checkpoint found): these adapters are for testing only.")
    print(f"wrote {result['path']}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    add_runtime(p)
    p.add_argument("--seed", type=int, default=None, help="seed for random initialisation and training (default 0)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use at most N test images per category (evenly spaced over the sorted list)")
    p.add_argument("--clip-checkpoint", default="auto",
                   help="CLIP weights file (default: look up the profile's official file; cpu/smoke fall back to "
                        "random init)")


def register(subparsers: argparse._SubParsersAction) -> None:
    z = subparsers.add_parser(
        "zeroshot", help="run the CLIP-SAM cascaded-prompt zero-shot segmentation on one category",
        description="Zero-shot anomaly segmentation (arXiv 2510.11028): a CLIP anomaly map (APRIL-GAN adapters "
                    "with --adapters, else the training-free localiser), point prompts from it (PPG: top-k "
                    "positives in the extreme region S_a, negatives on a ring around it chosen by SAM-feature "
                    "dissimilarity) and three cascaded SAM decoder passes (CPS). Writes the run record: "
                    "metrics.json (the cascade's map at the top level, the CLIP map alone under 'secondary'), "
                    "maps.npz, extras.json (prompt points) and finished.json. Every open choice has a named "
                    "default with its provenance in stlm_core/clipsam/profiles.yaml.")
    add_dataset(z)
    _common(z)
    z.add_argument("--out", default=None,
                   help="run directory (default: RUNS_DIR/clipsam/<dataset>/<category>/<run-id>)")
    z.add_argument("--runs-dir", default="runs", help="root of the default run directories (default runs)")
    z.add_argument("--adapters", default=None,
                   help="adapter file from 'stlm zeroshot-adapters train' (train on ANOTHER dataset for zero-shot), or "
                        "APRIL-GAN's released mvtec_pretrained.pth / visa_pretrained.pth (ViT-L-14-336: paper profile)")
    z.add_argument("--sam-checkpoint", default="auto", help="SAM weights file (default: the profile's official file)")
    z.add_argument("--sam-image-size", type=positive_int, default=None,
                   help="SAM input side in px (default 1024 for paper/cpu; other sizes resize SAM's position "
                        "embeddings on load, e.g. 512 for a 4x faster cpu run)")
    z.add_argument("--tau", type=float, default=None, help="threshold on Map_a / n_layers for S_a (default 0.5)")
    z.add_argument("--k", type=positive_int, default=None, help="positive and negative points per region (default 3)")
    z.add_argument("--min-spacing", type=float, default=None, help="min distance between points, px (default 400)")
    z.add_argument("--ring-kernel", type=positive_int, default=None, help="dilation kernel of the ring (default 25)")
    z.add_argument("--cps-stages", type=int, choices=(1, 2, 3), default=None, help="cascade stages (default 3)")
    z.add_argument("--fusion", choices=("default", "sam", "additive"), default=None,
                   help="final map: default 0.5 m + 0.5 m*sigmoid(L3); sam; additive (default: default)")
    z.add_argument("--image-score", choices=("max", "clip_cls"), default=None, help="image score (default max)")
    z.add_argument("--multimask", action="store_true", help="3 masks per decoder call, keep the best predicted IoU")
    z.add_argument("--box-mode", choices=("tight", "best_component"), default=None, help="stage-3 box (default tight)")
    z.add_argument("--global-region", action="store_true",
                   help="one cascade for all of S_a instead of one per connected component")
    z.add_argument("--no-maps", action="store_true", help="do not write maps.npz / extras.json")
    z.add_argument("--force", action="store_true", help="replace an existing run with a different config")
    z.set_defaults(func=_zeroshot)

    a = subparsers.add_parser(
        "zeroshot-adapters", help="train APRIL-GAN linear adapters for the CLIP stage (cross-dataset)",
        description="APRIL-GAN adapters for the CLIP-SAM CLIP stage.")
    a_sub = a.add_subparsers(dest="adapters_command", metavar="<adapters command>")
    a_sub.required = True
    t = a_sub.add_parser(
        "train", help="train adapters on a dataset's test split (images + masks)",
        description="Train one linear adapter per tapped CLIP block with focal + dice loss on the TEST split (with "
                    "masks) of every category of --dataset (APRIL-GAN protocol: train on MVTec AD, apply to VisA, "
                    "and vice versa). The file records which dataset the adapters saw; 'stlm zeroshot' copies that "
                    "into every run record. Adam lr 1e-3, betas (0.5, 0.999), batch 8; epochs 3 (mvtec) / 15 (visa).")
    add_dataset(t, category=False)
    _common(t)
    t.add_argument("--out", required=True, help="adapter file to write (.pt)")
    t.add_argument("--category", action="append", help="train on this category only (repeatable; default all)")
    t.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: 3 for mvtec, 15 for visa)")
    t.set_defaults(func=_train_adapters)
