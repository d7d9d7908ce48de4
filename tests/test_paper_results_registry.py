"""Paper-results registry: schema, provenance of every cell, unknown = null, paper-vs-reproduced joins."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from stlm_core.errors import StlmError
from stlm_core.paper_results import (
    FIELDS,
    KINDS,
    compare_with_paper,
    format_value,
    load_paper_results,
    render_comparison,
)


def test_registry_loads_and_every_cell_has_a_source():
    reg = load_paper_results()
    assert list(reg.columns) == list(FIELDS)
    assert len(reg) > 50
    assert reg["source"].str.strip().astype(bool).all()
    assert set(reg["kind"]) <= KINDS
    assert not reg.duplicated(["paper", "table", "dataset", "category", "row", "column"]).any()
    # unknown cells are null, known ones are numbers
    assert reg.loc[reg.kind == "unknown", "value"].isna().all()
    assert reg.loc[reg.kind != "unknown", "value"].notna().all()


def test_registry_holds_the_stated_stlm_numbers():
    cell = load_paper_results(paper="stlm", table="STLM-T1", dataset="mvtec", category="mean", row="STLM")
    values = dict(zip(cell["column"], cell["value"]))
    assert values["pixel_auroc"] == 98.26 and values["pixel_aupro"] == 94.92
    assert math.isnan(values["image_auroc"])  # not known: never guessed
    per_category = load_paper_results(paper="stlm", table="STLM-T1", row="STLM")
    assert per_category[per_category.category != "mean"]["value"].isna().all()


def test_bad_registry_files_are_rejected(tmp_path):
    bad = tmp_path / "r.yaml"
    base = ("{paper: stlm, table: T, dataset: d, category: c, row: r, column: x, value: %s, unit: '%%', "
            "kind: %s, source: %s}")
    for value, kind, source, match in [("1.0", "paper", "''", "needs a source"),
                                       ("null", "paper", "s", "null value must have kind 'unknown'"),
                                       ("1.0", "unknown", "s", "must have value null"),
                                       ("'x'", "paper", "s", "number or null"),
                                       ("1.0", "guess", "s", "kind")]:
        bad.write_text("- " + base % (value, kind, source) + "\n")
        with pytest.raises(StlmError, match=match):
            load_paper_results(bad)
    bad.write_text("- " + base % ("1", "paper", "s") + "\n- " + base % ("2", "paper", "s") + "\n")
    with pytest.raises(StlmError, match="duplicate"):
        load_paper_results(bad)


def test_compare_with_paper_scales_fractions_and_computes_delta():
    reproduced = pd.DataFrame({"dataset": ["mvtec"] * 2, "category": ["bottle", "cable"],
                               "pixel_auroc": [0.97, 0.95], "pixel_aupro": [0.90, 0.80]})
    table = compare_with_paper(reproduced, paper="stlm", table="STLM-T1", row="STLM")
    mean = table[(table.category == "mean") & (table.column == "pixel_auroc")].iloc[0]
    assert mean.paper_value == 98.26
    assert mean.reproduced == pytest.approx(96.0) and mean.delta == pytest.approx(96.0 - 98.26)
    assert mean.n_categories == 2
    bottle = table[(table.category == "bottle") & (table.column == "pixel_auroc")].iloc[0]
    assert bottle.reproduced == pytest.approx(97.0) and math.isnan(bottle.paper_value) and math.isnan(bottle.delta)
    rendered = render_comparison(table)
    assert rendered.loc[("mvtec", "bottle"), ("pixel_auroc", "paper")] == "n/a"
    mean_row = ("mvtec", "mean (reproduced: 2 of 15 categories)")  # a partial mean says so
    assert rendered.loc[mean_row, ("pixel_auroc", "delta")] == "-2.26"
    assert rendered.index[-1] == mean_row
    assert rendered.loc[("mvtec", "zipper"), ("pixel_auroc", "reproduced")] == "n/a"  # not run yet


def test_compare_rejects_ambiguous_reproduced_rows():
    reproduced = pd.DataFrame({"dataset": ["mvtec"] * 2, "category": ["bottle"] * 2, "pixel_auroc": [0.9, 0.8]})
    with pytest.raises(StlmError, match="several rows"):
        compare_with_paper(reproduced, paper="stlm", table="STLM-T1", row="STLM")


def test_format_value():
    assert format_value(None) == "n/a" and format_value(float("nan")) == "n/a"
    assert format_value(98.256) == "98.26" and format_value(1, digits=0) == "1"


def test_claimed_gains_take_the_best_known_baseline_and_score_ours_against_it():
    from stlm_core.paper_results import claimed_gains

    def cell(row, column, value, kind):
        return {"paper": "clipsam", "table": "CS-T1", "dataset": "visa", "category": "mean", "row": row,
                "column": column, "value": value, "unit": "%", "kind": kind, "source": "s", "note": ""}

    registry = pd.DataFrame([
        cell("ours", "pixel_ap_gain_over_sota", 5.0, "paper_claim"),
        cell("A", "pixel_ap", 20.0, "baseline"),
        cell("B", "pixel_ap", 30.0, "baseline_unverified"),
        cell("C", "pixel_ap", float("nan"), "unknown"),
        cell("D", "pixel_f1_max", 90.0, "baseline"),          # another metric: not a candidate
    ])
    runs = pd.DataFrame({"dataset": ["visa", "visa", "mvtec"], "pixel_ap": [0.40, 0.30, 0.99]})
    gains = claimed_gains(runs, registry=registry)
    assert len(gains) == 1
    row = gains.iloc[0]
    assert row["sota_row"] == "B" and row["sota"] == 30.0 and row["implied"] == 35.0
    assert row["n_categories"] == 2 and row["ours"] == pytest.approx(35.0) and row["our_gain"] == pytest.approx(5.0)
    # no run of the claim's dataset: ours stays unknown
    assert math.isnan(claimed_gains(runs[runs["dataset"] == "mvtec"], registry=registry).iloc[0]["ours"])


def test_rows_beside_ours_lists_the_papers_rows_and_appends_the_measured_mean():
    from stlm_core.paper_results import rows_beside_ours

    def cell(row, column, value, kind, dataset="visa"):
        return {"paper": "clipsam", "table": "CS-T1", "dataset": dataset, "category": "mean", "row": row,
                "column": column, "value": value, "unit": "%", "kind": kind, "source": "s", "note": ""}

    registry = pd.DataFrame([
        cell("M (ours)", "pixel_ap", float("nan"), "unknown"),
        cell("M (ours)", "pixel_ap_gain_over_sota", 7.7, "paper_claim"),     # left out: a claim, not a cell
        cell("A", "pixel_ap", 20.0, "baseline"),
        cell("B", "pixel_ap", 30.0, "baseline", dataset="mvtec"),           # another dataset
    ])
    runs = pd.DataFrame({"dataset": ["visa", "visa", "mvtec"], "pixel_ap": [0.2, 0.4, 0.9]})
    table = rows_beside_ours(runs, paper="clipsam", table="CS-T1", dataset="visa", registry=registry)
    assert list(table.index) == ["M (paper)", "A", "ours (these runs)"]
    assert list(table.columns) == ["pixel_ap", "kind", "categories"]
    assert math.isnan(table.loc["M (paper)", "pixel_ap"]) and table.loc["A", "pixel_ap"] == 20.0
    assert table.loc["ours (these runs)", "pixel_ap"] == pytest.approx(30.0)
    assert table.loc["ours (these runs)", "categories"] == 2
    assert rows_beside_ours(runs, paper="clipsam", table="CS-T1", dataset="dagm", registry=registry).empty


def test_a_mean_over_every_category_of_the_table_is_labelled_plainly(tmp_path):
    cell = ("- {paper: stlm, table: T, dataset: d, category: %s, row: STLM, column: pixel_auroc, value: %s, "
            "unit: '%%', kind: paper, source: s}\n")
    path = tmp_path / "registry.yaml"
    path.write_text(cell % ("a", "90.0") + cell % ("b", "80.0") + cell % ("mean", "85.0"))
    registry = load_paper_results(path)
    both = pd.DataFrame({"dataset": ["d", "d"], "category": ["a", "b"], "pixel_auroc": [0.9, 0.7]})
    rendered = render_comparison(compare_with_paper(both, paper="stlm", table="T", row="STLM", registry=registry))
    assert rendered.loc[("d", "mean"), ("pixel_auroc", "delta")] == "-5.00"
    one = both.iloc[:1]
    rendered = render_comparison(compare_with_paper(one, paper="stlm", table="T", row="STLM", registry=registry))
    assert ("d", "mean (reproduced: 1 of 2 categories)") in rendered.index
