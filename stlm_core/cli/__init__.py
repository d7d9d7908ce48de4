"""The ``stlm`` command (also ``python -m stlm_core``).

Each group of subcommands lives in its own light module of this package (no torch import at module level) that
exposes ``register(subparsers)``: ``data`` (synthetic data, checks), ``download`` (datasets and weights),
``stlm`` (train, evaluate), ``clipsam`` (zeroshot, adapters), ``bench``. This file only lists them. The handlers
are thin: they build a config with ``from_profile`` and call the library's entry points. User-fixable problems raise
:class:`stlm_core.errors.StlmError` and are printed as ``error: <message>`` with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from stlm_core import __version__
from stlm_core.errors import StlmError

# Modules that register subcommands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "stlm_core.cli.data",
    "stlm_core.cli.download",
    "stlm_core.cli.stlm",
    "stlm_core.cli.clipsam",
    "stlm_core.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stlm",
        description=(
            "Reproducibility study of STLM (SAM-guided two-stream lightweight anomaly detection) and the "
            "CLIP-SAM cascaded-prompt zero-shot method. Datasets, training, evaluation, zero-shot "
            "segmentation and benchmarks."
        ),
        epilog="Run 'stlm <command> --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"stlm_core {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except StlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
