"""Helpers for the book's pages: provenance banners, metric tables and notes that interpret run records.

Every page whose numbers come from synthetic data or random weights shows a visible banner
(:func:`banner`); results tables come from run records (:func:`metrics_table`), never typed by hand.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Iterable

BANNER_STYLE = (
    "border-left: 6px solid #d9822b; background: #fff4e5; padding: 0.6em 1em; margin: 0.5em 0 1em 0; "
    "font-weight: 600; color: #5c3b00;"
)
DEFAULT_COLUMNS = {"pixel_auroc": "pixel AUROC", "pixel_aupro": "AUPRO", "image_auroc": "image AUROC"}


def banner_text(dataset: str, weights: str | None = None) -> str | None:
    """The warning to show for this page's data and weights, or None when both are real."""
    reasons = []
    if dataset == "synthetic":
        reasons.append("SYNTHETIC DATA: procedurally generated images, not a real inspection dataset")
    if weights is not None and weights == "random-init":
        reasons.append("RANDOM WEIGHTS: some models are randomly initialised, not pretrained")
    if not reasons:
        return None
    return "; ".join(reasons) + ". These numbers show what this setting does, not the papers' results."


def banner(dataset: str, weights=None):
    """An ``IPython.display.HTML`` banner (or a plain note when there is nothing to warn about).

    ``weights``: ``"random-init"``, another identity string, or a ``load_runs`` frame (random if any run is).
    """
    from IPython.display import HTML

    if hasattr(weights, "columns"):
        weights = "random-init" if bool(weights["random_init"].fillna(False).any()) else "pretrained"
    text = banner_text(dataset, weights)
    if text is None:
        return HTML(f"<p>Data: <b>{html.escape(dataset)}</b>; weights: <b>{html.escape(str(weights))}</b>.</p>")
    return HTML(f'<div class="stlm-banner" style="{BANNER_STYLE}">&#9888; {html.escape(text)}</div>')


def metrics_table(runs, blocks: dict[str, str], columns: dict[str, str] | None = None):
    """A per-category table in %, one column block per map: ``blocks`` maps a display name to a map name of the
    runs (the primary map's metrics are the unprefixed columns, the others ``<map>.<metric>``). ``runs`` is a
    ``load_runs`` frame indexed by category; a last row gives the mean and the number of categories behind it."""
    import pandas as pd

    columns = columns or DEFAULT_COLUMNS
    parts = {}
    for display, name in blocks.items():
        primary = (runs["map"] == name).all()
        source = list(columns) if primary else [f"{name}.{k}" for k in columns]
        missing = [c for c in source if c not in runs]
        if missing:
            raise KeyError(f"the runs have no metrics for map {name!r} (missing {missing})")
        parts[display] = runs[source].set_axis(list(columns.values()), axis=1).astype(float)
    table = pd.concat(parts, axis=1) * 100
    table.loc[f"mean ({len(runs)} categories)"] = table.mean()
    return table.round(2)


def localiser_note(run_dirs: Iterable[str | Path]):
    """Which CLIP localiser the runs used (and on which dataset its adapters were trained), as HTML."""
    from IPython.display import HTML

    from stlm_core.runs import read_run

    seen = set()
    for run_dir in run_dirs:
        prov = read_run(run_dir)["provenance"]
        seen.add((prov.get("localiser"), prov.get("adapters_trained_on")))
    lines = []
    for localiser, trained_on in sorted(seen, key=str):
        if localiser == "adapters":
            lines.append(f"CLIP localiser: APRIL-GAN adapters trained on <b>{html.escape(str(trained_on))}</b>.")
        else:
            lines.append("CLIP localiser: <b>training-free</b> (WinCLIP-style patch/text similarity; no adapters "
                         "were given, unlike the paper's setting).")
    return HTML("<p>" + "<br>".join(lines) + "</p>")


