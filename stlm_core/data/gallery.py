"""Which images a dataset overview shows: per category, a few normal training images and defective test images
spread over defect types, each with its mask."""

from __future__ import annotations

from pathlib import Path


def gallery_rows(dataset: str, root: str | Path, categories: list[str], n_normal: int = 2,
                 n_defect: int = 3) -> list[tuple[str, list]]:
    """Rows for :func:`stlm_core.plotting.dataset_gallery`: per category ``(label, panels)``, the panels
    ``n_normal`` normal training images, then ``n_defect`` defective test images spread over defect types, each
    followed by its mask (``(role, sample)``, role ``normal`` / ``defect`` / ``mask``).

    Datasets whose anomalies have kinds (MVTec LOCO: logical vs structural) get one row per category and kind, so
    the two kinds are shown apart (row label ``category / kind``)."""
    from stlm_core.data import open_dataset

    rows: list[tuple[str, list]] = []
    for category in categories:
        train = open_dataset(dataset, root, category, "train")
        test = open_dataset(dataset, root, category, "test")
        normals = [("normal", train[i]) for i in range(min(n_normal, len(train)))]  # read once per category
        groups: dict[str | None, dict[str, list[int]]] = {}
        for i, record in enumerate(test.records):
            if record.label == 1:
                groups.setdefault(record.anomaly_kind, {}).setdefault(record.defect, []).append(i)
        for kind, by_defect in (sorted(groups.items(), key=lambda kv: str(kv[0])) or [(None, {})]):
            order = [idx for group in zip(*by_defect.values()) for idx in group] if by_defect else []
            panels = list(normals)
            for i in order[:n_defect]:
                sample = test[i]  # read once for the image and its mask
                panels += [("defect", sample), ("mask", sample)]
            rows.append((category if kind is None else f"{category} / {kind}", panels))
    return rows
