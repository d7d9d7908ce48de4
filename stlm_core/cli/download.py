"""``stlm data download NAME`` and ``stlm weights download|list``, plus the entry points of ``data_scripts/``.

Light module (no torch import): the handlers import the download code when they run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from stlm_core.errors import StlmError

DOWNLOADABLE = ("mvtec", "visa", "dagm", "loco", "dtd")


def _datasets_epilog() -> str:
    from stlm_core.data.sources import MIRROR_ENV, SOURCES

    lines = ["datasets (licences: you must accept them before use):"]
    for src in SOURCES.values():
        lines.append(f"  {src.name:6s} {src.title}; licence: {src.licence}")
    lines.append(f"Mirrors: --url BASE_URL or ${MIRROR_ENV}=BASE_URL fetch <BASE_URL>/<archive file name>.")
    return "\n".join(lines)


def _download_dataset(args: argparse.Namespace) -> int:
    from stlm_core.data.sources import fetch_dataset

    fetch_dataset(args.name, args.root, url=args.url, keep_archives=args.keep_archive, force=args.force,
                  progress=not args.quiet)
    return 0


def _add_dataset_arguments(parser: argparse.ArgumentParser, with_name: bool = True) -> None:
    if with_name:
        parser.add_argument("name", choices=DOWNLOADABLE, help="dataset to download")
    parser.add_argument("--root", required=True, help="folder to install the dataset in (created if missing)")
    parser.add_argument("--url", default=None,
                        help="mirror base URL (the archive file name is appended) or the archive's full URL; "
                             "default: $STLM_DATA_MIRROR, else the official URL")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded archives in ROOT/_downloads")
    parser.add_argument("--force", action="store_true", help="reinstall even if ROOT says it is installed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_download_parser(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``download`` to the ``stlm data`` subcommands (called by :mod:`stlm_core.cli.data`)."""
    parser = data_subparsers.add_parser(
        "download", help="download + verify (sha256) + unpack a public dataset (VisA/DAGM also converted)",
        description="Download a public dataset, verify its sha256 (where the official checksum is known; otherwise "
                    "the computed hash is printed as unverified), unpack it into ROOT and, for VisA and DAGM 2007, "
                    "convert it to the MVTec AD layout. An interrupted download resumes when rerun; a checksum "
                    "mismatch refuses and leaves nothing unpacked. This is the only command that downloads data.",
        epilog=_datasets_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_dataset_arguments(parser)
    parser.set_defaults(func=_download_dataset)
    return parser


def _weights_download(args: argparse.Namespace) -> int:
    from stlm_core.download import download_weights

    path = download_weights(args.name, args.dir, url=args.url, progress=not args.quiet)
    print(f"{args.name}: {path}")
    return 0


def _weights_list(args: argparse.Namespace) -> int:
    from stlm_core.weights import REGISTRY, find_weights

    for name, item in REGISTRY.items():
        path = find_weights(name)
        status = str(path) if path else "missing"
        print(f"{name:26s} {item.filename:24s} {item.licence:11s} {status}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stlm weights download NAME`` and ``stlm weights list``."""
    from stlm_core.weights import REGISTRY

    weights = subparsers.add_parser("weights", help="official pretrained checkpoints: list, download",
                                    description="List and download the official pretrained checkpoints.")
    sub = weights.add_subparsers(dest="weights_command", metavar="<weights command>")
    sub.required = True
    names = "\n".join(f"  {n:26s} {e.licence:11s} {e.note}" for n, e in REGISTRY.items())
    dl = sub.add_parser(
        "download", help="download + verify an official checkpoint",
        description="Download an official checkpoint into DIR (default $STLM_WEIGHTS, else "
                    "~/.cache/stlm_core/weights), resuming interrupted downloads and verifying the sha256 where it "
                    "is known (otherwise the computed hash is printed as unverified).",
        epilog="checkpoints:\n" + names, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dl.add_argument("name", choices=tuple(REGISTRY), help="checkpoint name")
    dl.add_argument("--dir", default=None, help="target folder (default: $STLM_WEIGHTS or ~/.cache/stlm_core/weights)")
    dl.add_argument("--url", default=None, help="mirror base URL or full file URL (default: the official URL)")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_weights_download)
    ls = sub.add_parser("list", help="list the known checkpoints and where they were found",
                        description="List the registry of checkpoints and the local file found for each.")
    ls.set_defaults(func=_weights_list)


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130


def dataset_download_main(name: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``data_scripts/download_<name>.py``: same options as ``stlm data download NAME``."""
    from stlm_core.data.sources import source

    src = source(name)
    parser = argparse.ArgumentParser(
        prog=f"download_{name}.py",
        description=f"Download, verify, unpack{' and convert' if src.postprocess != 'none' else ''} {src.title} "
                    f"into ROOT (same as 'stlm data download {name}'). Licence: {src.licence}. "
                    f"Homepage: {src.homepage}.",
    )
    _add_dataset_arguments(parser, with_name=False)
    parser.set_defaults(func=_download_dataset, name=name)
    return _run(parser, argv)


def weights_download_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``data_scripts/download_weights.py``: same as ``stlm weights download`` / ``list``."""
    from stlm_core.weights import REGISTRY

    parser = argparse.ArgumentParser(
        prog="download_weights.py",
        description="Download + verify official checkpoints (same as 'stlm weights download NAME'); --list shows "
                    "the registry and what is present locally.",
        epilog="checkpoints:\n" + "\n".join(f"  {n:26s} {e.licence:11s} {e.note}" for n, e in REGISTRY.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="*", help="checkpoint name(s); 'all' for every checkpoint")
    parser.add_argument("--dir", default=None, help="target folder (default: $STLM_WEIGHTS or ~/.cache/stlm_core/weights)")
    parser.add_argument("--url", default=None, help="mirror base URL (the file name is appended)")
    parser.add_argument("--list", action="store_true", help="list the checkpoints and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handler(args: argparse.Namespace) -> int:
        from stlm_core.download import download_weights

        if args.list or not args.name:
            return _weights_list(args)
        names = list(REGISTRY) if args.name == ["all"] else args.name
        for name in names:
            print(f"{name}: {download_weights(name, args.dir, url=args.url, progress=not args.quiet)}")
        return 0

    parser.set_defaults(func=handler)
    return _run(parser, argv)


def convert_main(kind: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of ``data_scripts/convert_<kind>.py`` and ``stlm data convert <kind>`` (kind: ``visa``,
    ``dagm`` or ``mvtec3d``)."""
    titles = {"visa": "VisA (native layout with split_csv/1cls.csv)", "dagm": "DAGM 2007 (Class1..Class10)",
              "mvtec3d": "MVTec 3D-AD (RGB images and masks; point clouds ignored)"}
    parser = argparse.ArgumentParser(
        prog=prog or f"convert_{kind}.py",
        description=f"Convert {titles[kind]} to the MVTec AD layout (masks <name>_mask.png, 0/255). Idempotent: "
                    "categories already in DST are skipped; each category is written to a temporary folder and "
                    "renamed when complete.",
    )
    parser.add_argument("--src", required=True, help="folder with the native layout")
    parser.add_argument("--dst", required=True, help="output folder (MVTec AD layout; read with --dataset mvtec)")
    parser.add_argument("--category", action="append", help="convert only this category (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    if kind == "mvtec3d":
        parser.add_argument("--include-validation", action="store_true",
                            help="also copy validation/good into train/good (as val_<name>); default: train only")

    def handler(args: argparse.Namespace) -> int:
        from stlm_core.data import convert

        if kind == "mvtec3d":
            convert.convert_mvtec3d(args.src, args.dst, args.category, include_validation=args.include_validation,
                                    progress=not args.quiet)
            return 0
        func = convert.convert_visa if kind == "visa" else convert.convert_dagm
        func(args.src, args.dst, args.category, progress=not args.quiet)
        return 0

    parser.set_defaults(func=handler)
    return _run(parser, argv)
