"""The reproduction scorecard: every claim of the two papers next to what this project shows for it.

One row per claim: the registry cells the papers state (kind ``paper`` / ``paper_claim``), the dataset means of
the papers' own results rows that are unknown to this project, the STLM Fig. 1 speed claim and the parameter
claims. ``ours`` comes from run records (:func:`stlm_core.runs.load_runs`), from the analytic parameter count of
the paper architecture, or from latencies measured in this build (``measured``); no number is typed by hand.

A run on synthetic data or with random weights is shown for what it is and never compared with a paper number.
Only runs at the ``paper`` profile, on real data, with official weights (every identity ``<name>@<sha256>``) are
compared; a mean counts as reproduced when it covers every category of the dataset and is within
:data:`TOLERANCE_POINTS` of the paper.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from stlm_core.paper_results import GAIN_SUFFIX, best_baseline
from stlm_core.runs import recipe_runs

COLUMNS: tuple[str, ...] = ("paper", "item", "claim", "paper value", "ours", "produced by", "status")
TOLERANCE_POINTS = 1.0      # |ours - paper| in percentage points that still counts as reproduced
SPEED_TOLERANCE = 0.75      # a measured speed ratio of at least this fraction of the claimed one reproduces it
TIME_TOLERANCE = 1.25       # a measured time of at most this multiple of the claimed one reproduces it

PAPERS = {"stlm": "STLM", "clipsam": "CLIP-SAM"}
OWN_ROWS = {"stlm": "STLM", "clipsam": "CLIP-SAM cascade (ours)"}
METHODS = {"stlm": "stlm", "clipsam": "clipsam"}
PRIMARY_MAPS = {"stlm": "fa", "clipsam": "cascade"}  # the map each paper reports
DATASETS = {"mvtec": "MVTec AD", "visa": "VisA", "dagm": "DAGM 2007", "loco": "MVTec LOCO AD"}
LABELS = {
    "pixel_auroc": "pixel AUROC", "pixel_aupro": "PRO (AUPRO up to FPR 0.3)", "image_auroc": "image AUROC",
    "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max", "image_ap": "image AP", "image_f1_max": "image F1-max",
    "params_m": "parameters for inference", "params_m_approx": "parameters (\"about\")",
    "latency_ms": "inference time per image (GPU, batch and precision not stated)",
    "cps_extra_ms": "extra time of the cascaded prompt stage (device not stated)",
}

REPRODUCED = "reproduced on this device"
STRUCTURAL = "structurally verified only"
NEEDS_OFFICIAL = "needs the official weights (and a GPU)"
NEEDS_GPU = "needs a GPU (timed on this device's CPU)"
SYNTHETIC_ONLY = "ran only on synthetic data"
RANDOM_ONLY = "ran only with random weights"
UNKNOWN = "unknown in the paper"
NOT_MEASURED = "not measured in this build"
NOT_CHECKED = "not checked (no implementation of this method here)"
DIFFERS = "differs by"
STATUSES: tuple[str, ...] = (REPRODUCED, DIFFERS, STRUCTURAL, NEEDS_OFFICIAL, NEEDS_GPU, SYNTHETIC_ONLY, RANDOM_ONLY,
                             UNKNOWN, NOT_MEASURED, NOT_CHECKED)
PAPER_SPEED_RATIO = "patchcore_wrn50_224 / stlm_paper_1024"


# ---------------------------------------------------------------------------------------------- formatting


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"


def format_paper_value(value: float | None, unit: str) -> str:
    """``value`` with its unit (``"98.26 %"``, ``"+10.3 points"``), or ``"n/a"`` when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "points":
        return f"+{_number(value)} points"
    return f"{_number(value)} {unit}".strip()


def status_kind(status: str) -> str:
    """The canonical status a row's status text starts with (e.g. ``"differs by"``)."""
    return next((s for s in STATUSES if status.startswith(s)), status)


# ---------------------------------------------------------------------------------------------- run selection


def _identities(weights: Any) -> list[str]:
    if isinstance(weights, str):
        try:
            weights = json.loads(weights)
        except ValueError:
            return [weights]
    if isinstance(weights, Mapping):
        return [str(v) for v in weights.values()]
    return [] if weights is None else [str(weights)]


def official_weights(weights: Any) -> bool:
    """True when every weights identity names a checksummed file (``<name>@<sha256>``), none ``random-init``."""
    ids = _identities(weights)
    return bool(ids) and all("@" in i and i != "random-init" for i in ids)


