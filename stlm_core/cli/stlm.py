"""``stlm train`` and ``stlm evaluate``: train STLM on one category, evaluate a trained run.

Thin handlers over :func:`stlm_core.stlm.train` / :func:`stlm_core.stlm.evaluate`; torch is imported when they run.
"""

from __future__ import annotations

import argparse
import json

from stlm_core.cli.options import add_dataset, add_runtime, positive_int


def _bool_switch(parser: argparse.ArgumentParser, name: str, help_on: str, help_off: str) -> None:
    dest = name.replace("-", "_")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=help_on)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=help_off)


def print_metrics(run_dir) -> None:
    """One line per map of a finished run: pixel AUROC, AUPRO, image AUROC."""
    from stlm_core.runs import read_run

    run = read_run(run_dir)
    keys = ("pixel_auroc", "pixel_aupro", "image_auroc")
    maps = {run["map"]: run["metrics"], **run["secondary"]}
    for name, record in maps.items():
        print(f"{name:8s} " + "  ".join(f"{k} {record[k]:.4f}" if record.get(k) is not None else f"{k} n/a"
                                        for k in keys))


def overrides_from(args: argparse.Namespace) -> dict:
    """Config overrides named on the command line (options left out keep the profile's value)."""
    named = {"epochs": args.epochs, "train_steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
             "image_size": args.image_size, "eval_size": args.eval_size or args.image_size, "teacher": args.teacher,
             "student_init": args.student_init, "rotation": args.rotation, "use_plain": args.plain,
             "use_decoder": args.decoder, "use_fa": args.fa, "student": args.student,
             "teacher_pretrained": args.teacher_pretrained, "fa_prior": args.fa_prior,
             "wo_fa_combine": args.wo_fa_combine, "feature_stride": args.feature_stride}
    overrides = {k: v for k, v in named.items() if v is not None}
    if args.epochs is not None and args.steps is None:
        overrides["train_steps"] = None  # an explicit --epochs wins over the profile's step budget
    return overrides


# Options that set the config or the data; a run continued from its record (--resume / --force --out RUN without
# --dataset/--root/--category) takes them from the record instead.
SETTING_OPTIONS = ("profile", "epochs", "steps", "batch_size", "seed", "image_size", "eval_size", "teacher",
                   "student_init", "rotation", "plain", "decoder", "fa", "limit", "student", "teacher_pretrained",
                   "fa_prior", "wo_fa_combine", "feature_stride")
DATA_OPTIONS = ("dataset", "root", "category")


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _from_options(args: argparse.Namespace):
    """(config, data, dtd) named on the command line."""
    from stlm_core.configs import DEFAULT_PROFILE
    from stlm_core.data.spec import DataSpec
    from stlm_core.stlm import StlmConfig

    config = StlmConfig.from_profile(args.profile or DEFAULT_PROFILE, **overrides_from(args))
    return config, DataSpec(args.dataset, args.root, args.category, args.limit), args.dtd


def _from_record(args: argparse.Namespace):
    """(config, data, dtd) recorded in the run ``--out`` (``--root`` may point at moved data)."""
    from pathlib import Path

    from stlm_core.data.spec import DataSpec
    from stlm_core.errors import StlmError
    from stlm_core.fileio import read_json
    from stlm_core.runs import CONFIG_FILE, DATA_FILE
    from stlm_core.stlm import StlmConfig
    from stlm_core.stlm.evaluation import run_record_of

    run_dir = Path(args.out)
    if not (run_dir / CONFIG_FILE).is_file():
        raise StlmError(f"{run_dir} holds no run record ({CONFIG_FILE}) to take the data and settings from: pass "
                        "--dataset, --root and --category, or point --out at a run written by 'stlm train'.")
    given = [_option(d) for d in (*SETTING_OPTIONS, "dataset", "category") if getattr(args, d) is not None]
    if given:
        raise StlmError(f"without --dataset/--root/--category, 'stlm train --resume/--force --out {run_dir}' reuses "
                        f"the run's recorded settings; leave out {', '.join(given)} (or give --dataset, --root and "
                        "--category too, or use another --out for other settings).")
    record, recorded = run_record_of(run_dir), read_json(run_dir / DATA_FILE)
    dtd = args.dtd or recorded.get("textures_root")
    data = DataSpec(recorded["dataset"], args.root or recorded["root"], recorded["category"], recorded.get("limit"))
    return StlmConfig.from_dict(record["config"]), data, dtd


