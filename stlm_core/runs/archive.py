"""Recorded runs: the records of finished runs packed into one JSON file, to be unpacked into a runs folder.

A training run of the default book takes about a minute on a fast 2-core machine and three on a slow one, and the
default build needs a dozen of them. The package therefore ships the records of those runs, measured by a full build
(:func:`pack_runs`), and the default build unpacks them (:func:`unpack_runs`) so that every chapter reads them as it
reads runs it trained itself, while one run is held back and trained live as a check of the recording
(:func:`recording_check`).

What a recorded run keeps: ``config.json``, ``metrics.json`` (with its provenance), ``losses.jsonl``, the learning
curve (``curve.json``) and ``finished.json``. It has no weights and no maps (tens of megabytes per run), so figures of
maps and exports need a run trained here; ``recorded.json`` in the run folder says where and when it was measured,
and :func:`stlm_core.runs.load_runs` shows it in the ``recorded`` column. A run is unpacked only when the local data
of its category has the same content fingerprint as the recorded one, and never over a run folder that exists.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

from stlm_core.errors import StlmError
from stlm_core.fileio import atomic_write_json, atomic_write_text, read_json
from stlm_core.runs.layout import (CONFIG_FILE, DATA_FILE, FINISHED_FILE, LOSSES_FILE, METRICS_FILE, PROVENANCE_KEY,
                                   RECORDED_FILE, is_finished, recorded_provenance)

ARCHIVE_FORMAT = 1
CHECK_FILE = "recording_check.json"  # in the runs folder: the recorded metrics of the runs held back
PACKED_FILES = (CONFIG_FILE, METRICS_FILE, LOSSES_FILE, "curve.json", FINISHED_FILE)
RECORDED_RUNS = Path(__file__).resolve().parent / "recorded_runs.json"  # shipped with the package


def data_fingerprint(root: str | os.PathLike, category: str) -> str:
    """sha256 over the relative paths and bytes of every file of ``root/category`` (the data a run read)."""
    folder = Path(root) / category
    if not folder.is_dir():
        raise StlmError(f"{folder} is not a folder: no data for category {category!r} under {root}.")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def pack_runs(run_dirs: Iterable[str | os.PathLike], runs_dir: str | os.PathLike, out: str | os.PathLike, *,
              note: str, check_runs: Iterable[str | os.PathLike] = (), gflops: float | None = None) -> Path:
    """Write the records of the finished ``run_dirs`` (all under ``runs_dir``) to the JSON file ``out``.

    ``check_runs`` are the runs a default build holds back and trains again to check the recording; ``note`` says
    how the runs were made (the command), ``gflops`` the machine's matmul figure (``stlm bench machine``)."""
    from stlm_core.runs.provenance import git_commit

    runs_dir = Path(runs_dir).resolve()
    packed = []
    for run_dir in sorted({Path(d).resolve() for d in run_dirs}):
        if not is_finished(run_dir):
            raise StlmError(f"{run_dir} is not a finished run (no {FINISHED_FILE}); finish or delete it first.")
        data = read_json(run_dir / DATA_FILE)
        files = {name: (run_dir / name).read_text() for name in PACKED_FILES if (run_dir / name).is_file()}
        packed.append({"path": run_dir.relative_to(runs_dir).as_posix(),
                       "data": {"category": data["category"],
                                "fingerprint": data_fingerprint(data["root"], data["category"])},
                       "files": files})
    checks = sorted(Path(d).resolve().relative_to(runs_dir).as_posix() for d in check_runs)
    missing = set(checks) - {run["path"] for run in packed}
    if missing:
        raise StlmError(f"check runs {sorted(missing)} are not among the packed runs.")
    provenance = {"recorded_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "git_commit": git_commit(), "gflops": gflops, "note": note}
    out = Path(out)
    atomic_write_json(out, {"format": ARCHIVE_FORMAT, "provenance": provenance, "check_runs": checks,
                            "runs": packed})
    return out


def read_archive(path: str | os.PathLike = RECORDED_RUNS) -> dict:
    archive = read_json(path)
    if not isinstance(archive, dict) or archive.get("format") != ARCHIVE_FORMAT:
        raise StlmError(f"{path} is not a recorded-runs file of format {ARCHIVE_FORMAT}; rewrite it with pack_runs.")
    return archive


def unpack_runs(runs_dir: str | os.PathLike, data_roots: Mapping[str, str | os.PathLike],
                archive_path: str | os.PathLike = RECORDED_RUNS, hold_back: bool = True) -> dict[str, list[str]]:
    """Unpack the recorded runs into ``runs_dir`` for the datasets in ``data_roots`` (name -> local root).

    A run is skipped when its folder exists (a run made here wins), when its dataset is not given, or when the
    local data of its category differs from the recorded data (fingerprint). With ``hold_back``, the archive's
    check runs are not unpacked; their recorded metrics go to ``runs_dir/recording_check.json`` for
    :func:`recording_check`. Returns ``{"unpacked", "kept", "other_data", "held_back"}`` lists of run paths."""
    archive = read_archive(archive_path)
    runs_dir = Path(runs_dir)
    outcome: dict[str, list[str]] = {"unpacked": [], "kept": [], "other_data": [], "held_back": []}
    fingerprints: dict[tuple[str, str], str] = {}
    checks = []
    for run in archive["runs"]:
        dataset = run["path"].split("/")[1]
        if dataset not in data_roots:
            continue
        root, category = Path(data_roots[dataset]), run["data"]["category"]
        key = (dataset, category)
        if key not in fingerprints:
            fingerprints[key] = data_fingerprint(root, category) if (root / category).is_dir() else ""
        target = runs_dir / run["path"]
        if fingerprints[key] != run["data"]["fingerprint"]:
            outcome["other_data"].append(run["path"])
        elif hold_back and run["path"] in archive["check_runs"]:
            outcome["held_back"].append(run["path"])
            checks.append({"path": run["path"], "metrics": _metrics_of(run)})
        elif target.exists():
            outcome["kept"].append(run["path"])
        else:
            _write_run(target, run, root, archive["provenance"])
            outcome["unpacked"].append(run["path"])
    if checks:
        atomic_write_json(runs_dir / CHECK_FILE, {"provenance": archive["provenance"], "runs": checks})
    return outcome


def _metrics_of(run: dict) -> dict:
    record = json.loads(run["files"][METRICS_FILE])
    record.pop(PROVENANCE_KEY, None)
    return record


def _write_run(target: Path, run: dict, root: Path, provenance: dict) -> None:
    """Write one recorded run; ``finished.json`` last, so an interrupted unpack leaves an unfinished folder."""
    target.mkdir(parents=True)
    for name, text in run["files"].items():
        if name != FINISHED_FILE:
            atomic_write_text(target / name, text)
    atomic_write_json(target / DATA_FILE, {"dataset": run["path"].split("/")[1], "root": str(root),
                                           "category": run["data"]["category"], "limit": None,
                                           "textures_root": None})
    atomic_write_json(target / RECORDED_FILE, provenance)
    atomic_write_text(target / FINISHED_FILE, run["files"][FINISHED_FILE])


def recording_check(runs_dir: str | os.PathLike, metrics: Iterable[str] = ("pixel_auroc", "pixel_aupro",
                                                                          "image_auroc")):
    """The held-back runs trained here beside their recorded metrics: a ``pandas.DataFrame`` with ``run``,
    ``metric``, ``recorded``, ``here`` and ``difference`` (here - recorded; values in [0, 1]), one row per metric of
    the primary map and of every secondary map. Empty when nothing was held back or the runs are not finished."""
    import pandas as pd

    from stlm_core.runs.table import read_run

    path = Path(runs_dir) / CHECK_FILE
    rows = []
    for check in (read_json(path)["runs"] if path.is_file() else []):
        run_dir = Path(runs_dir) / check["path"]
        if not is_finished(run_dir) or recorded_provenance(run_dir) is not None:
            continue
        here = read_run(run_dir)
        recorded = check["metrics"]
        maps = [(recorded.get("map"), recorded, {**here["metrics"]})]
        maps += [(name, values, here["secondary"].get(name, {}))
                 for name, values in (recorded.get("secondary") or {}).items()]
        for name, old, new in maps:
            for metric in metrics:
                if isinstance(old.get(metric), (int, float)) and isinstance(new.get(metric), (int, float)):
                    rows.append({"run": check["path"], "map": name, "metric": metric, "recorded": old[metric],
                                 "here": new[metric], "difference": new[metric] - old[metric]})
    return pd.DataFrame(rows, columns=["run", "map", "metric", "recorded", "here", "difference"])