def _flag(frame, column: str):
    """A boolean column with missing values (and a missing column) read as False."""
    import pandas as pd

    if column not in frame:
        return pd.Series(False, index=frame.index)
    return frame[column].map(lambda v: bool(v) if v is not None and v == v else False).astype(bool)


def _synthetic(frame):
    return _flag(frame, "synthetic") | (frame["dataset"] == "synthetic")


def comparable_mask(frame):
    """Runs whose numbers may be compared with the paper: paper profile, real data, official weights."""
    official = frame["weights"].map(official_weights).astype(bool) if "weights" in frame else False
    return (frame["profile"] == "paper") & ~_synthetic(frame) & ~_flag(frame, "random_init") & official


def _preferred_group(frame):
    """The runs of one profile: paper before cpu before smoke, then the one covering most categories."""
    order = {"paper": 0, "cpu": 1, "smoke": 2}
    best = min(frame["profile"].dropna().unique(), key=lambda p: (order.get(p, 3), -frame.loc[
        frame["profile"] == p, "category"].nunique()), default=None)
    return frame if best is None else frame[frame["profile"] == best]


def select_runs(runs, method: str, dataset: str | None, column: str, *, synthetic_fallback: bool = True):
    """``(runs used, kind)`` for one claim; kind is comparable | other_profile | random | synthetic | none.
    Only the profiles' own recipes count (:func:`recipe_runs`), never ablation variants."""
    if runs is None or runs.empty or column not in runs or "method" not in runs:
        return runs.iloc[0:0] if runs is not None else None, "none"
    mine = recipe_runs(runs[(runs["method"] == method) & runs[column].notna()])
    if method in PRIMARY_MAPS and "map" in mine:
        mine = mine[mine["map"] == PRIMARY_MAPS[method]]
    synthetic = _synthetic(mine)
    real = mine[~synthetic & ((mine["dataset"] == dataset) if dataset else True)]
    if comparable_mask(real).any():
        return real[comparable_mask(real)], "comparable"
    pretrained = real[~_flag(real, "random_init")]
    if len(pretrained):
        return _preferred_group(pretrained), "other_profile"
    if len(real):
        return _preferred_group(real), "random"
    if synthetic_fallback and synthetic.any():
        return _preferred_group(mine[synthetic]), "synthetic"
    return mine.iloc[0:0], "none"


def category_mean(frame, column: str) -> tuple[float, int]:
    """Mean over categories (runs of one category averaged first) in %, and the number of categories."""
    per_category = frame.groupby("category")[column].mean()
    return float(per_category.mean()) * 100, int(len(per_category))


def _weights_word(row) -> str:
    if bool(row.get("random_init")):
        return "random-init"
    return "official" if official_weights(row.get("weights")) else "pretrained (offline)"


def produced_by(frame, method: str) -> str:
    """Plain words on the runs behind a number: how many, profile, data, weights, categories."""
    if frame is None or frame.empty:
        return f"no finished {method} run"
    datasets = sorted({("synthetic data" if s else d) for d, s in zip(frame["dataset"], _synthetic(frame))})
    weights = sorted({_weights_word(r) for _, r in frame.iterrows()})
    weights = ["random weights" if w == "random-init" else w for w in weights]
    profiles = ", ".join(sorted(frame["profile"].dropna().unique()))
    return (f"{len(frame)} {method} run(s), profile {profiles}, {', '.join(datasets)}, weights "
            f"{' + '.join(weights)}, {frame['category'].nunique()} categories")


# ---------------------------------------------------------------------------------------------- claim rows


def claim_rows(registry):
    """The registry cells that are claims: stated by a paper, or a dataset mean of a paper's own row (unknown)."""
    own = registry.apply(lambda r: OWN_ROWS.get(r["paper"]) == r["row"], axis=1)
    stated = registry["kind"].isin(["paper", "paper_claim"])
    unknown_mean = (registry["kind"] == "unknown") & (registry["category"] == "mean") & own
    return registry[stated | unknown_mean]


def expected_categories(registry, dataset: str) -> int | None:
    """How many categories the papers' per-category tables list for ``dataset`` (None: none listed)."""
    cats = registry[(registry["dataset"] == dataset) & (registry["category"] != "mean")]["category"].unique()
    return len(cats) or None


