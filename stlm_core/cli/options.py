"""Argument types and options shared by the commands: one default profile and device everywhere."""

from __future__ import annotations

import argparse

from stlm_core.configs import DEFAULT_PROFILE, PROFILE_HELP, PROFILES
from stlm_core.runtime import DEFAULT_DEVICE, THREADS_HELP


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--batch-size 0`` is an error, not a silent default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_dataset(parser: argparse.ArgumentParser, *, category: bool = True, required: bool = True,
                note: str = "") -> None:
    """``--dataset``, ``--root`` (and ``--category``); ``required=False`` lets the handler check them (``note`` is
    added to their help)."""
    from stlm_core.data.registry import DATASET_NAMES

    parser.add_argument("--dataset", required=required, choices=DATASET_NAMES, help=f"dataset layout{note}")
    parser.add_argument("--root", required=required, help=f"dataset root folder{note}")
    if category:
        parser.add_argument("--category", required=required, help=f"category: one model / run per category{note}")


def add_runtime(parser: argparse.ArgumentParser, *, profile: bool = True) -> None:
    """``--profile`` (default cpu), ``--device`` (default auto), ``--threads`` and ``--quiet``."""
    if profile:
        parser.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE,
                            help=f"{PROFILE_HELP} (default {DEFAULT_PROFILE})")
    parser.add_argument("--device", default=DEFAULT_DEVICE,
                        help=f"auto (CUDA if available, else CPU) | cpu | cuda[:i] (default {DEFAULT_DEVICE})")
    parser.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