def describe_learning(curves):
    """Two or three sentences, generated from a learning-study frame, on what the curves show and cannot show."""
    from IPython.display import Markdown

    final = curves.sort_values("step").groupby(["variant", "category"]).tail(1)
    best_map = final[["fa.pixel_auroc", "wo_fa.pixel_auroc"]].max(axis=1) if "fa.pixel_auroc" in final \
        else final["wo_fa.pixel_auroc"]
    final = final.assign(best=best_map)
    by_variant = final.groupby("variant")["best"].mean().sort_values(ascending=False)
    lines = []
    top, top_value = by_variant.index[0], by_variant.iloc[0]
    lines.append(f"After {int(final['step'].max())} steps the best variant is **{top}** (mean pixel AUROC of its "
                 f"better map {100 * top_value:.1f} % over {final['category'].nunique()} categories).")
    for name in ("paper_faithful", "random_teacher"):
        if name in by_variant and name != top:
            lines.append(f"**{name}** reaches {100 * by_variant[name]:.1f} % on the same data and schedule.")
    lines += contrast_sentences(curves)
    below = final[final["best"] < 0.5]
    if len(below):
        lines.append(f"{len(below)} of {len(final)} variant/category results are below chance (0.5): those maps "
                     "rank normal pixels above defective ones.")
    synthetic = set(final["dataset"]) == {"synthetic"}
    lines.append("These are short CPU schedules with an ImageNet teacher instead of SAM"
                 + (" on synthetic images" if synthetic else "")
                 + "; they show which recipe learns within minutes, not what STLM reaches with SAM at 1024 px on a "
                   "GPU.")
    return Markdown(" ".join(lines))


MAP_NAMES = {"fa": "FA map", "wo_fa": "w/o-FA map", "wo_fa_norm": "standardised w/o-FA map"}


def describe_robustness(table, reference: str = "cpu") -> list[str]:
    """Sentences from :func:`stlm_core.stlm.study.robustness_table`: the recipe (variant, map) ranked first (every
    category measured, the targets met, the best worst category), where the reference profile's reported map stands
    by the same rule, and which recipes were measured on fewer categories."""
    from stlm_core.stlm.study import TARGET_AUPRO, TARGET_PIXEL_AUROC, TIE_POINTS

    if table is None or len(table) == 0:
        return []
    top = table.iloc[0]
    n = int(top["categories"])
    targets = (f"pixel AUROC >= {100 * TARGET_PIXEL_AUROC:.0f} % and AUPRO >= {100 * TARGET_AUPRO:.0f} % on every "
               "category")
    lines = [f"Judged by its worst category (of {n}), the best recipe here is **{top['variant']}** with its "
             f"{MAP_NAMES.get(top['map'], top['map'])}: pixel AUROC {100 * top['worst']:.1f} % and AUPRO "
             f"{100 * top['worst_aupro']:.1f} % at worst (pixel AUROC on {top['worst_category']}; mean "
             f"{100 * top['mean']:.1f} %, spread {100 * top['spread']:.1f} points); it "
             + ("meets" if top["meets_targets"] else "does not meet") + f" the targets ({targets})."]
    tied = table.iloc[1:][(table.iloc[1:]["categories"] == n)
                          & (table.iloc[1:]["meets_targets"] == top["meets_targets"])
                          & ((top["worst"] - table.iloc[1:]["worst"]).abs() < TIE_POINTS / 100)]
    if len(tied):
        lines.append("Within " + f"{TIE_POINTS:g} points of its worst pixel AUROC (a tie for one seed and a few dozen "
                     "test images) and ranked after it by the worst AUPRO: "
                     + "; ".join(f"{r['variant']} / {MAP_NAMES.get(r['map'], r['map'])} ({100 * r['worst']:.1f} %, "
                                 f"AUPRO {100 * r['worst_aupro']:.1f} %)" for _, r in tied.iterrows()) + ".")
    reference_rows = table[table["variant"] == reference]
    if len(reference_rows) and not (top["variant"] == reference and top["map"] == "fa"):
        reported = reference_rows[reference_rows["map"] == "fa"]
        row = (reported if len(reported) else reference_rows).iloc[0]
        lines.append(f"The {reference} profile's {MAP_NAMES.get(row['map'], row['map'])} reaches "
                     f"{100 * row['worst']:.1f} % / {100 * row['worst_aupro']:.1f} % on its worst category.")
    close = table[(table["categories"] == n) & ~table["meets_targets"] & (table["worst"] > top["worst"])]
    if len(close):
        lines.append(f"{len(close)} recipe(s) rank their worst pixel higher but miss the AUPRO target (worst "
                     f"{100 * close['worst_aupro'].max():.1f} % at best): their maps find the defective pixels but "
                     "cover the defect regions less well.")
    partial = table[table["categories"] < n]
    if len(partial):
        lines.append(f"{partial['variant'].nunique()} variant(s) were measured on fewer categories and are listed "
                     "last: " + ", ".join(sorted(partial["variant"].unique())) + ".")
    if n < 3:
        lines.append("With fewer than three categories the worst case says little about categories not measured.")
    return lines


