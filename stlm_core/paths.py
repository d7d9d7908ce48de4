"""Default locations, resolved from the repository (not the working directory).

Notebooks execute in ``notebooks/``, the book builder in the repository root, users anywhere: relative defaults
such as ``runs`` would land in different places. When ``stlm_core`` is imported from a checkout (the folder above
the package holds ``pyproject.toml``), the defaults are that checkout's ``data/`` and ``runs/``; for an installed
package they fall back to the working directory.
"""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The repository checkout holding this package, or the working directory for an installed package."""
    candidate = Path(__file__).resolve().parents[1]
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


def default_runs_dir() -> Path:
    """``<repo>/runs``: where run records are written and reused."""
    return repo_root() / "runs"


def default_data_root(dataset: str = "synthetic") -> Path:
    """``<repo>/data/<dataset>`` (``synthetic`` is generated there by the book build)."""
    return repo_root() / "data" / dataset


def resolve(path: str | Path | None, default: Path) -> Path:
    """``path`` if given (relative paths are taken from the repository root), else ``default``."""
    if path is None:
        return default
    path = Path(path).expanduser()
    return path if path.is_absolute() else (repo_root() / path).resolve()
