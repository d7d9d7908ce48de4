"""Run records: one directory per (method, dataset, category, config) with JSON files (DESIGN.md section 3).

Layout (see :func:`run_dir_for`)::

    runs/<method>/<dataset>/<category>/<config-id>/
        config.json     the full configuration of the run (written by :func:`prepare_run_dir`)
        metrics.json    metric keys of DESIGN.md section 4 at the top level, plus a ``provenance`` object

``metrics.json`` keeps the metric values at the top level so that ``json.load(f)["pixel_auroc"]`` works;
the reserved key ``provenance`` holds where the numbers came from (:func:`make_provenance`). Metric values are
fractions in [0, 1] or ``null`` (not meaningful / not computed); non-finite floats are written as ``null``
because JSON has no NaN.

Every write is atomic (temporary file in the same folder + ``os.replace``), so a killed run never leaves a
half-written record. A run directory that already holds a *different* configuration is never overwritten
silently: :func:`prepare_run_dir` raises :class:`StlmError` unless ``force=True``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from stlm_core import __version__
from stlm_core.errors import StlmError

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
PROVENANCE_KEY = "provenance"


# --------------------------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy / torch scalars and arrays, paths, tuples and sets turned into plain JSON types.

    Non-finite floats (NaN, +-inf) become ``None``: JSON has no NaN and a NaN metric means "not available".
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    # numpy / torch without importing them: both expose .tolist() (scalars give Python numbers).
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        return to_jsonable(obj.item())
    raise TypeError(f"cannot store a value of type {type(obj).__name__} in a run record: {obj!r}")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file; a missing or corrupt file raises :class:`StlmError` naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise StlmError(f"{path} does not exist; run the experiment first (or check the --run path).") from None
    except json.JSONDecodeError as exc:
        raise StlmError(f"{path} is not valid JSON ({exc}); delete it and rerun the experiment.") from None


# --------------------------------------------------------------------------------------------------------------
# Configs and run directories
# --------------------------------------------------------------------------------------------------------------


def canonical_config(config: Mapping[str, Any]) -> dict:
    """``config`` as plain JSON types (the form stored in ``config.json`` and hashed by :func:`config_id`)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"a run config must be a mapping, got {type(config).__name__}")
    return to_jsonable(config)