def robustness_views(table):
    """(summary, per category) display frames of a robustness table, values in % rounded to 0.1: the summary has
    one row per recipe (variant, map) and the judging columns; the second its pixel AUROC per category."""
    summary_columns = {"worst": "worst pixel AUROC", "worst_category": "worst category", "mean": "mean",
                       "spread": "spread", "worst_aupro": "worst AUPRO", "worst_image_auroc": "worst image AUROC",
                       "meets_targets": "meets targets"}
    fixed = {"variant", "map", "categories", *summary_columns}
    index = table["variant"] + " / " + table["map"].map(lambda m: MAP_NAMES.get(m, m).replace(" map", ""))
    summary = table[list(summary_columns)].rename(columns=summary_columns).set_axis(index)
    for column in summary:
        if column not in ("worst category", "meets targets"):
            summary[column] = (100 * summary[column].astype(float)).round(1)
    per_category = (100 * table[[c for c in table if c not in fixed]].astype(float)).round(1).set_axis(index)
    return summary.rename_axis("recipe"), per_category.rename_axis("recipe")


def contrast_sentences(curves, map_name: str = "wo_fa") -> list[str]:
    """Per variant whose ``map_name`` pixel AUROC fell from its best evaluation to the last one: how the map's mean
    value on defective pixels and on the other pixels moved in between (the learning-study rows' ``inside`` /
    ``outside``), i.e. whether the students also learned to reproduce the defects (the contrast shrinks) or the
    map only got noisier."""
    needed = {f"{map_name}.pixel_auroc", f"{map_name}.inside", f"{map_name}.outside"}
    if not needed <= set(curves.columns):
        return []
    lines = []
    for variant, group in curves.dropna(subset=sorted(needed)).groupby("variant"):
        mean = group.groupby("step")[sorted(needed)].mean().sort_index()
        if len(mean) < 2:
            continue
        auroc = mean[f"{map_name}.pixel_auroc"]
        best, last = auroc.idxmax(), auroc.index[-1]
        if auroc[last] > auroc[best] - 0.02:
            continue
        ratio = (mean[f"{map_name}.inside"] / mean[f"{map_name}.outside"].clip(lower=1e-12))
        lines.append(f"**{variant}**: the {map_name.replace('_', '-')} map's pixel AUROC fell from "
                     f"{100 * auroc[best]:.1f} % (step {best}) to {100 * auroc[last]:.1f} % (step {last}); its mean "
                     f"value on defects went from {mean[f'{map_name}.inside'][best]:.3g} to "
                     f"{mean[f'{map_name}.inside'][last]:.3g} and elsewhere from "
                     f"{mean[f'{map_name}.outside'][best]:.3g} to {mean[f'{map_name}.outside'][last]:.3g}, so the "
                     f"defect-to-normal contrast went from {ratio[best]:.2f}x to {ratio[last]:.2f}x"
                     + (": the streams also learned to agree on the defects." if ratio[last] < ratio[best] else "."))
    return lines


def denoising_sentences(curves) -> list[str]:
    """Per variant, from the learning-study rows' ``probe.*`` columns (means over categories), at the first and
    the last evaluation: the share of a pseudo-anomaly's feature change its denoising stream removes, the share its
    plain stream keeps (when measured), and the streams' inside/outside distance ratio."""
    needed = {"probe.undone", "probe.streams_inside", "probe.streams_outside"}
    if not needed <= set(curves.columns):
        return []
    lines = []
    for variant, group in curves.dropna(subset=sorted(needed)).groupby("variant", sort=False):
        mean = group.groupby("step")[sorted(needed)].mean().sort_index()
        if mean.empty:
            continue
        contrast = mean["probe.streams_inside"] / mean["probe.streams_outside"].clip(lower=1e-12)
        steps = list(dict.fromkeys([mean.index[0], mean.index[-1]]))
        undone = " and ".join(f"{100 * mean['probe.undone'][s]:.0f} % at step {s}" for s in steps)
        ratio = " and ".join(f"{contrast[s]:.1f}x at step {s}" for s in steps)
        kept = ""
        if "probe.reproduced" in group and group["probe.reproduced"].notna().all():
            shares = group.groupby("step")["probe.reproduced"].mean()
            kept = ("; kept by the plain stream "
                    + " and ".join(f"{100 * shares[s]:.0f} % at step {s}" for s in steps))
        lines.append(f"**{variant}**: share of a pseudo-anomaly's feature change removed by the denoising stream "
                     f"{undone}{kept}; streams' distance inside the pseudo-anomaly over outside it {ratio}.")
    return lines