def _claim_text(cell) -> str:
    column, who = cell["column"], cell["row"].replace(" (ours)", "")
    dataset = DATASETS.get(cell["dataset"], cell["dataset"])
    if column.endswith(GAIN_SUFFIX):
        label = LABELS.get(column[: -len(GAIN_SUFFIX)], column)
        return f"{who}: {label} on {dataset} above the previous state of the art"
    if column in ("pixel_auroc", "pixel_aupro", "image_auroc", "pixel_ap", "pixel_f1_max"):
        return f"{who}: mean {LABELS[column]} on {dataset}"
    return f"{who}: {LABELS.get(column, column)}"


def _row(cell, ours: str, by: str, status: str) -> dict:
    return {"paper": PAPERS.get(cell["paper"], cell["paper"]), "item": cell["table"], "claim": _claim_text(cell),
            "paper value": format_paper_value(cell["value"], cell["unit"]), "ours": ours, "produced by": by,
            "status": status}


def _status_of(kind: str) -> str:
    return {"other_profile": NEEDS_OFFICIAL, "random": RANDOM_ONLY, "synthetic": SYNTHETIC_ONLY,
            "none": NEEDS_OFFICIAL}[kind]


def _compare_points(ours: float, paper: float, covered: int, expected: int | None) -> str:
    delta = ours - paper
    complete = expected is None or covered >= expected
    if complete and abs(delta) <= TOLERANCE_POINTS:
        return f"{REPRODUCED} ({delta:+.2f} points)"
    side = "higher" if delta > 0 else "lower"
    coverage = "" if complete else f"; mean over {covered} of {expected} categories"
    return f"{DIFFERS} {abs(delta):.2f} points (ours {side}{coverage})"


def _metric_row(cell, runs, registry, flags: dict) -> dict:
    method = METHODS[cell["paper"]]
    known = not math.isnan(cell["value"])
    used, kind = select_runs(runs, method, cell["dataset"], cell["column"], synthetic_fallback=known)
    if kind == "none":
        ours = "no runs" if runs is None or runs.empty else f"no {method} run on {cell['dataset']}"
        return _row(cell, ours, produced_by(used, method), NEEDS_OFFICIAL if known else UNKNOWN)
    _note_flags(used, flags)
    value, covered = category_mean(used, cell["column"])
    ours = f"{value:.2f} %"
    if not known:
        status = UNKNOWN
    elif kind == "comparable":
        status = _compare_points(value, cell["value"], covered, expected_categories(registry, cell["dataset"]))
    else:
        status = _status_of(kind)
    return _row(cell, ours, produced_by(used, method), status)


def _gain_row(cell, runs, registry, flags: dict) -> dict:
    method, column = METHODS[cell["paper"]], cell["column"][: -len(GAIN_SUFFIX)]
    used, kind = select_runs(runs, method, cell["dataset"], column)
    if kind == "none":
        return _row(cell, "no runs", produced_by(used, method), NEEDS_OFFICIAL)
    _note_flags(used, flags)
    value, covered = category_mean(used, column)
    best = best_baseline(registry, table=cell["table"], dataset=cell["dataset"], column=column,
                         category=cell["category"])
    if kind != "comparable" or best is None:
        status = _status_of(kind) if kind != "comparable" else "no baseline value to measure the gain against"
        return _row(cell, f"{LABELS.get(column, column)} {value:.2f} %", produced_by(used, method), status)
    gain = value - best["value"]
    ours = f"{gain:+.2f} points over {best['row']} ({value:.2f} % vs {best['value']:.2f} %, {best['kind']})"
    status = _compare_points(gain, cell["value"], covered, expected_categories(registry, cell["dataset"]))
    return _row(cell, ours, produced_by(used, method), status)


def _parameter_row(cell, counts: Mapping[str, int]) -> dict:
    total = counts["total"]
    without_fa = total - counts.get("fa_head", 0)
    ours = f"we count {total / 1e6:.2f}M ({total:,}); {without_fa / 1e6:.2f}M without the FA head"
    return _row(cell, ours, "analytic count of the paper architecture (no weights needed)",
                f"{STRUCTURAL}: which parts the paper counts is unknown")