def train_inputs(args: argparse.Namespace):
    """(config, data, dtd) of ``stlm train``: from the options, or, for ``--resume`` / ``--force`` with ``--out RUN``
    and no --dataset/--root/--category, from RUN's record."""
    from stlm_core.errors import StlmError

    missing = [_option(d) for d in DATA_OPTIONS if getattr(args, d) is None]
    if not missing:
        return _from_options(args)
    if args.out is not None and (args.resume or args.force):
        return _from_record(args)
    raise StlmError(f"the following options are required: {', '.join(missing)} (the data to train on); only "
                    "'stlm train --resume --out RUN' (or --force --out RUN) takes them from an existing run.")


def _train(args: argparse.Namespace) -> int:
    from stlm_core.runtime import set_threads
    from stlm_core.stlm import train

    set_threads(args.threads)
    config, data, dtd = train_inputs(args)
    run_dir = train(config, data, run_dir=args.out, runs_dir=args.runs_dir, device=args.device, dtd=dtd,
                    resume=args.resume, force=args.force, evaluate=not args.no_eval,
                    save_maps=not args.no_maps, progress=not args.quiet, deterministic=args.deterministic)
    print(f"run directory: {run_dir}")
    if not args.no_eval:
        print_metrics(run_dir)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from stlm_core.runs import read_run
    from stlm_core.runtime import set_threads
    from stlm_core.stlm import evaluate

    set_threads(args.threads)
    run_dir = evaluate(args.run, root=args.root, device=args.device, save_maps=not args.no_maps,
                       progress=not args.quiet, batch_size=args.batch_size)
    if args.json:
        run = read_run(run_dir)
        print(json.dumps({"map": run["map"], **run["metrics"], "secondary": run["secondary"]}, indent=2))
    else:
        print_metrics(run_dir)
        print(f"wrote {run_dir}/metrics.json")
    return 0


TRAIN_EPILOG = """\
examples:
  stlm train --dataset synthetic --root data/synthetic --category carpet_like
  stlm train --resume --out RUN    continue RUN after Ctrl-C or a crash

threads under load: on a machine shared with other jobs pass --threads 1 (and
set OMP_NUM_THREADS=1): two jobs using every core of a small machine slow each
other down 2-5x. The thread count is recorded in the run."""


