"""The files of a run directory: the one layout every method writes and every notebook reads.

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
    recorded.json   only in a run unpacked from a recording (see stlm_core.runs.archive): where and when it was
                    measured; such a run has no checkpoint and no maps

Every file is written atomically (:mod:`stlm_core.fileio`). The same rule scores every map: each map of a
:class:`RunMaps` gets the full metrics of :func:`stlm_core.metrics.compute_metrics` against the same masks and labels,
with its own image scores.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from stlm_core.errors import StlmError
from stlm_core.fileio import atomic_write_json, read_json, to_jsonable

CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.json"
MAPS_FILE = "maps.npz"
EXTRAS_FILE = "extras.json"
LOSSES_FILE = "losses.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
FINISHED_FILE = "finished.json"
RECORDED_FILE = "recorded.json"
LOCK_FILE = "run.lock"
PROVENANCE_KEY = "provenance"
SECONDARY_KEY = "secondary"


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


# ------------------------------------------------------------------------------------------ metrics, finished


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


def recorded_provenance(run_dir: str | os.PathLike) -> dict | None:
    """The recording's provenance of a run unpacked from a recording, or ``None`` for a run made here."""
    path = Path(run_dir) / RECORDED_FILE
    return read_json(path) if path.is_file() else None
