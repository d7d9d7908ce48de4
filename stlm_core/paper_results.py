"""The paper-results registry (``paper_results.yaml``) and paper-vs-reproduced comparison tables.

The registry holds one cell per entry: ``paper, table, dataset, category, row, column, value, unit, kind,
source, note``. ``value`` is in ``unit`` (``"%"`` for metrics, as the papers print them) or ``None`` when the
cell is unknown; unknown values render as ``"n/a"`` and are never filled with guesses. Reproduced metrics
(``metrics.json``, :func:`stlm_core.runs.load_runs`) are fractions in [0, 1]; :func:`compare_with_paper`
converts them to the registry's unit before taking ``delta = reproduced - paper``.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Iterable

from stlm_core.errors import StlmError

FIELDS: tuple[str, ...] = ("paper", "table", "dataset", "category", "row", "column", "value", "unit", "kind",
                           "source", "note")
KEY: tuple[str, ...] = ("paper", "table", "dataset", "category", "row", "column")
KINDS: frozenset[str] = frozenset({"paper", "paper_claim", "unknown", "baseline", "baseline_unverified",
                                   "replot_approx", "third_party"})
NA = "n/a"


def registry_path() -> Path:
    """Path of the packaged ``paper_results.yaml``."""
    return Path(str(resources.files("stlm_core") / "paper_results.yaml"))


def _validate(entries: list, path: Path) -> list[dict]:
    if not isinstance(entries, list):
        raise StlmError(f"{path} must hold a YAML list of cells (one mapping per cell).")
    seen: set[tuple] = set()
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}, entry {i + 1}"
        if not isinstance(entry, dict):
            raise StlmError(f"{where}: expected a mapping with fields {', '.join(FIELDS)}.")
        unknown = set(entry) - set(FIELDS)
        missing = [f for f in FIELDS if f != "note" and f not in entry]
        if unknown or missing:
            raise StlmError(f"{where}: unknown fields {sorted(unknown)} / missing fields {missing}.")
        value = entry["value"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise StlmError(f"{where}: value must be a number or null, got {value!r}.")
        if entry["kind"] not in KINDS:
            raise StlmError(f"{where}: kind {entry['kind']!r} is not one of {sorted(KINDS)}.")
        if entry["kind"] == "unknown" and value is not None:
            raise StlmError(f"{where}: kind 'unknown' must have value null.")
        if value is None and entry["kind"] != "unknown":
            raise StlmError(f"{where}: a null value must have kind 'unknown'.")
        if not str(entry["source"] or "").strip():
            raise StlmError(f"{where}: every cell needs a source.")
        key = tuple(entry[k] for k in KEY)
        if key in seen:
            raise StlmError(f"{where}: duplicate cell {key}.")
        seen.add(key)
        row = {f: entry.get(f) for f in FIELDS}
        row["note"] = row["note"] or ""
        row["value"] = None if value is None else float(value)
        out.append(row)
    return out


def load_paper_results(path: str | Path | None = None, **filters):
    """The registry as a ``pandas.DataFrame`` (columns :data:`FIELDS`, ``value`` float or NaN for unknown).

    ``filters`` select rows by equality, e.g. ``load_paper_results(paper="stlm", table="STLM-T1")``; a list
    value selects any of its items.
    """
    import pandas as pd
    import yaml

    path = Path(path) if path is not None else registry_path()
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StlmError(f"paper-results registry {path} not found; reinstall stlm_core.") from None
    except yaml.YAMLError as exc:
        raise StlmError(f"{path} is not valid YAML: {exc}") from None
    frame = pd.DataFrame(_validate(entries, path), columns=list(FIELDS))
    frame["value"] = frame["value"].astype(float)
    for name, wanted in filters.items():
        if name not in FIELDS:
            raise StlmError(f"unknown registry field {name!r}; use one of {', '.join(FIELDS)}.")
        wanted = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        frame = frame[frame[name].isin(wanted)]
    return frame.reset_index(drop=True)


def format_value(value, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or ``"n/a"`` for None/NaN (unknown cells)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    try:
        if math.isnan(float(value)):
            return NA
    except (TypeError, ValueError):
        return str(value)
    return f"{float(value):.{digits}f}"


def _scale(unit: str, column: str, fraction_columns: Iterable[str]) -> float:
    # fractions are shown in percent, as the papers print them (cells the registry lacks get "%" too)
    return 100.0 if unit in ("%", "") and column in set(fraction_columns) else 1.0


def _table_cells(registry, paper: str, table: str, **extra):
    """The registry cells of one paper's table (the packaged registry when ``registry`` is None)."""
    if registry is None:
        return load_paper_results(paper=paper, table=table, **extra)
    cells = registry[(registry["paper"] == paper) & (registry["table"] == table)]
    for name, value in extra.items():
        cells = cells[cells[name] == value]
    return cells