def _stlm_latency_row(cell, measured: Mapping | None) -> dict:
    median = (measured or {}).get("median_ms", {}).get("stlm_paper_1024")
    if median is None:
        return _row(cell, NOT_MEASURED, "-", NOT_MEASURED)
    device = (measured or {}).get("device", "cpu")
    by = _speed_source(measured)
    if not str(device).startswith("cuda"):
        return _row(cell, f"{median:.0f} ms (paper architecture, 1024 px, batch 1)", by, NEEDS_GPU)
    status = REPRODUCED if median <= cell["value"] * TIME_TOLERANCE else \
        f"{DIFFERS} {median - cell['value']:.0f} ms (ours slower)"
    return _row(cell, f"{median:.1f} ms", by, status)


def _cps_ms(run_dirs) -> list[float]:
    from stlm_core.runs import read_run

    values = []
    for run_dir in run_dirs:
        stage = (read_run(run_dir)["provenance"].get("stage_ms_mean") or {}).get("cps")
        if stage is not None:
            values.append(float(stage))
    return values


def _cps_row(cell, runs, flags: dict) -> dict:
    if runs is None or runs.empty or "method" not in runs:
        return _row(cell, "no runs", produced_by(None, "clipsam"), NEEDS_OFFICIAL)
    mine = recipe_runs(runs[(runs["method"] == "clipsam")])
    comparable = mine[comparable_mask(mine)]
    used = comparable if len(comparable) else _preferred_group(mine) if len(mine) else mine
    values = _cps_ms(used["run_dir"]) if "run_dir" in used else []
    if not values:
        return _row(cell, "no runs", produced_by(None, "clipsam"), NEEDS_OFFICIAL)
    _note_flags(used, flags)
    mean = sum(values) / len(values)
    ours = f"{mean:.0f} ms per image (mean over {len(values)} run(s))"
    if len(comparable):
        status = REPRODUCED if mean <= cell["value"] * TIME_TOLERANCE else \
            f"{DIFFERS} {mean - cell['value']:.0f} ms (ours slower)"
    elif _synthetic(used).all():
        status = SYNTHETIC_ONLY
    elif _flag(used, "random_init").any():
        status = RANDOM_ONLY
    else:
        status = NEEDS_OFFICIAL
    return _row(cell, ours, produced_by(used, "clipsam"), status)


def _speed_source(measured: Mapping) -> str:
    threads = measured.get("threads")
    return (f"measured in this build on {measured.get('device', 'cpu')}"
            + (f" ({threads} thread(s))" if threads else "") + ", batch 1, fp32; the cost does not depend on "
                                                               "the weights")


def speedup_claims(measured: Mapping | None):
    """STLM's Fig. 1 caption claims ("8x faster than PatchCore, 4x than FOD, 1x than SimpleNet, 0.5x than RD++"),
    each read as t_other = (1 + N) t_STLM, beside the time ratio measured on this device where that method is
    measured here (PatchCore only; the others have no implementation in this project). A ``pandas.DataFrame``:
    ``method, claimed, claimed time ratio, measured time ratio, measured as``."""
    import pandas as pd

    from stlm_core.baselines.bench import CLAIMED_SPEEDUPS

    ratios = (measured or {}).get("ratios") or {}
    rows = []
    for method, speedup in CLAIMED_SPEEDUPS.items():
        found = {k: v for k, v in ratios.items() if k.lower().startswith(method.lower())}
        rows.append({"method": method, "claimed": f"{_number(speedup)}x faster",
                     "claimed time ratio": 1 + speedup,
                     "measured time ratio": "; ".join(f"{v:.2f}" for v in found.values()) or NOT_MEASURED,
                     "measured as": "; ".join(found) or (NOT_MEASURED if method == "PatchCore"
                                                         else "no implementation in this project")})
    return pd.DataFrame(rows).set_index("method")


