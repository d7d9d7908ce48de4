"""Run records: the one layout both methods write and every notebook reads.

A run is one method on one category with one configuration, in ``runs/<method>/<dataset>/<category>/<run-id>/``::

    config.json     what the run id hashes: method, dataset, category, data identity, weights identity, config
    data.json       where the data was read from (root; not part of the id, so moved data is still recognised)
    run.lock        present while a process writes the run (pid and host; see run_lock)
    checkpoint.pt   trained methods: model + optimiser state, replaced atomically after every epoch
    losses.jsonl    trained methods: one JSON line per optimisation step
    metrics.json    the primary map's metrics at the top level (keys of stlm_core.metrics.METRIC_KEYS), the
                    other maps' under "secondary" -> name -> metrics, "map" = the primary map's name, "provenance"
    maps.npz        RunMaps: "map.<name>" (N, H, W) float32 maps, "score.<name>" (N,) image scores, "labels",
                    "masks", "defects", "paths", "primary", and optional "extra.<name>" per-image arrays
    extras.json     optional per-image JSON records (e.g. CLIP-SAM's prompt points)
    finished.json   written last: the run is complete. Nothing else marks a run as finished.

Every file is written atomically (:mod:`stlm_core.fileio`). The same rule scores every map: each map of a
:class:`RunMaps` gets the full metrics of :func:`stlm_core.metrics.compute_metrics` against the same masks and labels,
with its own image scores.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from stlm_core import __version__
from stlm_core.errors import StlmError
from stlm_core.fileio import atomic_savez, atomic_write_json, read_json, to_jsonable

CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.json"
MAPS_FILE = "maps.npz"
EXTRAS_FILE = "extras.json"
LOSSES_FILE = "losses.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
FINISHED_FILE = "finished.json"
LOCK_FILE = "run.lock"
PROVENANCE_KEY = "provenance"
SECONDARY_KEY = "secondary"


class RunLocked(StlmError):
    """Another live process is writing this run directory."""


# ------------------------------------------------------------------------------------------------ ids and dirs


def config_id(record: Mapping[str, Any], length: int = 10) -> str:
    """Short stable hash (hex) of a JSON-able record; key order does not matter."""
    text = json.dumps(to_jsonable(record), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# Raised whenever a code change alters what a run with the same record computes, so that older run folders are
# not reused for it. 2: STLM's FA target and every method's evaluation masks keep pixels at exactly 0.5 (>= 0.5,
# CLIP-SAM > 0.5 as APRIL-GAN) and the FA head is initialised as the official code does.
SEMANTICS_VERSION = 2


def run_record(method: str, config: Any, data: Mapping[str, Any], weights: Mapping[str, str],
               **extra: Any) -> dict:
    """What ``config.json`` stores and the run id hashes: method, dataset, category, data identity (name,
    category, file counts), weights identities, the resolved config (``to_dict()``), method extras and the code's
    :data:`SEMANTICS_VERSION`."""
    return to_jsonable({"method": method, "dataset": data["name"], "category": data["category"], "data": dict(data),
                        "weights": dict(weights), "config": config.to_dict(), **extra,
                        "semantics": SEMANTICS_VERSION})


def run_dir_for(runs_dir: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """``runs_dir/<method>/<dataset>/<category>/<run-id>`` for a :func:`run_record`."""
    return Path(runs_dir) / record["method"] / record["dataset"] / record["category"] / config_id(record)


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}.{key}" if prefix else str(key)
            out += [name] if key not in old or key not in new else _diff_keys(old[key], new[key], name)
        return out
    return [] if old == new else [prefix or "<root>"]


def prepare_run_dir(run_dir: str | os.PathLike, record: Mapping[str, Any], *, force: bool = False) -> Path:
    """Create ``run_dir`` and write ``config.json``; refuse to reuse it for a different configuration.

    - new directory, or one with the *same* record: returned as is (a caller may reuse finished results);
    - a *different* record: :class:`StlmError` listing the differing keys, unless ``force``, which replaces the
      record and removes the old results (metrics, maps, extras, finished marker; checkpoints are the caller's).
    """
    run_dir = Path(run_dir)
    new = to_jsonable(record)
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.exists():
        old = read_json(cfg_path)
        if old == new:
            return run_dir
        if not force:
            diff = ", ".join(_diff_keys(old, new)[:10])
            raise StlmError(f"{run_dir} already holds a run with a different configuration (differs in: {diff}). "
                            "Use another run directory, or pass force=True (--force) to replace it.")
        clear_results(run_dir)
    elif run_dir.exists() and (run_dir / METRICS_FILE).exists() and not force:
        raise StlmError(f"{run_dir} holds results but no {CONFIG_FILE}, so it cannot be checked against this "
                        "configuration. Use another run directory, or pass force=True (--force) to replace it.")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_path, new)
    return run_dir


def begin_run(run_dir: str | os.PathLike, record: Mapping[str, Any], data: Any, *, force: bool = False,
              **locations: Any) -> Path:
    """Start (or restart) writing a run: check/write ``config.json``, drop old results (a restarted run never looks
    finished), and record where the data was read from (``data.json``, plus any other ``locations`` such as the
    texture folder). Call it while holding :func:`run_lock`."""
    run_dir = prepare_run_dir(run_dir, record, force=force)
    clear_results(run_dir)
    atomic_write_json(run_dir / DATA_FILE, {"dataset": data.dataset, "root": str(data.root),
                                            "category": data.category, "limit": data.limit, **locations})
    return run_dir


def clear_results(run_dir: str | os.PathLike) -> None:
    """Remove the finished marker first, then the results (a crash in between never looks finished)."""
    run_dir = Path(run_dir)
    for name in (FINISHED_FILE, METRICS_FILE, MAPS_FILE, EXTRAS_FILE):
        (run_dir / name).unlink(missing_ok=True)


def read_config(run_dir: str | os.PathLike) -> dict:
    """The run's ``config.json`` record."""
    return read_json(Path(run_dir) / CONFIG_FILE)


# ---------------------------------------------------------------------------------------------------- locking


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A writer touches its lock every LOCK_HEARTBEAT_S seconds. A lock from another host (a cluster job on another node)
# cannot be checked by pid; it counts as stale when it has not been touched for LOCK_STALE_S seconds.
LOCK_HEARTBEAT_S = 60.0
LOCK_STALE_S = 600.0


def _keep_touching(path: Path, stop: threading.Event) -> None:
    while not stop.wait(LOCK_HEARTBEAT_S):
        try:
            os.utime(path)
        except OSError:
            return


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir/run.lock`` (pid and host) while writing a run; one writer per run directory.

    A second writer raises :class:`RunLocked` naming the holder. A stale lock is taken over with a warning: on this
    host, one whose process is dead; from another host (e.g. a preempted cluster job requeued on another node), one
    whose holder stopped touching it :data:`LOCK_STALE_S` seconds ago (holders touch it every
    :data:`LOCK_HEARTBEAT_S` s). The lock file is removed on exit.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
                idle = time.time() - path.stat().st_mtime
            except (OSError, json.JSONDecodeError):
                holder, idle = {}, 0.0
            same_host = holder.get("host") == me["host"]
            if same_host and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
                warnings.warn(f"{path}: taking over a stale lock of process {holder['pid']} (no longer running)",
                              stacklevel=3)
                path.unlink(missing_ok=True)
                continue
            if not same_host and idle > LOCK_STALE_S:
                warnings.warn(f"{path}: taking over a stale lock of process {holder.get('pid', '?')} on host "
                              f"{holder.get('host', '?')} (not touched for {idle / 60:.0f} min)", stacklevel=3)
                path.unlink(missing_ok=True)
                continue
            raise RunLocked(f"{run_dir} is being written by process {holder.get('pid', '?')} on host "
                            f"{holder.get('host', '?')} ({path}). Wait for it to finish or use another run "
                            "directory; if that process is gone, delete the lock file"
                            + ("." if same_host else f" (or wait: a lock from another host expires "
                                                     f"{LOCK_STALE_S / 60:.0f} min after its last heartbeat).")) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    stop = threading.Event()
    heartbeat = threading.Thread(target=_keep_touching, args=(path, stop), daemon=True, name="run-lock-heartbeat")
    heartbeat.start()
    try:
        yield path
    finally:
        stop.set()
        heartbeat.join()
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- provenance


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


# ------------------------------------------------------------------------------------------------------- maps


@dataclass
class RunMaps:
    """The per-image output of one run on a test split, at the evaluation size.

    ``maps``: name -> float32 (N, H, W), higher = more anomalous; ``scores``: name -> (N,) image scores (same
    names); ``primary``: the name reported as the method's result; ``labels`` (N,) {0, 1}; ``masks`` (N, H, W)
    {0, 1} uint8; ``defects`` / ``paths`` (N,) strings; ``arrays``: optional per-image arrays (first axis N);
    ``records``: optional per-image JSON-able dicts (e.g. prompt points in original-image pixels).
    """

    primary: str
    maps: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    labels: np.ndarray
    masks: np.ndarray
    defects: np.ndarray
    paths: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    records: list[dict] | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.primary not in self.maps:
            raise ValueError(f"primary map {self.primary!r} is not among the maps {sorted(self.maps)}")
        if set(self.maps) != set(self.scores):
            raise ValueError(f"maps {sorted(self.maps)} and scores {sorted(self.scores)} must have the same names")
        for name, value in [*self.maps.items(), *self.scores.items(), *self.arrays.items(),
                            ("masks", self.masks), ("defects", self.defects), ("paths", self.paths)]:
            if len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries, labels {n}")
        if self.records is not None and len(self.records) != n:
            raise ValueError(f"records has {len(self.records)} entries, labels {n}")

    @property
    def names(self) -> list[str]:
        """Map names, the primary first."""
        return [self.primary] + sorted(n for n in self.maps if n != self.primary)


def save_maps(run_dir: str | os.PathLike, run_maps: RunMaps) -> Path:
    """Write ``maps.npz`` (float32 maps: metrics recomputed from it equal the reported ones) and ``extras.json``."""
    run_dir = Path(run_dir)
    arrays: dict[str, np.ndarray] = {
        "primary": np.array(run_maps.primary), "labels": np.asarray(run_maps.labels, np.int64),
        "masks": np.asarray(run_maps.masks, np.uint8), "defects": np.asarray(run_maps.defects, str),
        "paths": np.asarray(run_maps.paths, str)}
    for name, value in run_maps.maps.items():
        arrays[f"map.{name}"] = np.asarray(value, np.float32)
        arrays[f"score.{name}"] = np.asarray(run_maps.scores[name], np.float32)
    for name, value in run_maps.arrays.items():
        arrays[f"extra.{name}"] = np.asarray(value)
    if run_maps.records is not None:
        atomic_write_json(run_dir / EXTRAS_FILE, run_maps.records)
    return atomic_savez(run_dir / MAPS_FILE, **arrays)


def load_maps(run_dir: str | os.PathLike) -> RunMaps:
    """Read a run's ``maps.npz`` (and ``extras.json`` when present) back into a :class:`RunMaps`."""
    run_dir = Path(run_dir)
    path = run_dir / MAPS_FILE
    if not path.is_file():
        raise StlmError(f"{path} does not exist: the run was made without saving maps; rerun it with maps saved "
                        "(--save-maps).")
    with np.load(path, allow_pickle=False) as data:
        files = data.files
        get = {k: data[k] for k in files}
    maps = {k[4:]: v for k, v in get.items() if k.startswith("map.")}
    scores = {k[6:]: v for k, v in get.items() if k.startswith("score.")}
    arrays = {k[6:]: v for k, v in get.items() if k.startswith("extra.")}
    records = read_json(run_dir / EXTRAS_FILE) if (run_dir / EXTRAS_FILE).is_file() else None
    return RunMaps(primary=str(get["primary"]), maps=maps, scores=scores, labels=get["labels"], masks=get["masks"],
                   defects=get["defects"], paths=get["paths"], arrays=arrays, records=records)


def score_maps(run_maps: RunMaps) -> dict[str, dict]:
    """The one rule for every map of a run: name -> :func:`~stlm_core.metrics.compute_metrics` of that map and
    its image scores against the run's masks and labels."""
    from stlm_core.metrics import compute_metrics

    return {name: compute_metrics(masks=run_maps.masks, maps=run_maps.maps[name], labels=run_maps.labels,
                                  image_scores=run_maps.scores[name])
            for name in run_maps.names}


# ---------------------------------------------------------------------------------------------------- metrics


def write_metrics(run_dir: str | os.PathLike, metrics_by_map: Mapping[str, Mapping[str, Any]], primary: str,
                  provenance: Mapping[str, Any]) -> Path:
    """Write ``metrics.json``: the ``primary`` map's metrics at the top level, the others under ``secondary``."""
    record = dict(to_jsonable(dict(metrics_by_map[primary])))
    record["map"] = primary
    record[SECONDARY_KEY] = {name: to_jsonable(dict(m)) for name, m in metrics_by_map.items() if name != primary}
    record[PROVENANCE_KEY] = to_jsonable(dict(provenance))
    return atomic_write_json(Path(run_dir) / METRICS_FILE, record)


def mark_finished(run_dir: str | os.PathLike) -> Path:
    """Write ``finished.json`` (last: every other file of the run is complete)."""
    run_dir = Path(run_dir)
    present = sorted(p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return atomic_write_json(run_dir / FINISHED_FILE, {"finished_utc": stamp, "files": present})


def is_finished(run_dir: str | os.PathLike) -> bool:
    """True when the run wrote its finished marker (all its results are complete)."""
    return (Path(run_dir) / FINISHED_FILE).is_file()


def read_run(run_dir: str | os.PathLike) -> dict:
    """``{"run_dir", "config", "metrics", "secondary", "map", "provenance"}`` of a run with ``metrics.json``."""
    run_dir = Path(run_dir)
    record = read_json(run_dir / METRICS_FILE)
    if not isinstance(record, dict):
        raise StlmError(f"{run_dir / METRICS_FILE} does not hold a JSON object; delete it and rerun the experiment.")
    provenance = record.pop(PROVENANCE_KEY, {}) or {}
    secondary = record.pop(SECONDARY_KEY, {}) or {}
    primary = record.pop("map", None)
    config = read_json(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).exists() else {}
    return {"run_dir": run_dir, "config": config, "metrics": record, "secondary": secondary, "map": primary,
            "provenance": provenance}


def read_losses(run_dir: str | os.PathLike):
    """``losses.jsonl`` as a ``pandas.DataFrame`` (one row per optimisation step; empty if there is none)."""
    import pandas as pd

    path = Path(run_dir) / LOSSES_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["epoch", "step", "loss"])
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def read_extras(run_dir: str | os.PathLike) -> list[dict]:
    """The per-image JSON records of a run (``extras.json``), or ``[]``."""
    path = Path(run_dir) / EXTRAS_FILE
    return read_json(path) if path.is_file() else []


def _flatten(prefix: str, obj: Any, out: dict) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = obj


def load_runs(runs_dir: str | os.PathLike, run_dirs: list[str | os.PathLike] | None = None):
    """Every finished run under ``runs_dir`` (or exactly ``run_dirs``) as a ``pandas.DataFrame``, one row per run.

    Columns: ``method``, ``dataset``, ``category``, ``run_id``, ``profile``, ``map`` (the primary map's name),
    ``weights`` (JSON of the identities), ``random_init``, ``synthetic``, ``seed``, ``device``, ``threads``,
    ``git_commit``, ``run_dir``, ``changed`` (comma-separated config fields that differ from the profile's recipe,
    seed and schedule aside; ``""`` = the profile as is), ``train_steps``, the primary map's metrics (``pixel_auroc`` ...), every secondary map's as
    ``<name>.<metric>`` (e.g. ``wo_fa.pixel_auroc``), and timings as ``time.<phase>``. Unfinished runs are skipped.
    """
    import pandas as pd

    from stlm_core.configs import changed_from_profile

    if run_dirs is None:
        runs_dir = Path(runs_dir)
        candidates = sorted(p.parent for p in runs_dir.rglob(FINISHED_FILE)) if runs_dir.is_dir() else []
    else:
        candidates = [Path(d) for d in run_dirs]
    rows = []
    for run_dir in candidates:
        if not is_finished(run_dir):
            continue
        run = read_run(run_dir)
        cfg, prov = run["config"], run["provenance"]
        ds = prov.get("dataset") if isinstance(prov.get("dataset"), dict) else {}
        weights = prov.get("weights")
        row: dict[str, Any] = {
            "method": cfg.get("method"), "dataset": cfg.get("dataset"), "category": cfg.get("category"),
            "run_id": config_id(cfg), "profile": prov.get("profile"), "map": run["map"],
            "weights": json.dumps(weights, sort_keys=True) if isinstance(weights, dict) else weights,
            "random_init": prov.get("random_init"),
            "synthetic": ds.get("synthetic", cfg.get("dataset") == "synthetic"),
            "seed": prov.get("seed"), "device": prov.get("device"), "threads": prov.get("threads"),
            "git_commit": prov.get("git_commit"), "run_dir": str(run_dir),
            "changed": ",".join(changed_from_profile(cfg.get("method"), cfg.get("config") or {})),
            "train_steps": (cfg.get("config") or {}).get("train_steps"),
        }
        row.update(run["metrics"])
        for name, metrics in run["secondary"].items():
            _flatten(name, metrics, row)
        for key, value in (prov.get("timings") or {}).items():
            row[f"time.{key}"] = value
        rows.append(row)
    id_cols = ["method", "dataset", "category", "run_id"]
    if not rows:
        return pd.DataFrame(columns=id_cols)
    return pd.DataFrame(rows).sort_values(id_cols, kind="stable").reset_index(drop=True)


def recipe_runs(frame):
    """The runs of each profile's own recipe (no ablation or variant: ``changed == ""``), one per method, dataset,
    category and profile: the longest schedule (``train_steps``; none = the profile's full schedule), then the
    latest run id order. Frames without the ``changed`` column are returned as they are."""
    if "changed" not in frame or frame.empty:
        return frame
    own = frame[frame["changed"].fillna("") == ""]
    steps = own["train_steps"].astype(float).fillna(float("inf")) if "train_steps" in own else 0
    own = own.assign(_steps=steps).sort_values("_steps", kind="stable")
    return own.drop_duplicates(["method", "dataset", "category", "profile"], keep="last").drop(columns="_steps")
