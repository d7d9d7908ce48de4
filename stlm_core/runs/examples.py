"""Example images of a finished run for figures: the test images, masks and maps the book shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stlm_core.runs.maps import load_maps


def example_rows(run_dir: str | Path, map_names: dict[str, str], per_defect: int = 1,
                  max_rows: int = 4) -> list[dict]:
    """Rows for :func:`stlm_core.plotting.anomaly_map_grid` from a run record: per defect type, the ``per_defect`` defective test
    images with the largest masks (at the evaluation size), at most ``max_rows`` in all. ``map_names`` maps display
    names to the run's map names (e.g. ``{"w/o FA": "wo_fa", "Ours (FA)": "fa"}``). Each row also carries
    ``index`` (the image's index in the run), ``arrays`` (the run's per-image extra arrays) and, when the run has
    per-image records, ``record``."""
    from stlm_core.data.imageio import read_rgb
    from stlm_core.data.transforms import resize_image

    run = load_maps(run_dir)
    masks = run.masks
    # Thin defects can vanish when masks are resized down to the evaluation size; show only visible ones.
    visible = np.asarray(run.labels) * (masks.reshape(len(masks), -1).max(1) > 0)
    defects = np.asarray(run.defects)
    chosen: list[int] = []
    for defect in sorted(set(defects[visible == 1].tolist())):
        idx = np.flatnonzero((defects == defect) & (visible == 1))
        chosen += idx[np.argsort(-masks[idx].reshape(len(idx), -1).sum(1))][:per_defect].tolist()
    rows = []
    for i in chosen[:max_rows]:
        path = Path(str(run.paths[i]))
        image = resize_image(read_rgb(path), masks.shape[-1])
        row = {"image": image, "mask": masks[i], "title": f"{defects[i]} ({path.name})", "index": int(i)}
        if run.records is not None:
            row["record"] = run.records[i]
        row["arrays"] = {name: value[i] for name, value in run.arrays.items()}
        for display, name in map_names.items():
            row[display] = np.asarray(run.maps[name][i], dtype=np.float32)
        rows.append(row)
    return rows