def schedule_note(profile: str, steps: int | None):
    """A visible note when a page trains a different schedule than its profile's (e.g. a shorter one that fits the
    book's build budget), with the profile's own schedule for comparison."""
    from IPython.display import HTML

    from stlm_core.stlm.config import StlmConfig

    config = StlmConfig.from_profile(profile)
    planned = f"{config.train_steps} steps" if config.train_steps else f"{config.epochs} epochs"
    if steps is None:
        return HTML(f"<p>Schedule: the <b>{html.escape(profile)}</b> profile's {planned} at batch "
                    f"{config.batch_size}.</p>")
    return HTML(f'<div class="stlm-note" style="{BANNER_STYLE}">&#9888; Shortened schedule: {steps} steps instead of '
                f"the {html.escape(profile)} profile's {planned}, to fit the book's build time. Rerun this chapter "
                f"with <code>-p steps None</code> for the full schedule.</div>")


def recording_note(run_dirs: Iterable[str | Path], runs_dir: str | Path):
    """A visible note on which of ``run_dirs`` were unpacked from the package's recorded runs (a full build's
    records, no weights or maps) and which were made here, with the check of the recording: the runs held back from
    it and trained here again with the same configuration, against their recorded metrics."""
    from IPython.display import HTML

    from stlm_core.runs import recorded_provenance
    from stlm_core.runs.archive import recording_check

    run_dirs = [Path(d) for d in run_dirs]
    recorded = [p for p in map(recorded_provenance, run_dirs) if p is not None]
    if not recorded:
        return HTML("<p>Every run on this page was trained or fitted on this machine (in this build or an earlier "
                    "one with the same configuration).</p>")
    first = recorded[0]
    machine = f", a {first['gflops']:.0f}-GFLOPS machine" if first.get("gflops") else ""
    text = (f"&#9888; {len(recorded)} of the {len(run_dirs)} runs on this page are <b>recorded</b>: measured by a "
            f"full build on {html.escape(str(first.get('recorded_utc', '?'))[:10])} (commit "
            f"{html.escape(str(first.get('git_commit') or '?')[:10])}{machine}) and shipped with the package as "
            "records (metrics, losses and learning curves; no weights, no maps), so that the default book builds in "
            "minutes on a slow machine. The other runs were trained on this machine. <code>python book/build.py "
            "--live</code> trains every run here instead.")
    check = recording_check(runs_dir)
    if check.empty:
        text += " No run of the recording was trained again here, so nothing checks it in this build."
    else:
        worst = 100 * check["difference"].abs().max()
        runs = check["run"].nunique()
        text += (f" Check of the recording: {runs} run(s) of it trained again here with the same configuration "
                 f"differ from their recorded metrics by at most {worst:.2f} points ({len(check)} values: pixel "
                 "AUROC, AUPRO and image AUROC of every map). Equal values are expected on the same CPU type and "
                 "thread count; other CPUs round differently and training amplifies it.")
    return HTML(f'<div class="stlm-note" style="{BANNER_STYLE}">{text}</div>')