def compare_with_paper(reproduced, *, paper: str, table: str, row: str, dataset: str | None = None,
                       columns: Iterable[str] | None = None, fraction_columns: Iterable[str] | None = None,
                       add_mean: bool = True, registry=None):
    """Paper vs reproduced values with the delta, one row per (dataset, category, column).

    Args:
        reproduced: a ``pandas.DataFrame`` with columns ``dataset``, ``category`` and metric columns (e.g. the
            output of :func:`stlm_core.runs.load_runs`, filtered to one method/config: at most one row per
            dataset and category).
        paper, table, row: which registry cells to compare with (e.g. ``"stlm", "STLM-T1", "STLM"``).
        dataset: restrict to one dataset.
        columns: metric columns to compare (default: all registry columns present in ``reproduced``).
        fraction_columns: reproduced columns holding fractions in [0, 1], scaled by 100 when the registry
            unit is ``"%"`` (default: the ``metrics.json`` keys).
        add_mean: compute the reproduced ``"mean"`` category (mean over the reproduced categories of that
            dataset) when the registry has a ``"mean"`` cell; ``n_categories`` records how many were averaged.
        registry: a frame from :func:`load_paper_results` (default: the packaged registry).

    Returns:
        ``pandas.DataFrame`` with columns ``paper, table, dataset, category, row, column, unit, paper_value,
        reproduced, delta, n_categories, kind, source``. Unknown values are NaN (render with
        :func:`format_value` / :func:`render_comparison`: ``"n/a"``). Registry cells without a reproduced
        value are kept (reproduced NaN), as are reproduced categories the registry does not list (paper NaN).
    """
    import pandas as pd

    from stlm_core.metrics import METRIC_KEYS

    fraction_columns = tuple(METRIC_KEYS if fraction_columns is None else fraction_columns)
    reg = _table_cells(registry, paper, table, row=row)
    if dataset is not None:
        reg = reg[reg["dataset"] == dataset]
    rep = reproduced.copy()
    for col in ("dataset", "category"):
        if col not in rep.columns:
            raise StlmError(f"the reproduced table needs a {col!r} column (as from stlm_core.runs.load_runs).")
    if dataset is not None:
        rep = rep[rep["dataset"] == dataset]
    if rep.duplicated(["dataset", "category"]).any():
        dup = rep[rep.duplicated(["dataset", "category"], keep=False)][["dataset", "category"]].drop_duplicates()
        raise StlmError("the reproduced table has several rows for "
                        f"{dup.to_records(index=False).tolist()}; filter it to one method and config first.")
    cols = [c for c in (columns if columns is not None else reg["column"].unique()) if c in rep.columns]
    long = rep.melt(id_vars=["dataset", "category"], value_vars=cols, var_name="column", value_name="reproduced")
    long["reproduced"] = pd.to_numeric(long["reproduced"], errors="coerce")
    long["n_categories"] = 1
    if add_mean:
        means = []
        for (ds, col), group in long[long["category"] != "mean"].groupby(["dataset", "column"]):
            if ((reg["dataset"] == ds) & (reg["column"] == col) & (reg["category"] == "mean")).any():
                values = group["reproduced"].dropna()
                means.append({"dataset": ds, "category": "mean", "column": col,
                              "reproduced": values.mean() if len(values) else float("nan"),
                              "n_categories": len(values)})
        if means:
            long = pd.concat([long[long["category"] != "mean"], pd.DataFrame(means)], ignore_index=True)
    reg = reg.rename(columns={"value": "paper_value"})
    merged = reg.merge(long, on=["dataset", "category", "column"], how="outer")
    merged["paper"] = paper
    merged["table"] = table
    merged["row"] = row
    units = merged["unit"].fillna("")
    scale = [_scale(u, c, fraction_columns) for u, c in zip(units, merged["column"])]
    merged["reproduced"] = merged["reproduced"].astype(float) * scale
    merged["unit"] = [("%" if s == 100.0 else u) for u, s in zip(units, scale)]
    merged["paper_value"] = merged["paper_value"].astype(float)
    merged["delta"] = merged["reproduced"] - merged["paper_value"]
    out = merged[["paper", "table", "dataset", "category", "row", "column", "unit", "paper_value", "reproduced",
                  "delta", "n_categories", "kind", "source"]]
    order = {"mean": 1}
    out = out.assign(_o=out["category"].map(lambda c: order.get(c, 0)))
    return out.sort_values(["dataset", "column", "_o", "category"], kind="stable").drop(columns="_o").reset_index(
        drop=True)