def speed_claim_row(measured: Mapping | None) -> dict:
    """STLM Fig. 1: "8x faster than PatchCore" against the PatchCore / STLM latency ratio on this device."""
    from stlm_core.baselines.bench import CLAIMED_SPEEDUP_VS_PATCHCORE

    claimed = 1 + CLAIMED_SPEEDUP_VS_PATCHCORE
    row = {"paper": PAPERS["stlm"], "item": "STLM-F1", "claim": "STLM is faster than PatchCore (Fig. 1 caption)",
           "paper value": f"{_number(CLAIMED_SPEEDUP_VS_PATCHCORE)}x faster (PatchCore takes {_number(claimed)}x "
                          "STLM's time)"}
    ratios = (measured or {}).get("ratios") or {}
    if not ratios:
        return {**row, "ours": NOT_MEASURED, "produced by": "-", "status": NOT_MEASURED}
    by = _speed_source(measured)
    if PAPER_SPEED_RATIO not in ratios:
        name, ratio = next(iter(ratios.items()))
        return {**row, "ours": f"{name}: {ratio:.2f}x (paper architectures not timed)", "produced by": by,
                "status": f"{NOT_MEASURED} (paper architectures)"}
    ratio = ratios[PAPER_SPEED_RATIO]
    status = REPRODUCED if ratio >= claimed * SPEED_TOLERANCE else \
        f"{DIFFERS} a factor {claimed / ratio:.1f} (PatchCore takes {ratio:.2f}x STLM's time here)"
    return {**row, "ours": f"PatchCore (WideResNet-50, 224 px) / STLM (paper, 1024 px): {ratio:.2f}x"
                           + deployment_clause(), "produced by": by, "status": status}


def deployment_clause() -> str:
    """``; on deployment backends ...``: the recorded ``stlm bench deploy`` run's best-against-best ratios (each model
    at its fastest backend), or ``""`` without a recorded run."""
    from stlm_core.deploy.bench import RECORDED, best_backend_ratios, load_recorded_bench

    if not RECORDED.is_file():
        return ""
    rows, provenance = load_recorded_bench()
    parts = []
    for label, best in best_backend_ratios(rows).items():
        ratio, fast = best["ratio"], best["stlm"]
        verdict = f"STLM {ratio:.1f}x faster" if ratio >= 1 else f"STLM {1 / ratio:.1f}x slower"
        parts.append(f"{label} {ratio:.2f}x ({verdict}; STLM at its best with {fast['backend']} {fast['precision']}, "
                     f"PatchCore with {best['patchcore']['backend']} {best['patchcore']['precision']})")
    threads = sorted({r["threads"] for r in rows if "error" not in r})
    return ("; on CPU deployment backends, each model at its fastest (recorded 'stlm bench deploy', "
            f"{'/'.join(map(str, threads))} thread(s), {provenance.get('date', '?')}): " + "; ".join(parts)) if parts else ""


def _note_flags(used, flags: dict) -> None:
    flags["synthetic"] |= bool(_synthetic(used).any())
    flags["random_init"] |= bool(_flag(used, "random_init").any())


def paper_parameter_counts() -> dict[str, int]:
    """Parameters per module of the paper architecture (random weights: counts do not depend on them)."""
    from stlm_core.stlm.build import build_stlm
    from stlm_core.stlm.config import StlmConfig
    from stlm_core.stlm.model import parameter_counts

    return parameter_counts(build_stlm(StlmConfig.from_profile("paper")))


def _cell_row(cell, runs, registry, measured: Mapping | None, counts, flags: dict) -> dict:
    column = cell["column"]
    if column.startswith("params_m") and cell["row"] == OWN_ROWS["stlm"]:
        return _parameter_row(cell, counts())
    if column == "latency_ms" and cell["row"] == OWN_ROWS["stlm"]:
        return _stlm_latency_row(cell, measured)
    if column == "cps_extra_ms":
        return _cps_row(cell, runs, flags)
    if cell["row"] != OWN_ROWS.get(cell["paper"]):
        return _row(cell, "-", "-", NOT_CHECKED if not math.isnan(cell["value"]) else UNKNOWN)
    if column.endswith(GAIN_SUFFIX):
        return _gain_row(cell, runs, registry, flags)
    return _metric_row(cell, runs, registry, flags)


def scorecard(runs, registry, *, measured: dict | None = None):
    """One row per claim of either paper (columns :data:`COLUMNS`).

    Args:
        runs: a :func:`stlm_core.runs.load_runs` frame (may be empty).
        registry: :func:`stlm_core.paper_results.load_paper_results` (the whole registry).
        measured: latencies measured in this build, shaped like
            :func:`stlm_core.baselines.bench.speed_ratios` (``median_ms``, ``ratios``; optional ``device``,
            ``threads``), and optionally ``parameter_counts`` (default: counted from the paper architecture).

    Returns:
        ``pandas.DataFrame``; ``attrs["synthetic"]`` / ``attrs["random_init"]`` say whether any number in
        ``ours`` comes from synthetic data / randomly initialised weights (the page then needs a banner).
    """
    import pandas as pd

    flags = {"synthetic": False, "random_init": False}
    cache: dict[str, dict] = {}

    def counts() -> dict[str, int]:
        if "counts" not in cache:
            cache["counts"] = dict((measured or {}).get("parameter_counts") or paper_parameter_counts())
        return cache["counts"]

    rows = []
    claims = claim_rows(registry)
    for paper in PAPERS:
        for _, cell in claims[claims["paper"] == paper].iterrows():
            rows.append(_cell_row(cell, runs, registry, measured, counts, flags))
        if paper == "stlm":
            rows.append(speed_claim_row(measured))
    note = fidelity_note()
    if note:
        for row in rows:
            if row["paper"] == PAPERS["stlm"] and row["item"] in FIDELITY_ITEMS:
                row["produced by"] = f"{row['produced by']}; {note}"
    card = pd.DataFrame(rows, columns=list(COLUMNS))
    card.attrs.update(flags)
    return card


