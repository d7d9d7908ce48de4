"""``stlm zeroshot`` (the CLIP-SAM cascade on one category) and ``stlm zeroshot-adapters train``.

Light module: argument parsing only; the work is in :mod:`stlm_core.clipsam.runner` (imported in the handlers).
"""

from __future__ import annotations

import argparse

from stlm_core.config import PROFILE_HELP, PROFILES

DATASETS = ("mvtec", "visa", "dagm", "loco", "synthetic")


def _zeroshot(args: argparse.Namespace) -> int:
    from stlm_core.clipsam.runner import run_zeroshot

    return run_zeroshot(args)


def _train_adapters(args: argparse.Namespace) -> int:
    from stlm_core.clipsam.runner import run_train_adapters

    return run_train_adapters(args)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout")
    p.add_argument("--root", required=True, help="dataset root folder")
    p.add_argument("--profile", default="smoke", choices=PROFILES, help=PROFILE_HELP + " (default smoke)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed for random initialisation and training (default 0)")
    p.add_argument("--limit", type=int, default=None, help="use at most N test images per category (evenly spaced over the sorted list)")
    p.add_argument("--clip-checkpoint", default="auto",
                   help="CLIP weights file (default: look up the profile's official file; cpu/smoke fall back to "
                        "random init)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    z = subparsers.add_parser(
        "zeroshot", help="run the CLIP-SAM cascaded-prompt zero-shot segmentation on one category",
        description="Zero-shot anomaly segmentation (arXiv 2510.11028): a CLIP anomaly map (APRIL-GAN adapters "
                    "with --adapters, else the training-free localiser), point prompts from it (PPG: top-k "
                    "positives in the extreme region S_a, negatives on a ring around it chosen by SAM-feature "
                    "dissimilarity) and three cascaded SAM decoder passes (CPS). Writes config.json and "
                    "metrics.json (pixel AUROC, AUPRO, AP, F1-max; image AUROC, AP, F1-max) to --out, plus "
                    "metrics_clip.json for the CLIP map alone. Defaults of every open choice: "
                    "stlm_core/clipsam/config.py.")
    _common(z)
    z.add_argument("--category", required=True, help="category folder name (also the class name in the prompts)")
    z.add_argument("--out", required=True, help="run directory (refuses a different existing config without --force)")
    z.add_argument("--adapters", default=None,
                   help="adapter file from 'stlm zeroshot-adapters train' (train on ANOTHER dataset for zero-shot)")
    z.add_argument("--sam-checkpoint", default="auto", help="SAM weights file (default: the profile's official file)")
    z.add_argument("--sam-image-size", type=int, default=None,
                   help="SAM input side in px (default 1024 for paper/cpu; other sizes resize SAM's position "
                        "embeddings on load, e.g. 512 for a 4x faster cpu run)")
    z.add_argument("--tau", type=float, default=None, help="threshold on Map_a / n_layers for S_a (default 0.5)")
    z.add_argument("--k", type=int, default=None, help="positive and negative points per region (default 3)")
    z.add_argument("--min-spacing", type=float, default=None, help="min distance between points, px (default 400)")
    z.add_argument("--ring-kernel", type=int, default=None, help="dilation kernel of the ring N_a (default 25)")
    z.add_argument("--cps-stages", type=int, choices=(1, 2, 3), default=None, help="cascade stages (default 3)")
    z.add_argument("--fusion", choices=("default", "sam", "additive"), default=None,
                   help="final map: default 0.5 m + 0.5 m*sigmoid(L3); sam; additive (default: default)")
    z.add_argument("--image-score", choices=("max", "clip_cls"), default=None, help="image score (default max)")
    z.add_argument("--multimask", action="store_true", help="3 masks per decoder call, keep the best predicted IoU")
    z.add_argument("--box-mode", choices=("tight", "best_component"), default=None, help="stage-3 box (default tight)")
    z.add_argument("--global-region", action="store_true",
                   help="one cascade for all of S_a instead of one per connected component")
    z.add_argument("--save-maps", action="store_true",
                   help="also write maps.npz (final and CLIP maps, masks at eval size) and prompts.json")
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
    _common(t)
    t.add_argument("--out", required=True, help="adapter file to write (.pt)")
    t.add_argument("--category", action="append", help="train on this category only (repeatable; default all)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default: 3 for mvtec, 15 for visa)")
    t.set_defaults(func=_train_adapters)