def describe_results(runs, baseline=None):
    """Two or three generated sentences on an STLM results table: which map is better, how it compares with the
    baseline, whether any map is below chance, and what the numbers cannot show."""
    from IPython.display import Markdown

    fa = runs["pixel_auroc"] if (runs["map"] == "fa").all() else None
    wo_fa = runs["wo_fa.pixel_auroc"] if "wo_fa.pixel_auroc" in runs else runs["pixel_auroc"]
    parts = []
    if fa is not None:
        better = "FA" if fa.mean() >= wo_fa.mean() else "w/o-FA"
        parts.append(f"Mean pixel AUROC over {len(runs)} categories: FA map {100 * fa.mean():.1f} %, w/o-FA map "
                     f"{100 * wo_fa.mean():.1f} %; the {better} map is the better one here.")
    else:
        parts.append(f"Mean pixel AUROC of the w/o-FA map over {len(runs)} categories: {100 * wo_fa.mean():.1f} %.")
    if baseline is not None and len(baseline):
        parts.append(f"PatchCore on the same images: {100 * baseline['pixel_auroc'].mean():.1f} %.")
    maps = [m for m in (fa, wo_fa) if m is not None]
    below = sorted({c for m in maps for c, v in m.items() if v < 0.5})
    if below:
        parts.append(f"Below chance (< 50 %) in: {', '.join(map(str, below))}.")
    caveats = []
    if bool(runs["synthetic"].any()):
        caveats.append("synthetic images")
    if bool(runs["random_init"].fillna(False).any()):
        caveats.append("randomly initialised parts")
    profiles = ", ".join(sorted(set(runs["profile"].dropna())))
    parts.append(f"Profile {profiles}" + (f", {' and '.join(caveats)}" if caveats else "")
                 + ": these numbers say how this setting performs on this data, not what the paper's SAM-guided "
                   "model reaches on MVTec AD.")
    return Markdown(" ".join(parts))


BEHIND_POINTS = 2.0  # a gap to the baseline larger than this is named in the text


def baseline_gap(runs, baseline, columns: dict[str, str] | None = None):
    """STLM's reported map minus the baseline, per category and metric, in percentage points (negative: STLM is
    behind). ``runs`` / ``baseline``: ``load_runs`` frames indexed by category (primary maps). Last row: the mean."""
    import pandas as pd

    columns = columns or DEFAULT_COLUMNS
    shared = [c for c in runs.index if c in baseline.index]
    gap = pd.DataFrame({label: 100 * (runs.loc[shared, key].astype(float) - baseline.loc[shared, key].astype(float))
                        for key, label in columns.items()})
    gap.loc[f"mean ({len(shared)} categories)"] = gap.mean()
    return gap.round(2)


def describe_gap(gap, baseline_name: str = "PatchCore", threshold: float = BEHIND_POINTS) -> str:
    """One generated sentence: the categories and metrics where STLM is more than ``threshold`` points behind the
    baseline (from :func:`baseline_gap`), or that it is nowhere."""
    per_category = gap.iloc[:-1]
    behind = []
    for category, row in per_category.iterrows():
        lagging = [f"{metric} {value:+.1f}" for metric, value in row.items() if value < -threshold]
        if lagging:
            behind.append(f"{category} ({', '.join(lagging)})")
    if not behind:
        return (f"STLM's reported map is nowhere more than {threshold:g} points behind {baseline_name} "
                f"({len(per_category)} categories).")
    return (f"STLM's reported map is more than {threshold:g} points behind {baseline_name} in {len(behind)} of "
            f"{len(per_category)} categories: {'; '.join(behind)} (points).")


def describe_gains(gains, dataset: str, runs) -> str:
    """One or two generated sentences on :func:`stlm_core.paper_results.claimed_gains`: whether this chapter's
    runs can speak to the paper's claimed gains, and if so how ours compare."""
    if gains.empty:
        return "The registry holds no claimed gains for this table."
    claim_sets = sorted(set(gains["dataset"]))
    if dataset not in claim_sets:
        return (f"The claimed gains are on {', '.join(claim_sets)}; this chapter ran on {dataset!r}, so it cannot "
                "confirm or refute them (rerun it with -p dataset visa -p data_root <VisA root>).")
    parts = []
    for row in gains[gains["dataset"] == dataset].itertuples():
        parts.append(f"{row.metric}: ours {row.ours:.1f} vs implied {row.implied:.1f} "
                     f"({row.our_gain:+.1f} over {row.sota_row}, claimed {row.claimed_gain:+.1f})")
    random = bool(runs["random_init"].fillna(False).any()) if "random_init" in runs else False
    caveat = (" These runs use random weights, so the comparison says nothing about the claim." if random else
              " With the official weights this is a direct check of the claim.")
    return "; ".join(parts) + "." + caveat