FIDELITY_ITEMS = ("STLM-T1", "STLM-T3", "STLM-T4", "STLM-T5")  # results computed by the STLM code path


def fidelity_note(result: Mapping | None = None) -> str | None:
    """What the recorded equivalence check with the official code measured, in one clause (``None`` when there is
    no recorded result or it did not pass): the largest relative difference of the inference rows and of the
    training-step rows (losses, gradients, parameters after one step)."""
    from stlm_core.errors import StlmError
    from stlm_core.fidelity import load_check_result

    try:
        result = result if result is not None else load_check_result()
    except StlmError:
        return None
    if not result.get("passed"):
        return None
    rows = result["rows"]

    def worst(parts: tuple[str, ...]) -> float:
        return max(r["max_rel"] for r in rows if r["part"].split(" (")[0] in parts and r["max_rel"] is not None
                   and not r["quantity"].startswith("attention key biases"))

    prov = result["provenance"]
    return (f"the code computes the official function (checked against the official code at "
            f"{str(prov['official_commit'])[:7]} on {prov['date']}: inference within {worst(('inference',)):.0e} "
            f"relative, one training step within {worst(('training step', 'after one step')):.0e})")


# ---------------------------------------------------------------------------------------------- page helpers


def scorecard_banner(card):
    """The provenance banner when any number in ``ours`` comes from synthetic data or random weights, else a note."""
    from IPython.display import HTML

    from stlm_core.report import banner

    synthetic, random_init = bool(card.attrs.get("synthetic")), bool(card.attrs.get("random_init"))
    if synthetic or random_init:
        return banner("synthetic" if synthetic else "n/a", "random-init" if random_init else "pretrained")
    return HTML("<p>No number in the <b>ours</b> column comes from synthetic data or randomly initialised "
                "weights.</p>")


def scorecard_table(card):
    """The scorecard for a page, narrow enough for the text column: item, claim, paper value, ours (with the
    evidence, "produced by", folded under it) and the coloured verdict label (:func:`verdict_label`); the full
    status text is the label's tooltip. Returns ``IPython.display.HTML``."""
    import html

    from IPython.display import HTML

    body = []
    for _, row in card.iterrows():
        evidence = html.escape(str(row["produced by"]))
        ours = html.escape(str(row["ours"]))
        if evidence and evidence != "-":
            ours += f"<details><summary>evidence</summary>{evidence}</details>"
        badge = verdict_badge(verdict_label(row["status"])).replace(
            "<span ", f'<span title="{html.escape(str(row["status"]))}" ', 1)
        body.append(f"<tr><td style=\"white-space:nowrap\">{html.escape(row['item'])}</td>"
                    f"<td>{html.escape(row['claim'])}</td><td>{html.escape(str(row['paper value']))}</td>"
                    f"<td>{ours}</td><td>{badge}</td></tr>")
    return HTML('<table class="stlm-scorecard" style="font-size:0.8em;width:100%">'
                "<thead><tr><th>item</th><th>claim</th><th>paper</th><th>ours</th><th>verdict</th></tr></thead>"
                "<tbody>" + "".join(body) + "</tbody></table>")


def status_counts(card):
    """Rows per canonical status, in the order of :data:`STATUSES` (statuses that occur only)."""
    counts = card["status"].map(status_kind).value_counts()
    return counts.reindex([s for s in STATUSES if s in counts.index])


