"""Where a result came from: package and library versions, git commit, host, threads, weights, data, seed."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from stlm_core import __version__
from stlm_core.fileio import to_jsonable


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository holding ``path`` (default: this package), ``+dirty`` if the
    working tree has uncommitted changes; ``None`` when git or the repository is not available."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def _package_version(name: str) -> str | None:
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    try:
        return metadata.version(name)  # no import: torch takes seconds to import
    except metadata.PackageNotFoundError:
        return None


def make_provenance(*, profile: str | None, device: str | None, weights: str | Mapping[str, str] | None,
                    dataset: Mapping[str, Any] | str | None, seed: int | None,
                    timings: Mapping[str, float] | None = None, **extra: Any) -> dict:
    """Where a result came from: package version and git commit, library versions, host, threads, profile,
    device, weights identities (``random-init`` or ``<name>@<sha256>``), dataset identity, seed, timings (s),
    a UTC timestamp, ``random_init`` (any part randomly initialised) and any ``extra`` facts."""
    identities = list(weights.values()) if isinstance(weights, Mapping) else [weights]
    threads = None
    if "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    prov = {
        "package": "stlm_core",
        "package_version": __version__,
        "git_commit": git_commit(),
        "profile": profile,
        "device": device,
        "threads": threads,
        "versions": {name: _package_version(name) for name in
                     ("torch", "torchvision", "numpy", "segment-anything", "mobilesam-mirror", "open_clip_torch",
                      "timm")},
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "weights": weights,
        "random_init": any(w == "random-init" for w in identities),
        "dataset": dataset,
        "seed": seed,
        "timings": dict(timings or {}),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    prov.update(extra)
    return to_jsonable(prov)
