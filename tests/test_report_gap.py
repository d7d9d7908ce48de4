"""The STLM-vs-PatchCore gap table and its generated sentence."""

from __future__ import annotations

import pandas as pd

from stlm_core.report import baseline_gap, describe_gap


def _frame(values: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame.from_dict(values, orient="index", columns=["pixel_auroc", "pixel_aupro", "image_auroc"])


def test_gap_in_points_and_the_categories_behind_are_named():
    stlm = _frame({"bottle": (0.97, 0.92, 1.0), "tire": (0.71, 0.18, 0.61)})
    patchcore = _frame({"bottle": (0.98, 0.93, 1.0), "tire": (0.987, 0.941, 0.759)})
    gap = baseline_gap(stlm, patchcore)
    assert gap.loc["bottle", "pixel AUROC"] == -1.0 and gap.loc["tire", "AUPRO"] == -76.1
    assert gap.index[-1] == "mean (2 categories)"
    text = describe_gap(gap)
    assert "1 of 2 categories" in text and "tire (pixel AUROC -27.7, AUPRO -76.1, image AUROC -14.9)" in text
    assert "bottle" not in text  # 1 point behind: within the threshold
    assert "nowhere" in describe_gap(baseline_gap(stlm.loc[["bottle"]], patchcore))