def render_comparison(comparison, digits: int = 2):
    """A display table: one row per (dataset, category), ``paper | reproduced | delta`` per metric, as strings
    with unknown values shown as ``"n/a"``. A dataset's ``mean`` row says how many of the table's categories the
    reproduced mean covers when it is not all of them (``"mean (reproduced: 2 of 15 categories)"``): a partial mean
    is not the paper's mean."""
    import pandas as pd

    if comparison.empty:
        return pd.DataFrame()
    cells = comparison.assign(
        paper=comparison["paper_value"].map(lambda v: format_value(v, digits)),
        reproduced_s=comparison["reproduced"].map(lambda v: format_value(v, digits)),
        delta_s=comparison["delta"].map(lambda v: NA if format_value(v) == NA else f"{v:+.{digits}f}"),
    )
    wide = cells.pivot_table(index=["dataset", "category"], columns="column",
                             values=["paper", "reproduced_s", "delta_s"], aggfunc="first", sort=False)
    wide = wide.rename(columns={"reproduced_s": "reproduced", "delta_s": "delta"}, level=0)
    wide = wide.swaplevel(0, 1, axis=1)
    metrics = list(dict.fromkeys(comparison["column"]))
    wide = wide.reindex(columns=pd.MultiIndex.from_product([metrics, ["paper", "reproduced", "delta"]]))
    rows = sorted(wide.index, key=lambda key: (key[0], key[1] == "mean", key[1]))  # "mean" last per dataset
    wide = wide.reindex(rows).fillna(NA)
    labels = {}
    for dataset, group in comparison.groupby("dataset"):
        n_all = group.loc[group["category"] != "mean", "category"].nunique()
        covered = group.loc[group["category"] == "mean", "n_categories"].max()
        if pd.notna(covered) and 0 < n_all != int(covered):
            labels[(dataset, "mean")] = (dataset, f"mean (reproduced: {int(covered)} of {n_all} categories)")
    return wide.set_axis(
        pd.MultiIndex.from_tuples([labels.get(key, key) for key in wide.index], names=wide.index.names))


# Which table of each paper reports which dataset (the papers' per-dataset results tables).
PAPER_TABLES: dict[str, dict[str, str]] = {
    "stlm": {"mvtec": "STLM-T1", "visa": "STLM-T3", "dagm": "STLM-T4"},
    "clipsam": {"mvtec": "CS-T1", "visa": "CS-T1"},
}


def paper_table_for(paper: str, dataset: str) -> str | None:
    """The id of ``paper``'s results table for ``dataset`` (``None``: the paper reports nothing on it)."""
    return PAPER_TABLES.get(paper, {}).get(dataset)


GAIN_SUFFIX = "_gain_over_sota"


def best_baseline(registry, *, table: str, dataset: str, column: str, category: str = "mean"):
    """The registry row of the best *known* baseline value (kinds ``baseline`` / ``baseline_unverified``) of one
    table, dataset, category and metric (the "previous state of the art" a claimed gain is measured from), or
    ``None`` when no baseline value is known."""
    pool = registry[(registry["table"] == table) & (registry["dataset"] == dataset) & (registry["column"] == column)
                    & (registry["category"] == category)
                    & registry["kind"].isin(["baseline", "baseline_unverified"]) & registry["value"].notna()]
    return None if pool.empty else pool.loc[pool["value"].idxmax()]


