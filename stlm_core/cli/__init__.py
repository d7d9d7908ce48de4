"""The ``stlm`` command (also ``python -m stlm_core``).

Each group of subcommands lives in its own light module of this package (no torch import at module level) that
exposes ``register(subparsers)``: ``data`` (synthetic data, checks), ``download`` (datasets and weights),
``stlm`` (train, evaluate), ``clipsam`` (zeroshot, adapters), ``bench``, ``check`` (equivalence with the official
code), ``deploy`` (export, predict). This file only lists them. The handlers
are thin: they build a config with ``from_profile`` and call the library's entry points. User-fixable problems raise
:class:`stlm_core.errors.StlmError` and are printed as ``error: <message>`` with exit status 2, as are file-system
errors a user can fix (permissions, read-only or full disk, a file where a folder is needed); bad option values are
argparse's errors (also status 2). An interrupt (Ctrl-C) exits with status 130; an interrupted training says what was
saved and how to continue.
"""

from __future__ import annotations

import argparse
import errno
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
    "stlm_core.cli.check",
    "stlm_core.cli.deploy",
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


# File-system errors caused by the user's paths or machine, not by a bug: reported without a traceback.
USER_ERRNOS: dict[int, str] = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "the disk is full; free some space or choose another path",
    errno.EDQUOT: "the disk quota is exceeded; free some space or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder, not a file; pass a file path",
}


def os_error_message(exc: OSError) -> str | None:
    """``error: ...`` text for a user-fixable :class:`OSError` (naming the path and the fix); ``None`` otherwise."""
    fix = USER_ERRNOS.get(exc.errno)
    if fix is None:
        return None
    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    where = f" {path}" if path is not None else ""
    return f"cannot access{where} ({exc.strerror or exc}); {fix}."


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stlm argv``; returns the exit status (argparse errors raise ``SystemExit(2)``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C); every file written so far is complete (files are replaced atomically).",
              file=sys.stderr)
        return 130
    except StlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)

