"""The per-image output of a run (:class:`RunMaps`), its file ``maps.npz`` and the one rule that scores it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stlm_core.errors import StlmError
from stlm_core.fileio import atomic_savez, atomic_write_json, read_json
from stlm_core.runs.layout import EXTRAS_FILE, MAPS_FILE


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