def _wrapped(text: str) -> str:
    """``text`` filled to the terminal width, as argparse would (needed with RawDescriptionHelpFormatter)."""
    import shutil
    import textwrap

    return textwrap.fill(text, width=max(40, shutil.get_terminal_size().columns - 2))


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train STLM on one category (checkpoints every epoch; --resume continues)",
        description=_wrapped(
            "Train STLM (frozen teacher, two TinyViT student streams, shared mask decoder, FA head) on the normal "
            "training images of one category with synthetic pseudo-anomalies (Perlin masks; DTD textures if "
            "found, procedural textures otherwise). Writes the run record (config.json, losses.jsonl, an "
            "atomically replaced checkpoint.pt after every epoch), then evaluates the final epoch (no model "
            "selection on test data): metrics.json, maps.npz, finished.json. The paper profile needs the official "
            "SAM ViT-H and MobileSAM weights; cpu and smoke use them when present and record what they used."),
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset(train, required=False, note=" (required, except with --resume/--force --out RUN)")
    add_runtime(train)
    train.set_defaults(profile=None)  # None: not given (the default profile applies); see train_inputs
    train.add_argument("--out", default=None,
                       help="run directory (default: RUNS_DIR/stlm/<dataset>/<category>/<run-id>)")
    train.add_argument("--runs-dir", default="runs", help="root of the default run directories (default runs)")
    train.add_argument("--resume", action="store_true",
                       help="continue a killed or interrupted run from its last checkpoint; 'stlm train --resume "
                            "--out RUN' alone reuses RUN's recorded data and settings")
    train.add_argument("--force", action="store_true",
                       help="discard an existing run in --out and start again ('--force --out RUN' alone: with "
                            "RUN's recorded data and settings)")
    train.add_argument("--dtd", default=None,
                       help="DTD root for anomaly textures (default $STLM_DTD or data/dtd; else procedural)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    train.add_argument("--epochs", type=positive_int, default=None, help="epochs (paper: 200)")
    train.add_argument("--steps", type=positive_int, default=None,
                       help="optimisation steps instead of epochs, rounded up to whole epochs (cpu profile: 200)")
    train.add_argument("--batch-size", type=positive_int, default=None, help="training batch size (paper: 2)")
    train.add_argument("--image-size", type=positive_int, default=None, help="model input size (multiple of 16)")
    train.add_argument("--eval-size", type=positive_int, default=None,
                       help="evaluation resolution (default: image size)")
    train.add_argument("--limit", type=positive_int, default=None,
                       help="evaluate on at most N test images (evenly spaced; default all)")
    train.add_argument("--rotation", choices=("auto", "none", "slight", "full"), default=None,
                       help="rotation augmentation (auto = per-category lists of the official code, disjoint)")
    ablation = train.add_argument_group("ablations (STLM paper)")
    from stlm_core.stlm.config import STUDENTS, TEACHERS, WO_FA_COMBINES

    ablation.add_argument("--teacher", choices=TEACHERS, default=None,
                          help="teacher (paper vit_h = SAM ViT-H; cpu efficientnet_lite0 = the ImageNet network that "
                               "installs offline; smoke tiny); vit_b / vit_h load official SAM weights when present")
    _bool_switch(ablation, "teacher-pretrained", "the teacher's pretrained weights (default)",
                 "a randomly initialised teacher ('the teacher knows nothing')")
    ablation.add_argument("--student", choices=STUDENTS, default=None,
                          help="tinyvit = TinyViT students + shared decoder (paper); teacher_copy = students start as "
                               "copies of the teacher (cpu)")
    ablation.add_argument("--feature-stride", type=int, choices=(8, 16), default=None,
                          help="feature grid of the maps: 16 (SAM's, the paper) or 8 (finer maps; EfficientNet-Lite "
                               "teacher with teacher_copy students only)")
    ablation.add_argument("--fa-prior", type=float, default=None,
                          help="initialise the FA head at this probability (cpu 0.01; paper: default init)")
    ablation.add_argument("--wo-fa-combine", choices=WO_FA_COMBINES, default=None,
                          help="w/o-FA map: product (paper) or sum (cpu) over levels of (1 - cos)")
    ablation.add_argument("--student-init", choices=("random", "mobilesam"), default=None,
                          help="student initialisation: random (official code) or MobileSAM's encoder")
    _bool_switch(ablation, "plain", "use the plain stream (default)",
                 "no plain stream: the frozen teacher takes its place (DeSTSeg-like)")
    _bool_switch(ablation, "decoder", "use decoder features as a second level (default)", "encoder level only")
    _bool_switch(ablation, "fa", "train and use the FA head (default)", "no FA head: the w/o-FA map only")
    train.add_argument("--no-eval", action="store_true", help="do not evaluate after training")
    train.add_argument("--no-maps", action="store_true", help="do not keep maps.npz (figures need it)")
    train.add_argument("--deterministic", action="store_true",
                       help="torch.use_deterministic_algorithms(True) (slower; CPU runs repeat bitwise without it)")
    train.set_defaults(func=_train)

    ev = subparsers.add_parser(
        "evaluate", help="evaluate a trained STLM run; writes metrics.json",
        description=(
            "Load RUN/checkpoint.pt (the final epoch), compute the FA and w/o-FA anomaly maps of the test split "
            "at the profile's evaluation resolution and write the run record: metrics.json (the FA map at the top "
            "level, the w/o-FA map under 'secondary'), maps.npz and finished.json."))
    ev.add_argument("--run", required=True, help="run directory written by 'stlm train'")
    ev.add_argument("--root", default=None, help="dataset root (default: the one recorded at training time)")
    add_runtime(ev, profile=False)
    ev.add_argument("--batch-size", type=positive_int, default=8, help="inference batch size (default 8)")
    ev.add_argument("--no-maps", action="store_true", help="do not write maps.npz")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.set_defaults(func=_evaluate)