def config_id(config: Mapping[str, Any], length: int = 10) -> str:
    """Short stable hash (hex) of a configuration; key order does not matter."""
    text = json.dumps(canonical_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def run_dir_for(runs_dir: str | os.PathLike, method: str, dataset: str, category: str,
                config: Mapping[str, Any] | str) -> Path:
    """``runs_dir/<method>/<dataset>/<category>/<config-id>``; ``config`` is a mapping (hashed) or an id."""
    cid = config if isinstance(config, str) else config_id(config)
    return Path(runs_dir) / method / dataset / category / cid


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(name)
            else:
                out += _diff_keys(old[key], new[key], name)
        return out
    return [] if old == new else [prefix or "<root>"]


def prepare_run_dir(run_dir: str | os.PathLike, config: Mapping[str, Any], force: bool = False) -> Path:
    """Create ``run_dir`` and write ``config.json``; refuse to reuse it for a different configuration.

    - new directory, or existing one with the *same* config: returns the path (existing results stay, so a
      caller can skip work when :func:`has_metrics` is true);
    - existing directory with a *different* config: raises :class:`StlmError` listing the differing keys,
      unless ``force=True``, in which case the new config replaces the old one and stale ``metrics*.json``
      files are removed (checkpoints are left for the caller to manage).
    """
    run_dir = Path(run_dir)
    new = canonical_config(config)
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.exists():
        old = read_json(cfg_path)
        if old == new:
            return run_dir
        if not force:
            diff = ", ".join(_diff_keys(old, new)[:10])
            raise StlmError(
                f"{run_dir} already holds a run with a different configuration (differs in: {diff}). "
                "Use another run directory, or pass force=True (--force) to replace it."
            )
        for stale in run_dir.glob("metrics*.json"):
            stale.unlink()
    elif run_dir.exists() and any(run_dir.glob("metrics*.json")) and not force:
        raise StlmError(
            f"{run_dir} holds results but no {CONFIG_FILE}, so it cannot be checked against this configuration. "
            "Use another run directory, or pass force=True (--force) to replace it."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_path, new)
    return run_dir


def has_metrics(run_dir: str | os.PathLike, name: str = METRICS_FILE) -> bool:
    """True when ``run_dir`` already holds a results file ``name`` (the run can be reused)."""
    return (Path(run_dir) / name).is_file()


# --------------------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------------------


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
    """Where a result came from (DESIGN.md section 3).

    Args:
        profile: ``paper`` | ``cpu`` | ``smoke``.
        device: e.g. ``"cpu"`` or ``"cuda:0"``.
        weights: identity from :func:`stlm_core.weights.weights_identity` (``"random-init"`` or
            ``"<name>@<sha256>"``), or a mapping role -> identity when a method uses several checkpoints.
        dataset: identity, e.g. ``{"name": "mvtec", "category": "bottle", "files": 292, "synthetic": False}``.
        seed: the random seed.
        timings: wall-clock seconds per phase, e.g. ``{"train_s": 812.4, "infer_s": 33.0}``.
        extra: any further JSON-able facts (stored as given).

    Returns a dict that also records the package version, git commit, torch/python versions, host platform,
    a UTC timestamp and ``random_init`` (true when any weights identity is ``random-init``).
    """
    identities = list(weights.values()) if isinstance(weights, Mapping) else [weights]
    prov = {
        "package": "stlm_core",
        "package_version": __version__,
        "git_commit": git_commit(),
        "profile": profile,
        "device": device,
        "torch_version": _package_version("torch"),
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


# --------------------------------------------------------------------------------------------------------------
# Metrics records
# --------------------------------------------------------------------------------------------------------------


def write_metrics(run_dir: str | os.PathLike, metrics: Mapping[str, Any], provenance: Mapping[str, Any],
                  name: str = METRICS_FILE) -> Path:
    """Atomically write ``run_dir/name``: the metric keys at the top level plus ``"provenance"``."""
    if PROVENANCE_KEY in metrics:
        raise ValueError(f"metric name {PROVENANCE_KEY!r} is reserved for the provenance record")
    record = dict(to_jsonable(dict(metrics)))
    record[PROVENANCE_KEY] = to_jsonable(dict(provenance))
    return atomic_write_json(Path(run_dir) / name, record)


def read_run(run_dir: str | os.PathLike, name: str = METRICS_FILE) -> dict:
    """Read a run directory: ``{"run_dir", "config", "metrics", "provenance"}``.

    ``config`` is ``{}`` when ``config.json`` is absent; a missing metrics file raises :class:`StlmError`.
    """
    run_dir = Path(run_dir)
    record = read_json(run_dir / name)
    if not isinstance(record, dict):
        raise StlmError(f"{run_dir / name} does not hold a JSON object; delete it and rerun the experiment.")
    provenance = record.pop(PROVENANCE_KEY, {}) or {}
    cfg_path = run_dir / CONFIG_FILE
    config = read_json(cfg_path) if cfg_path.exists() else {}
    return {"run_dir": run_dir, "config": config, "metrics": record, "provenance": provenance}


def _flatten(prefix: str, obj: Any, out: dict) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = obj


def load_runs(runs_dir: str | os.PathLike, name: str = METRICS_FILE):
    """Aggregate every ``<run>/<name>`` under ``runs_dir`` into a ``pandas.DataFrame``, one row per run.

    Identity columns ``method``, ``dataset``, ``category`` come from ``config.json`` when it has those keys,
    else from the provenance (``method``, ``dataset.name``, ``dataset.category``), else from the path
    ``<method>/<dataset>/<category>/<config-id>`` relative to ``runs_dir``; ``config_id`` is the hash of
    ``config.json`` (else the folder name). Then ``profile``, ``weights``, ``random_init``, ``synthetic``
    (provenance ``dataset.synthetic``), ``seed``, ``device``, ``git_commit``, ``run_dir``, the metric
    columns, and the timings as ``time.<phase>``. An empty or missing ``runs_dir`` gives an empty frame with
    the identity columns.
    """
    import pandas as pd  # local: keep this module light for the CLI

    runs_dir = Path(runs_dir)
    id_cols = ["method", "dataset", "category", "config_id"]
    rows = []
    for path in sorted(runs_dir.rglob(name)) if runs_dir.is_dir() else []:
        run = read_run(path.parent, name)
        cfg, prov = run["config"], run["provenance"]
        parts = path.parent.relative_to(runs_dir).parts
        from_path = dict(zip(id_cols, (list(parts[-4:]) if len(parts) >= 4 else [None] * 4)))
        ds = prov.get("dataset") if isinstance(prov.get("dataset"), dict) else {}
        from_prov = {"method": prov.get("method"), "dataset": ds.get("name"), "category": ds.get("category")}
        row: dict[str, Any] = {}
        for col in id_cols[:3]:
            value = cfg.get(col) if isinstance(cfg, dict) else None
            for fallback in (from_prov[col], from_path[col]):
                value = fallback if value is None else value
            row[col] = value
        row["config_id"] = config_id(cfg) if cfg else from_path["config_id"]
        weights = prov.get("weights")
        row.update({
            "profile": prov.get("profile", cfg.get("profile") if isinstance(cfg, dict) else None),
            "weights": json.dumps(weights, sort_keys=True) if isinstance(weights, dict) else weights,
            "random_init": prov.get("random_init"),
            "synthetic": ds.get("synthetic", row["dataset"] == "synthetic"),
            "seed": prov.get("seed"),
            "device": prov.get("device"),
            "git_commit": prov.get("git_commit"),
            "run_dir": str(path.parent),
        })
        for key, value in run["metrics"].items():
            _flatten(key, value, row)
        for key, value in (prov.get("timings") or {}).items():
            row[f"time.{key}"] = value
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=id_cols)
    frame = pd.DataFrame(rows)
    return frame.sort_values(id_cols, na_position="last", kind="stable").reset_index(drop=True)