def describe_scorecard(card):
    """A short generated paragraph: how many claims have which status, and what the scorecard cannot show."""
    from IPython.display import Markdown

    counts = status_counts(card)
    parts = [f"The scorecard lists **{len(card)} claims** of the two papers: "
             + "; ".join(f"{status}: {n}" for status, n in counts.items()) + "."]
    parts.append(f"A mean counts as reproduced when it covers every category of the dataset and lies within "
                 f"{TOLERANCE_POINTS:g} point(s) of the paper; a speed ratio when it reaches "
                 f"{100 * SPEED_TOLERANCE:.0f} % of the claimed one.")
    reproduced = int(counts.get(REPRODUCED, 0)) + int(counts.get(DIFFERS, 0))
    if reproduced == 0:
        parts.append("No claim was compared with a run at the paper profile with the official weights on real data: "
                     "such runs need the SAM, MobileSAM and CLIP weights and, in practice, a GPU.")
    if card.attrs.get("synthetic") or card.attrs.get("random_init"):
        parts.append("Numbers from synthetic data or random weights are shown with their provenance and never "
                     "counted as reproductions.")
    parts.append("It cannot show the per-category cells the papers' tables hold but this project does not know "
                 "(they stay n/a; see the per-dataset chapters), nor latencies on the authors' unstated GPU; "
                 "parameter counts can only be checked against the architecture, since which parts the authors "
                 "counted is not stated.")
    return Markdown(" ".join(parts))


# ---------------------------------------------------------------------------------------------- verdicts

# The short verdict labels used on every page, per scorecard status, and their colours (background, text).
VERDICTS: dict[str, str] = {
    REPRODUCED: "reproduced",
    DIFFERS: "not reproduced",
    STRUCTURAL: "structure verified",
    NEEDS_OFFICIAL: "not testable here: needs official weights",
    NEEDS_GPU: "not testable here: needs a GPU",
    SYNTHETIC_ONLY: "synthetic data only",
    RANDOM_ONLY: "random weights only",
    UNKNOWN: "paper value unknown",
    NOT_MEASURED: "not measured",
    NOT_CHECKED: "not checked",
}
VERDICT_COLOURS: dict[str, tuple[str, str]] = {
    "reproduced": ("#d4edda", "#155724"),
    "not reproduced": ("#f8d7da", "#721c24"),
    "partly reproduced": ("#fff3cd", "#856404"),
    "structure verified": ("#d1ecf1", "#0c5460"),
    "shown (figure)": ("#d1ecf1", "#0c5460"),
}
DEFAULT_COLOUR = ("#e2e3e5", "#383d41")
# Which label an item with several claims gets: the first of this order that occurs (reproduced only when all are).
VERDICT_ORDER = ("not reproduced", "not testable here: needs official weights", "not testable here: needs a GPU",
                 "random weights only", "synthetic data only", "structure verified", "not measured", "not checked",
                 "paper value unknown", "reproduced")

# Every item of the two papers, the chapter (notebook stem) that shows it and what it is.
ITEMS: dict[str, tuple[str, str]] = {
    "STLM-T1": ("stlm_main_results", "MVTec AD results"),
    "STLM-T2": ("efficiency", "parameters and inference time"),
    "STLM-T3": ("stlm_main_results", "VisA results"),
    "STLM-T4": ("stlm_main_results", "DAGM results"),
    "STLM-T5": ("stlm_learning_study", "ablations"),
    "STLM-F1": ("efficiency", "speed against pixel AUROC"),
    "STLM-F3": ("datasets_overview", "dataset examples (MVTec AD, VisA, DAGM, LOCO)"),
    "STLM-F4": ("stlm_main_results", "anomaly maps with and without FA"),
    "STLM-F5": ("stlm_main_results", "anomaly maps on VisA and DAGM"),
    "CS-T1": ("clipsam_zero_shot", "zero-shot segmentation comparison"),
    "CS-T2": ("clipsam_ablations", "PPG and CPS ablations"),
    "CS-T3": ("clipsam_ablations", "timing of the cascaded stage"),
    "CS-F3": ("clipsam_zero_shot", "PPG point prompts"),
    "CS-F4": ("clipsam_zero_shot", "CPS stages"),
    "CS-F5": ("clipsam_zero_shot", "anomaly maps"),
}


def verdict_label(status: str) -> str:
    """The short verdict label of a scorecard status text."""
    return VERDICTS.get(status_kind(status), status_kind(status))


