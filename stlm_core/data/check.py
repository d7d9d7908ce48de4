"""Validate a dataset root and count its samples (``stlm data check``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tqdm import tqdm

from stlm_core.data.problems import DataProblem, format_problems
from stlm_core.data.registry import get_reader
from stlm_core.data.validate import check_record, no_defects_problem, scan_split
from stlm_core.errors import DatasetError


def check_dataset(dataset: str, root: str | Path, categories: list[str] | None = None, deep: bool = False,
                  progress: bool = True, raise_on_problems: bool = True) -> dict:
    """Validate ``root`` and return per-category counts and every problem found.

    Returns ``{"dataset": name, "root": str, "categories": {cat: {"train": N, "test": {defect: N}, "masks": N}},
    "problems": [{"category", "split", "path", "problem", "fix"}], "ok": bool}`` (plus ``"validation": N`` per
    category for MVTec LOCO). ``masks`` counts test images that have ground truth (a mask file or an ellipse).
    Problems include a category with no images in a split, a test split without defective images, a defect image
    without its mask, an unreadable file and a mask whose size differs from its image's. Every image and mask
    header is read; ``deep=True`` also decodes every file (finds truncated files).

    All categories are checked before anything is raised; with ``raise_on_problems`` (default) a
    :class:`DatasetError` then lists every problem, otherwise they are only in ``"problems"``. A missing root or
    an unknown category raises at once.
    """
    reader = get_reader(dataset)
    root = Path(root)
    found = reader.categories(root)
    chosen = categories or found
    report: dict = {"dataset": reader.name, "root": str(root), "categories": {}}
    problems: list[tuple[str, str, DataProblem]] = []
    for category in chosen:
        if category not in found:
            raise DatasetError(f"category {category!r} not found in {root}; available: {', '.join(found)}.")
        entry: dict = {}
        for split in reader.splits:
            records, scanned = scan_split(reader, root, category, split)
            problems += [(category, split, p) for p in scanned]
            for record in tqdm(records, desc=f"{category}/{split}", disable=not progress, leave=False):
                problems += [(category, split, p) for p in check_record(record, decode=deep).problems]
            if split == "test":
                entry["test"] = dict(sorted(Counter(r.defect for r in records).items()))
                entry["masks"] = sum(1 for r in records if r.mask_paths or r.ellipse_masks)
                if records and not any(r.label for r in records):
                    problems.append((category, split, no_defects_problem(records, root / category)))
            else:
                entry[split] = len(records)
        report["categories"][category] = {k: entry[k] for k in (*[s for s in reader.splits if s != "test"], "test", "masks")}
    report["problems"] = [{"category": c, "split": s, **p.as_dict()} for c, s, p in problems]
    report["ok"] = not problems
    if problems and raise_on_problems:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        raise DatasetError(f"dataset {reader.name} at {root} has {count}:\n"
                           f"{format_problems(p for _, _, p in problems)}")
    return report


def format_report(report: dict) -> str:
    """A human-readable table of :func:`check_dataset`'s result, followed by its problems (if any)."""
    problems = report.get("problems", [])
    status = "OK" if not problems else f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = [f"dataset {report['dataset']} at {report['root']}: {len(report['categories'])} categories, {status}"]
    for category, counts in report["categories"].items():
        extra = "".join(f" {k} {v}" for k, v in counts.items() if k not in ("train", "test", "masks"))
        tests = ", ".join(f"{d} {n}" for d, n in counts["test"].items())
        lines.append(f"  {category}: train {counts['train']}{extra} | test {sum(counts['test'].values())} ({tests}) "
                     f"| masks {counts['masks']}")
    if problems:
        lines.append("problems:")
        lines += [f"  {p['category']}/{p['split']}: {p['path']}: {p['problem']}; {p['fix']}" for p in problems]
    return "\n".join(lines)


def counts_table(report: dict):
    """A ``check_dataset`` report as a ``pandas.DataFrame``: one row per category, columns ``train (normal)``,
    ``test: <defect>`` per defect type, ``test total`` and ``masks``."""
    import pandas as pd

    rows = []
    for category, counts in report["categories"].items():
        row = {"category": category, "train (normal)": counts["train"]}
        row.update({f"test: {defect}": n for defect, n in counts["test"].items()})
        row["test total"] = sum(counts["test"].values())
        row["masks"] = counts["masks"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("category").fillna(0).astype(int)
