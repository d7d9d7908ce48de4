"""The reproduction scorecard: which runs may be compared with a paper number, and what every other row says."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from stlm_core.paper_results import load_paper_results
from stlm_core.runs import load_runs
from stlm_core.scorecard import (NEEDS_OFFICIAL, RANDOM_ONLY, REPRODUCED, SYNTHETIC_ONLY, UNKNOWN, scorecard,
                                 status_counts)

MVTEC = ["bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw", "tile",
         "toothbrush", "transistor", "wood", "zipper"]
OFFICIAL = json.dumps({"teacher": "sam_vit_h@" + "a" * 64, "student": "mobile_sam@" + "b" * 64}, sort_keys=True)
COUNTS = {"student_plain": 5, "student_denoise": 5, "mask_decoder": 4, "prompt_encoder": 1, "fa_head": 2, "total": 17}


def fake_runs(*, pixel_auroc: float, categories=MVTEC, dataset: str = "mvtec", profile: str = "paper",
              weights: str = OFFICIAL, synthetic: bool = False, random_init: bool = False) -> pd.DataFrame:
    """A ``load_runs``-shaped frame of finished STLM runs, one per category."""
    return pd.DataFrame([{
        "method": "stlm", "dataset": dataset, "category": c, "run_id": f"id{i}", "profile": profile, "map": "fa",
        "weights": weights, "random_init": random_init, "synthetic": synthetic, "pixel_auroc": pixel_auroc,
        "pixel_aupro": pixel_auroc, "image_auroc": pixel_auroc, "run_dir": f"/nowhere/{c}",
    } for i, c in enumerate(categories)])


def row(card: pd.DataFrame, item: str, claim_part: str) -> pd.Series:
    match = card[(card["item"] == item) & card["claim"].str.contains(claim_part, regex=False)]
    assert len(match) == 1, (item, claim_part, card[["item", "claim"]])
    return match.iloc[0]


def card_for(runs: pd.DataFrame, measured: dict | None = None) -> pd.DataFrame:
    return scorecard(runs, load_paper_results(), measured={"parameter_counts": COUNTS, **(measured or {})})


@pytest.mark.parametrize("flags", [{"synthetic": True}, {"dataset": "synthetic", "synthetic": True},
                                   {"dataset": "synthetic", "synthetic": True, "profile": "smoke"}])
def test_a_synthetic_run_is_never_reproduced(flags):
    """Even at the paper's exact value, with the paper profile and official weights, synthetic data is not a
    reproduction."""
    card = card_for(fake_runs(pixel_auroc=0.9826, **flags))
    auroc = row(card, "STLM-T1", "mean pixel AUROC on MVTec AD")
    assert auroc["status"] == SYNTHETIC_ONLY
    assert auroc["ours"] == "98.26 %" and "synthetic data" in auroc["produced by"]
    assert not card["status"].str.startswith(REPRODUCED).any()
    assert card.attrs["synthetic"]


def test_random_weights_are_never_reproduced():
    card = card_for(fake_runs(pixel_auroc=0.9826, random_init=True, weights=json.dumps({"teacher": "random-init"})))
    assert row(card, "STLM-T1", "mean pixel AUROC")["status"] == RANDOM_ONLY
    assert card.attrs["random_init"] and not card.attrs["synthetic"]


def test_paper_profile_run_with_official_weights_gets_a_numeric_difference():
    card = card_for(fake_runs(pixel_auroc=0.95))
    auroc = row(card, "STLM-T1", "mean pixel AUROC on MVTec AD")
    assert auroc["ours"] == "95.00 %"
    assert auroc["status"] == "differs by 3.26 points (ours lower)"
    assert "profile paper" in auroc["produced by"] and "official" in auroc["produced by"]
    assert not card.attrs["synthetic"] and not card.attrs["random_init"]


def test_close_and_complete_is_reproduced_but_a_subset_of_categories_is_not():
    assert row(card_for(fake_runs(pixel_auroc=0.98)), "STLM-T1", "mean pixel AUROC")["status"] == \
        f"{REPRODUCED} (-0.26 points)"
    subset = row(card_for(fake_runs(pixel_auroc=0.98, categories=MVTEC[:3])), "STLM-T1", "mean pixel AUROC")
    assert subset["status"] == "differs by 0.26 points (ours lower; mean over 3 of 15 categories)"


def test_other_profiles_on_real_data_need_the_official_weights():
    offline = json.dumps({"teacher": "efficientnet_lite0@" + "c" * 64})
    auroc = row(card_for(fake_runs(pixel_auroc=0.9, profile="cpu", weights=offline)), "STLM-T1", "mean pixel AUROC")
    assert auroc["status"] == NEEDS_OFFICIAL and auroc["ours"] == "90.00 %"


def test_unknown_paper_values_stay_unknown():
    card = card_for(fake_runs(pixel_auroc=0.95))
    image = row(card, "STLM-T1", "mean image AUROC")
    assert image["paper value"] == "n/a" and image["status"] == UNKNOWN
    assert image["ours"] == "95.00 %"  # our number is shown, but nothing is compared
    for item in ("STLM-T3", "STLM-T4"):
        assert (card[card["item"] == item]["status"] == UNKNOWN).all()


def test_parameter_rows_are_structurally_verified():
    card = scorecard(pd.DataFrame(), load_paper_results())  # the real count of the paper architecture
    params = row(card, "STLM-T2", "STLM: parameters for inference")
    assert params["paper value"] == "16.56 M"
    assert params["status"].startswith("structurally verified")
    assert "which parts the paper counts is unknown" in params["status"]
    assert "17.42M (17,422,809)" in params["ours"] and "15.55M without the FA head" in params["ours"]
    assert row(card, "STLM-T2", "(\"about\")")["status"].startswith("structurally verified")


def test_an_empty_runs_folder_gives_a_row_per_claim_that_says_so(tmp_path):
    card = card_for(load_runs(tmp_path))
    registry = load_paper_results()
    stated = registry[registry["kind"].isin(["paper", "paper_claim"])]
    assert len(card) > len(stated)  # every stated claim, plus unknown means and the Fig. 1 speed claim
    assert list(card.columns) == ["paper", "item", "claim", "paper value", "ours", "produced by", "status"]
    run_rows = card[card["produced by"].str.startswith("no finished")]
    assert len(run_rows) >= 10 and (run_rows["ours"] == "no runs").all()
    assert (card[card["item"] == "STLM-F1"]["status"] == "not measured in this build").all()
    assert not card.attrs["synthetic"] and not card.attrs["random_init"]
    assert status_counts(card).sum() == len(card)


def test_speed_claim_against_the_measured_ratio():
    measured = {"median_ms": {"stlm_paper_1024": 5000.0, "patchcore_wrn50_224": 1000.0},
                "ratios": {"patchcore_wrn50_224 / stlm_paper_1024": 0.2}, "device": "cpu", "threads": 1}
    card = card_for(pd.DataFrame(), measured)
    speed = row(card, "STLM-F1", "faster than PatchCore")
    assert speed["paper value"].startswith("8x faster")
    assert speed["status"].startswith("differs by a factor 45.0")
    assert row(card, "STLM-T2", "inference time")["status"].startswith("needs a GPU")
    fast = card_for(pd.DataFrame(), {**measured, "ratios": {"patchcore_wrn50_224 / stlm_paper_1024": 9.5}})
    assert row(fast, "STLM-F1", "faster than PatchCore")["status"] == REPRODUCED


def test_speedup_claims_sit_beside_the_measured_ratio_only_where_measured():
    from stlm_core.scorecard import NOT_MEASURED, speedup_claims

    table = speedup_claims({"ratios": {"patchcore_wrn50_224 / stlm_paper_1024": 0.5}})
    assert list(table.index) == ["PatchCore", "FOD", "SimpleNet", "RD++"]
    assert table.loc["PatchCore", "claimed time ratio"] == 9.0 and table.loc["RD++", "claimed time ratio"] == 1.5
    assert table.loc["PatchCore", "measured time ratio"] == "0.50"
    assert table.loc["FOD", "measured time ratio"] == NOT_MEASURED
    assert speedup_claims(None).loc["PatchCore", "measured as"] == NOT_MEASURED


def test_speed_ratios_are_cached_by_their_arguments(tmp_path, monkeypatch):
    from stlm_core.baselines import bench

    calls = []
    monkeypatch.setattr(bench, "bench_patchcore", lambda *a, **k: calls.append("pc") or {"latency": {"median_ms": 10.0}})
    first = bench.speed_ratios("smoke", paper_architecture=False, runs=1, warmup=0, cache_dir=tmp_path)
    again = bench.speed_ratios("smoke", paper_architecture=False, runs=1, warmup=0, cache_dir=tmp_path)
    assert again == first and calls == ["pc"]                       # the second call reads the file
    assert first["ratios"]["patchcore_lite0_64 / stlm_smoke_128"] == 10.0 / first["median_ms"]["stlm_smoke_128"]
    bench.speed_ratios("smoke", paper_architecture=False, runs=2, warmup=0, cache_dir=tmp_path)
    assert calls == ["pc", "pc"]                                     # other arguments: measured again


def test_contrast_sentences_name_the_fall_and_the_shrinking_contrast():
    import pandas as pd

    from stlm_core.report import contrast_sentences

    curves = pd.DataFrame({
        "variant": ["a"] * 3 + ["b"] * 3, "category": "c", "step": [10, 20, 30] * 2,
        "wo_fa.pixel_auroc": [0.7, 0.8, 0.6, 0.7, 0.8, 0.9],
        "wo_fa.inside": [0.5, 0.4, 0.1, 0.5, 0.5, 0.5], "wo_fa.outside": [0.1, 0.1, 0.05, 0.1, 0.1, 0.1]})
    lines = contrast_sentences(curves)
    assert len(lines) == 1 and lines[0].startswith("**a**")                # b never fell
    assert "80.0 % (step 20) to 60.0 % (step 30)" in lines[0] and "4.00x to 2.00x" in lines[0]
    assert "agree on the defects" in lines[0]
    assert contrast_sentences(curves.drop(columns="wo_fa.inside")) == []


def test_denoising_sentences_and_figure_read_the_probe_columns():
    import pandas as pd

    from stlm_core.plotting import denoising_figure
    from stlm_core.report import denoising_sentences

    curves = pd.DataFrame({
        "variant": ["copy"] * 2 + ["denoise"] * 2, "category": "c", "step": [10, 20] * 2,
        "probe.undone": [0.1, 0.05, 0.2, 0.6], "probe.streams_inside": [0.2, 0.1, 0.3, 0.6],
        "probe.streams_outside": [0.1, 0.1, 0.1, 0.1], "probe.reproduced": [1.0, 1.0, 0.9, 0.3]})
    copy, denoise = denoising_sentences(curves)
    assert copy.startswith("**copy**") and "10 % at step 10 and 5 % at step 20" in copy
    assert "2.0x at step 10 and 1.0x at step 20" in copy
    assert "20 % at step 10 and 60 % at step 20" in denoise and "6.0x at step 20" in denoise
    assert "kept by the plain stream 90 % at step 10 and 30 % at step 20" in denoise
    assert denoising_sentences(curves[curves["step"] == 20])[0].count("at step") == 3  # one evaluation: no repeat
    assert denoising_sentences(curves.drop(columns="probe.undone")) == []
    fig = denoising_figure(curves)
    assert [len(ax.get_lines()) for ax in fig.axes] == [3, 3, 3]  # two variants + the reference line per panel


def test_claims_use_the_profiles_own_recipe_only_and_the_longest_schedule():
    import pandas as pd

    from stlm_core.runs import recipe_runs

    def run(changed, steps, auroc, category="a"):
        return {"method": "stlm", "dataset": "mvtec", "category": category, "profile": "cpu", "changed": changed,
                "train_steps": steps, "pixel_auroc": auroc}

    runs = pd.DataFrame([run("", 120, 0.90), run("", 500, 0.95), run("teacher_pretrained", 500, 0.60),
                         run("", None, 0.97, category="b"), run("", 60, 0.80, category="b")])
    chosen = recipe_runs(runs).set_index("category")["pixel_auroc"]
    assert chosen.to_dict() == {"a": 0.95, "b": 0.97}      # the variant is never averaged in


def test_load_runs_names_the_fields_a_run_changed(tmp_path):
    from stlm_core.configs import changed_from_profile
    from stlm_core.stlm.config import StlmConfig

    assert changed_from_profile("stlm", StlmConfig.from_profile("cpu", seed=3, train_steps=7).to_dict()) == []
    variant = StlmConfig.from_profile("cpu", teacher_pretrained=False, use_fa=False).to_dict()
    assert changed_from_profile("stlm", variant) == ["teacher_pretrained", "use_fa"]
    assert changed_from_profile("unknown", {}) == ["?"]


def _card(statuses: dict[str, list[str]]):
    rows = [{"paper": "STLM", "item": item, "claim": f"claim {i}", "paper value": "1 %", "ours": "-",
             "produced by": "-", "status": status} for item, values in statuses.items()
            for i, status in enumerate(values)]
    return pd.DataFrame(rows, columns=["paper", "item", "claim", "paper value", "ours", "produced by", "status"])


def test_item_verdicts_aggregate_the_claims_of_each_item():
    from stlm_core.scorecard import DIFFERS, item_verdicts

    card = _card({"STLM-T1": [REPRODUCED, REPRODUCED], "STLM-T3": [REPRODUCED, UNKNOWN],
                  "STLM-T4": [REPRODUCED, f"{DIFFERS} -2.1 points"], "CS-T1": [NEEDS_OFFICIAL, UNKNOWN]})
    verdicts = item_verdicts(card).set_index("item")["verdict"]
    assert verdicts["STLM-T1"] == "reproduced"
    assert verdicts["STLM-T3"] == "partly reproduced"
    assert verdicts["STLM-T4"] == "not reproduced"
    assert verdicts["CS-T1"] == "not testable here: needs official weights"
    assert verdicts["STLM-F4"] == "shown (figure)" and verdicts["STLM-T5"] == "paper value unknown"


def test_the_verdict_table_lists_every_item_of_the_registry_with_its_label():
    from stlm_core.scorecard import item_verdicts, scorecard_table, verdict_table_html

    registry = load_paper_results()
    card = scorecard(pd.DataFrame(), registry, measured={"median_ms": {}, "ratios": {}})
    verdicts = item_verdicts(card)
    page = verdict_table_html(verdicts, {"stlm_main_results": ["stlm_main_results_mvtec"]})
    for item in set(registry["table"]):
        assert f">{item}<" in page
    assert 'href="stlm_main_results_mvtec.html"' in page and "stlm-verdict" in page
    table = scorecard_table(card).data
    assert table.count("<tr>") == len(card) + 1 and "<th>verdict</th>" in table