def item_verdicts(card, items: Mapping[str, tuple[str, str]] | None = None):
    """One row per paper item (``STLM-T1`` ... ``CS-F5``): ``item, what, verdict, why, chapter``. ``verdict`` is
    ``reproduced`` when every claim of the item is, ``partly reproduced`` when some are and none differs, else the
    first label of :data:`VERDICT_ORDER` among its claims; an item with no claim row is ``shown (figure)`` for a
    figure and ``paper value unknown`` for a table. ``why`` counts the item's claims per label. Generated from the scorecard rows only."""
    import pandas as pd

    items = dict(ITEMS if items is None else items)
    for item in card["item"]:
        items.setdefault(item, ("scorecard", ""))
    rows = []
    for item, (chapter, what) in items.items():
        claims = card[card["item"] == item]
        labels = claims["status"].map(verdict_label)
        if not len(claims) and "-F" in item:
            verdict, why = "shown (figure)", "a qualitative figure: no number to compare; see its chapter"
        elif not len(claims):
            verdict, why = "paper value unknown", "the paper's values are unknown to this project; the chapter shows this study's own numbers"
        else:
            counts = labels.value_counts()
            if set(counts.index) == {"reproduced"}:
                verdict = "reproduced"
            elif "reproduced" in counts.index and "not reproduced" not in counts.index:
                verdict = "partly reproduced"
            else:
                verdict = next(v for v in VERDICT_ORDER if v in counts.index) if any(
                    v in counts.index for v in VERDICT_ORDER) else counts.index[0]
            why = (f"{len(claims)} claim{'s' if len(claims) > 1 else ''}: "
                   + "; ".join(f"{n} {label}" for label, n in counts.items()))
        rows.append({"item": item, "what": what, "verdict": verdict, "why": why, "chapter": chapter})
    return pd.DataFrame(rows, columns=["item", "what", "verdict", "why", "chapter"])


def verdict_badge(label: str) -> str:
    """HTML of a short coloured verdict label."""
    import html

    background, colour = VERDICT_COLOURS.get(label, DEFAULT_COLOUR)
    return (f'<span class="stlm-verdict" style="background:{background};color:{colour};padding:0 0.4em;'
            f'border-radius:0.3em;white-space:normal">{html.escape(label)}</span>')


def verdict_table_html(verdicts, pages: Mapping[str, list[str]] | None = None) -> str:
    """The verdict page's table as HTML: item (linked to its chapter's page(s) when ``pages`` maps a chapter stem
    to page names), what, the coloured verdict and why. Narrow: four columns that wrap."""
    import html

    pages = dict(pages or {})
    body = []
    for _, row in verdicts.iterrows():
        targets = pages.get(row["chapter"], [])
        item = html.escape(row["item"])
        if targets:
            item = " ".join(f'<a href="{html.escape(t)}.html">{item if i == 0 else f"[{i + 1}]"}</a>'
                            for i, t in enumerate(targets))
        body.append(f"<tr><td style=\"white-space:nowrap\">{item}</td><td>{html.escape(row['what'])}</td>"
                    f"<td>{verdict_badge(row['verdict'])}</td><td>{html.escape(row['why'])}</td></tr>")
    return ('<table class="stlm-verdicts" style="font-size:0.85em;table-layout:auto;width:100%">'
            "<thead><tr><th>item</th><th>what</th><th>verdict</th><th>why</th></tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def describe_verdicts(verdicts, card):
    """Generated sentences for the verdict page: how many items get which verdict, and what the page cannot show."""
    from IPython.display import Markdown

    counts = verdicts["verdict"].value_counts()
    parts = [f"Of the **{len(verdicts)} items** of the two papers: "
             + "; ".join(f"{label}: {n}" for label, n in counts.items()) + "."]
    if not counts.get("reproduced") and not counts.get("not reproduced") and not counts.get("partly reproduced"):
        parts.append("No item could be compared with the papers' numbers in this build: that needs runs at the paper "
                     "profile with the official SAM, MobileSAM and CLIP weights on the real datasets (a GPU in "
                     "practice); rerun the book with `--profile paper` and the datasets to fill them.")
    if card.attrs.get("synthetic") or card.attrs.get("random_init"):
        parts.append("This build's own numbers come from synthetic data or random weights for some items; they show "
                     "that the pipeline runs and learns, not the papers' results.")
    parts.append("A verdict is only as good as the paper values known to this project: items whose values are "
                 "unknown stay unknown rather than guessed.")
    return Markdown(" ".join(parts))