def claimed_gains(reproduced=None, *, paper: str = "clipsam", table: str = "CS-T1", registry=None):
    """The paper's claimed gains over the previous state of the art beside what a run gives, one row per claim.

    A claim is a registry cell whose column ends in ``_gain_over_sota`` (e.g. CLIP-SAM's VisA F1-max +10.3). The
    previous SOTA is the best *known* baseline cell of the same table, dataset and metric (the registry's baseline
    rows, taken from the baselines' own papers); ``implied`` = SOTA + claimed gain is what the paper's own cell
    should then be. ``reproduced`` (optional): a frame with ``dataset`` and metric columns in [0, 1] (as from
    :func:`stlm_core.runs.load_runs`); its mean over the rows of the claim's dataset, in points, gives
    ``ours`` and ``our_gain`` = ours - SOTA (NaN when no run of that dataset is given).

    Returns a ``pandas.DataFrame``: ``dataset, metric, claimed_gain, sota_row, sota, implied, ours,
    n_categories, our_gain, source``.
    """
    import pandas as pd

    reg = _table_cells(registry, paper, table)
    claims = reg[reg["column"].str.endswith(GAIN_SUFFIX) & reg["value"].notna()]
    rows = []
    for claim in claims.itertuples():
        metric = claim.column[: -len(GAIN_SUFFIX)]
        best = best_baseline(reg, table=table, dataset=claim.dataset, column=metric, category=claim.category)
        sota = float(best["value"]) if best is not None else float("nan")
        ours, n = float("nan"), 0
        if reproduced is not None and metric in getattr(reproduced, "columns", ()):
            values = pd.to_numeric(reproduced.loc[reproduced["dataset"] == claim.dataset, metric],
                                   errors="coerce").dropna()
            n = len(values)
            ours = float(values.mean() * 100) if n else float("nan")
        rows.append({"dataset": claim.dataset, "metric": metric, "claimed_gain": float(claim.value),
                     "sota_row": best["row"] if best is not None else NA, "sota": sota,
                     "implied": sota + float(claim.value), "ours": ours, "n_categories": n,
                     "our_gain": ours - sota, "source": claim.source})
    return pd.DataFrame(rows, columns=["dataset", "metric", "claimed_gain", "sota_row", "sota", "implied", "ours",
                                       "n_categories", "our_gain", "source"])


def rows_beside_ours(reproduced, *, paper: str, table: str, dataset: str, ours: str = "ours (these runs)",
                     registry=None):
    """Every row of a paper's table for one dataset's mean (the paper's own row and the baseline rows, values in
    %, unknown = NaN; the paper's own row "X (ours)" shown as "X (paper)") with the mean of ``reproduced``
    (metric columns in [0, 1], e.g. :func:`stlm_core.runs.load_runs` filtered to ``dataset``) appended as the row
    ``ours``. Claimed gains (``*_gain_over_sota``) are
    left out (see :func:`claimed_gains`). Returns a ``pandas.DataFrame`` indexed by row, one column per metric,
    plus ``kind`` (how the registry knows the row's values) and ``categories`` (runs averaged for ours)."""
    import pandas as pd

    reg = _table_cells(registry, paper, table)
    reg = reg[(reg["dataset"] == dataset) & (reg["category"] == "mean") & ~reg["column"].str.endswith(GAIN_SUFFIX)]
    if reg.empty:
        return pd.DataFrame()
    columns = list(dict.fromkeys(reg["column"]))
    wide = reg.pivot_table(index="row", columns="column", values="value", aggfunc="first", dropna=False,
                           sort=False).reindex(columns=columns)
    kinds = reg.groupby("row", sort=False)["kind"].agg(lambda k: ", ".join(sorted(set(k))))
    wide["kind"] = kinds.reindex(wide.index)
    wide["categories"] = pd.NA
    wide.index = [row.replace("(ours)", "(paper)") for row in wide.index]  # the paper's own row, not ours
    mine = reproduced[reproduced["dataset"] == dataset] if "dataset" in reproduced else reproduced
    values = {c: float(pd.to_numeric(mine[c], errors="coerce").mean() * 100) if c in mine else float("nan")
              for c in columns}
    wide.loc[ours] = {**values, "kind": "measured here", "categories": len(mine)}
    return wide
