"""``stlm train`` and ``stlm evaluate``: train STLM on one category, evaluate a trained run.

Light module: torch and the model are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json

from stlm_core.config import PROFILE_HELP, PROFILES

DATASET_CHOICES = ("mvtec", "visa", "dagm", "loco", "synthetic")


def _bool_switch(parser: argparse.ArgumentParser, name: str, help_on: str, help_off: str) -> None:
    dest = name.replace("-", "_")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=help_on)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=help_off)


def _print_metrics(metrics: dict) -> None:
    keys = ("pixel_auroc", "pixel_aupro", "image_auroc")
    for name, record in (("FA", metrics.get("fa")), ("w/o FA", metrics.get("wo_fa"))):
        if record:
            print(f"{name:7s} " + "  ".join(f"{k} {record[k]:.4f}" if record.get(k) is not None else f"{k} n/a"
                                           for k in keys))


def _train(args: argparse.Namespace) -> int:
    import torch

    from stlm_core.stlm.config import profile_config
    from stlm_core.stlm.train import train_stlm

    if args.threads:
        torch.set_num_threads(args.threads)
    config = profile_config(
        args.profile, epochs=args.epochs, train_steps=args.steps, batch_size=args.batch_size, seed=args.seed,
        image_size=args.image_size, eval_size=args.eval_size or args.image_size, teacher=args.teacher,
        student_init=args.student_init, rotation=args.rotation, use_plain=args.plain, use_decoder=args.decoder,
        use_fa=args.fa,
    )
    if args.epochs is not None and args.steps is None:
        config.train_steps = None  # an explicit --epochs wins over the profile's step budget
    result = train_stlm(config, args.dataset, args.root, args.category, args.out, runs_dir=args.runs_dir,
                        device=args.device, dtd=args.dtd, resume=args.resume, force=args.force,
                        evaluate=not args.no_eval, save_maps=args.save_maps, progress=not args.quiet,
                        deterministic=args.deterministic)
    print(f"trained {result['epochs']} epochs ({result['steps']} steps, {result['train_s']:.0f} s): "
          f"{result['run_dir']}")
    if result["metrics"]:
        _print_metrics(result["metrics"])
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from stlm_core.stlm.evaluate import evaluate_run

    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = evaluate_run(args.run, root=args.root, device=args.device, save_maps=args.save_maps,
                           progress=not args.quiet, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics(metrics)
        print(f"wrote {args.run}/metrics.json")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train STLM on one category (checkpoints every epoch; --resume continues)",
        description=(
            "Train STLM (SAM teacher, two TinyViT student streams, shared mask decoder, FA head) on the normal "
            "training images of one category with synthetic pseudo-anomalies (Perlin masks; DTD textures if "
            "found, procedural textures otherwise). Writes config.json, losses.jsonl and an atomically replaced "
            "checkpoint.pt after every epoch into the run directory, then evaluates the final epoch (no model "
            "selection on test data) into metrics.json. The paper profile needs the official SAM ViT-H and "
            "MobileSAM weights; cpu and smoke fall back to random initialisation and record it."),
        epilog="example: stlm train --dataset synthetic --root data/synthetic --category carpet_like --profile cpu")
    train.add_argument("--dataset", required=True, choices=DATASET_CHOICES, help="dataset layout")
    train.add_argument("--root", required=True, help="dataset root folder")
    train.add_argument("--category", required=True, help="category to train on (one model per category)")
    train.add_argument("--profile", choices=PROFILES, default="cpu", help=PROFILE_HELP + " (default cpu)")
    train.add_argument("--out", default=None,
                       help="run directory (default: RUNS_DIR/stlm/<dataset>/<category>/<config-id>)")
    train.add_argument("--runs-dir", default="runs", help="root of the default run directories (default runs)")
    train.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    train.add_argument("--force", action="store_true", help="discard an existing run in --out and start again")
    train.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda[:i]")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    train.add_argument("--dtd", default=None,
                       help="DTD root for anomaly textures (default $STLM_DTD or data/dtd; else procedural)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    train.add_argument("--epochs", type=int, default=None, help="epochs (paper: 200)")
    train.add_argument("--steps", type=int, default=None,
                       help="optimisation steps instead of epochs, rounded up to whole epochs (cpu profile: 200)")
    train.add_argument("--batch-size", type=int, default=None, help="training batch size (paper: 2)")
    train.add_argument("--image-size", type=int, default=None, help="model input size (multiple of 16)")
    train.add_argument("--eval-size", type=int, default=None, help="evaluation resolution (default: image size)")
    train.add_argument("--rotation", choices=("auto", "none", "slight", "full"), default=None,
                       help="rotation augmentation (auto = per-category lists of the official code, disjoint)")
    ablation = train.add_argument_group("ablations (STLM paper)")
    ablation.add_argument("--teacher", choices=("vit_h", "vit_l", "vit_b", "reduced", "tiny"), default=None,
                          help="teacher variant (paper vit_h; cpu reduced; smoke tiny)")
    ablation.add_argument("--student-init", choices=("random", "mobilesam"), default=None,
                          help="student initialisation: random (official code) or MobileSAM's encoder")
    _bool_switch(ablation, "plain", "use the plain stream (default)",
                 "no plain stream: the frozen teacher takes its place (DeSTSeg-like)")
    _bool_switch(ablation, "decoder", "use decoder features as a second level (default)",
                 "encoder level only")
    _bool_switch(ablation, "fa", "train and use the FA head (default)", "no FA head: the w/o-FA map only")
    train.add_argument("--no-eval", action="store_true", help="do not evaluate after training")
    train.add_argument("--save-maps", action="store_true", help="also save the maps (maps.npz) when evaluating")
    train.add_argument("--deterministic", action="store_true",
                       help="torch.use_deterministic_algorithms(True) (slower; CPU runs repeat bitwise without it)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_train)

    ev = subparsers.add_parser(
        "evaluate", help="evaluate a trained STLM run; writes metrics.json",
        description=(
            "Load RUN/checkpoint.pt (the final epoch), compute the FA and w/o-FA anomaly maps of the test split "
            "at the profile's evaluation resolution and write metrics.json (FA at the top level, w/o FA under "
            "'wo_fa') and metrics_wo_fa.json through the shared evaluation core."))
    ev.add_argument("--run", required=True, help="run directory written by 'stlm train'")
    ev.add_argument("--root", default=None, help="dataset root (default: the one recorded at training time)")
    ev.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ev.add_argument("--batch-size", type=int, default=8, help="inference batch size (default 8)")
    ev.add_argument("--save-maps", action="store_true",
                    help="write maps.npz (float16 maps, image scores, labels, masks, paths; compressed)")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=_evaluate)
