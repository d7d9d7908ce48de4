"""``stlm data ...``: the synthetic dataset, dataset validation and downloads."""

from __future__ import annotations

import argparse
import json

from stlm_core.data.registry import DATASET_NAMES


def _synthetic(args: argparse.Namespace) -> int:
    from stlm_core.data.synthetic import generate

    out = generate(args.out, size=args.size, seed=args.seed, progress=not args.quiet)
    print(f"wrote the synthetic dataset (size {args.size}, seed {args.seed}) to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from stlm_core.data.check import check_dataset, format_report

    report = check_dataset(args.dataset, args.root, categories=args.category or None, deep=args.deep,
                           progress=not args.json)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from stlm_core.cli.download import convert_main

    return convert_main(args.format, args.options, prog=f"stlm data convert {args.format}")


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="datasets: synthetic default, validation, downloads",
                                 description="Create, validate and download datasets.")
    data_sub = data.add_subparsers(dest="data_command", metavar="<data command>")
    data_sub.required = True

    syn = data_sub.add_parser(
        "synthetic", help="write the embedded synthetic dataset (MVTec AD layout)",
        description="Write a procedurally generated dataset in MVTec AD layout: 4 categories (carpet_like, "
                    "wood_like textures; bottle_like, nut_like objects), 40 normal training images and 30 test "
                    "images (10 good, 4 defect kinds x 5) per category, with exact pixel masks. The same seed "
                    "gives byte-identical files. This is synthetic data, not real inspection images.")
    syn.add_argument("out", help="output folder (created if missing)")
    syn.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    syn.add_argument("--quiet", action="store_true", help="no progress bar")
    syn.set_defaults(func=_synthetic)

    chk = data_sub.add_parser(
        "check", help="validate a dataset root and print per-category counts",
        description="Validate a dataset root (layout, masks present, mask size = image size, readable headers) and "
                    "print per-category counts: normal training images, test images per defect type, and test "
                    "images with masks. Reports every problem found (empty category folders, a test split without defects, "
                    "missing or wrong-size masks), each naming the file and the fix, and then exits with status 2.")
    chk.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset layout")
    chk.add_argument("--root", required=True, help="dataset root folder")
    chk.add_argument("--category", action="append", help="check only this category (repeatable)")
    chk.add_argument("--deep", action="store_true", help="decode every image fully (slow; finds truncated files)")
    chk.add_argument("--json", action="store_true",
                     help='print one JSON object {"dataset", "root", "categories": {cat: {"train", "test", "masks"}}}')
    chk.set_defaults(func=_check)

    conv = data_sub.add_parser(
        "convert", help="convert VisA, DAGM 2007 or MVTec 3D-AD (RGB) to the MVTec AD layout",
        description="Convert a dataset from its native layout to the MVTec AD layout that every command reads "
                    "(--dataset mvtec). FORMAT: visa | dagm | mvtec3d; the rest are the converter's options: "
                    "'stlm data convert mvtec3d --src NATIVE --dst OUT [--category C] [--include-validation]'. "
                    "'stlm data convert FORMAT --help' lists them.")
    conv.add_argument("format", choices=("visa", "dagm", "mvtec3d"), help="native layout to convert from")
    conv.add_argument("options", nargs=argparse.REMAINDER, help="--src NATIVE --dst OUT [...] (see FORMAT --help)")
    conv.set_defaults(func=_convert)

    from stlm_core.cli.download import add_download_parser  # `stlm data download` lives with the download code

    add_download_parser(data_sub)
