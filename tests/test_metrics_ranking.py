"""Pixel/image AUROC, AP and F1-max against scikit-learn, input validation, argument order (ground truth
first, as in scikit-learn) and compute_metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from stlm_core.errors import StlmError
from stlm_core.metrics import (
    METRIC_KEYS,
    MetricInputError,
    aupro,
    auroc,
    average_precision,
    compute_metrics,
    f1_max,
    pixel_ap,
    pixel_auroc,
    pixel_f1_max,
    pro_curve,
)

TOL = 1e-9


def sk_f1_max(y, s) -> float:
    precision, recall, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    return float(np.nanmax(f1))


def random_case(rng, n, h, w, levels=None, dtype=np.float32, p_pos=0.1):
    masks = (rng.random((n, h, w)) < p_pos).astype(np.uint8)
    masks[0, 0, 0], masks[-1, -1, -1] = 1, 0  # both classes present
    if levels is None:
        maps = rng.random((n, h, w)).astype(dtype)
    else:  # quantised scores: many ties, also between positives and negatives
        maps = rng.integers(0, levels, (n, h, w)).astype(dtype)
    maps = maps + masks * rng.random() * 0.5  # some signal
    return maps.astype(dtype), masks


@pytest.mark.parametrize("levels", [None, 2, 7, 50])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_metrics_equal_sklearn(levels, dtype):
    rng = np.random.default_rng(0 if levels is None else levels)
    for _ in range(3):
        n, h, w = rng.integers(1, 5), rng.integers(2, 40), rng.integers(2, 40)
        maps, masks = random_case(rng, n, h, w, levels, dtype, p_pos=rng.uniform(0.01, 0.6))
        y, s = masks.ravel(), maps.ravel()
        assert abs(pixel_auroc(masks, maps) - roc_auc_score(y, s)) < TOL
        assert abs(pixel_ap(masks, maps) - average_precision_score(y, s)) < TOL
        assert abs(pixel_f1_max(masks, maps) - sk_f1_max(y, s)) < TOL


def test_pixel_metrics_medium_size_equal_sklearn():
    rng = np.random.default_rng(1)
    maps, masks = random_case(rng, 6, 128, 128, levels=None, p_pos=0.03)
    maps = np.round(maps, 3)  # float32 with ties
    y, s = masks.ravel(), maps.ravel()
    assert abs(pixel_auroc(masks, maps) - roc_auc_score(y, s)) < TOL
    assert abs(pixel_ap(masks, maps) - average_precision_score(y, s)) < TOL
    assert abs(pixel_f1_max(masks, maps) - sk_f1_max(y, s)) < TOL


@pytest.mark.parametrize("seed", range(5))
def test_image_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, n)
    labels[0], labels[1] = 0, 1
    scores = rng.integers(0, 6, n) + labels * rng.random()  # ties
    assert abs(auroc(labels, scores) - roc_auc_score(labels, scores)) < TOL
    assert abs(average_precision(labels, scores) - average_precision_score(labels, scores)) < TOL
    assert abs(f1_max(labels, scores) - sk_f1_max(labels, scores)) < TOL


def test_integer_and_bool_masks_and_torch_inputs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    maps, masks = random_case(rng, 2, 16, 16, levels=9)
    ref = pixel_auroc(masks, maps)
    assert pixel_auroc(torch.from_numpy(masks).bool(), torch.from_numpy(maps)) == ref
    assert pixel_auroc(masks, torch.from_numpy(maps).half()) == pytest.approx(ref, abs=1e-2)
    int_maps = np.floor(maps).astype(np.int64)  # integer scores, float mask
    assert abs(pixel_auroc(masks.astype(np.float32), int_maps) - roc_auc_score(masks.ravel(), int_maps.ravel())) < TOL
    assert pixel_auroc(masks[0], maps[0]) == pytest.approx(roc_auc_score(masks[0].ravel(), maps[0].ravel()))


def test_perfect_and_inverted_scores():
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 2:4, 2:5] = 1
    maps = masks.astype(np.float32)
    assert pixel_auroc(masks, maps) == 1.0 and pixel_ap(masks, maps) == 1.0 and pixel_f1_max(masks, maps) == 1.0
    assert pixel_auroc(masks, 1 - maps) == 0.0
    assert pixel_auroc(masks, np.zeros_like(maps)) == 0.5  # all tied


@pytest.mark.parametrize(
    "masks, maps, match",
    [
        (np.zeros((2, 4, 5)), np.zeros((2, 4, 4)), "same shape"),
        (np.eye(4)[None], np.full((1, 4, 4), np.nan), "NaN or infinite"),
        (np.eye(4)[None], np.r_[np.zeros(15), np.inf].reshape(1, 4, 4), "NaN or infinite"),
        (2 * np.eye(4)[None].astype(np.uint8), np.zeros((1, 4, 4)), "binary"),
        (0.5 * np.eye(4)[None], np.zeros((1, 4, 4)), "binary"),
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), "no positive"),
        (np.ones((1, 4, 4)), np.zeros((1, 4, 4)), "no negative"),
        (np.zeros((2, 2, 4, 4)), np.zeros((2, 2, 4, 4)), r"\(N, H, W\)"),
    ],
)
def test_invalid_pixel_inputs_raise_clear_errors(masks, maps, match):
    with pytest.raises(MetricInputError, match=match) as info:
        pixel_auroc(masks, maps)
    assert isinstance(info.value, ValueError) and isinstance(info.value, StlmError)


def test_invalid_image_inputs():
    with pytest.raises(MetricInputError, match="same length"):
        auroc(np.array([0, 1]), np.zeros(3))
    with pytest.raises(MetricInputError, match="no positive"):
        auroc(np.zeros(3), np.zeros(3))
    with pytest.raises(MetricInputError, match="NaN"):
        auroc(np.array([0, 1]), np.array([0.0, np.nan]))


def test_compute_metrics_defaults_match_sklearn():
    rng = np.random.default_rng(7)
    maps, masks = random_case(rng, 10, 24, 24, levels=None, p_pos=0.0)
    masks[:] = 0
    masks[:6, 5:9, 5:12] = 1  # images 0-5 anomalous, 6-9 normal
    maps = maps + masks * 0.3
    timings: dict = {}
    out = compute_metrics(masks=masks, maps=maps, aupro_thresholds=200, timings=timings)
    assert set(out) == set(METRIC_KEYS) | {"pixel_aupro_thresholds"}
    assert all(0.0 <= v <= 1.0 for v in out.values())
    y, s = masks.ravel(), maps.ravel()
    assert abs(out["pixel_auroc"] - roc_auc_score(y, s)) < TOL
    assert abs(out["pixel_ap"] - average_precision_score(y, s)) < TOL
    assert abs(out["pixel_f1_max"] - sk_f1_max(y, s)) < TOL
    labels, scores = masks.reshape(10, -1).max(1), maps.reshape(10, -1).max(1)
    assert abs(out["image_auroc"] - roc_auc_score(labels, scores)) < TOL
    assert abs(out["image_ap"] - average_precision_score(labels, scores)) < TOL
    assert abs(out["image_f1_max"] - sk_f1_max(labels, scores)) < TOL
    assert timings["total_s"] >= timings["pixel_sort_s"] >= 0.0
    # explicit image scores and labels are used as given
    flipped = compute_metrics(masks=masks, maps=maps, labels=labels, image_scores=-scores)
    assert abs(flipped["image_auroc"] - (1 - out["image_auroc"])) < TOL


def test_compute_metrics_single_class_images_give_none():
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[:, 2:4, 2:4] = 1  # every image anomalous: image metrics are undefined
    maps = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    with pytest.warns(UserWarning, match="image metrics not computed"):
        out = compute_metrics(masks=masks, maps=maps)
    assert out["image_auroc"] is None and out["image_ap"] is None and out["image_f1_max"] is None
    assert out["pixel_auroc"] is not None


def test_pixel_metrics_invariant_to_monotone_transforms():
    rng = np.random.default_rng(11)
    maps, masks = random_case(rng, 3, 20, 20, levels=12, dtype=np.float64)
    reference = (pixel_auroc(masks, maps), pixel_ap(masks, maps), pixel_f1_max(masks, maps))
    for transformed in (np.exp(maps), 3.0 * maps - 7.0, np.arctan(maps)):  # strictly increasing
        got = (pixel_auroc(masks, transformed), pixel_ap(masks, transformed), pixel_f1_max(masks, transformed))
        assert np.allclose(got, reference, rtol=0, atol=TOL)


def test_f1_max_threshold_attains_f1_max():
    from stlm_core.metrics.ranking import f1_max_from_ranking, f1_max_threshold, rank_pixels

    rng = np.random.default_rng(5)
    maps, masks = random_case(rng, 2, 30, 30, levels=20)
    ranking = rank_pixels(masks, maps)
    t = f1_max_threshold(ranking)
    pred, y = maps.ravel() >= t, masks.ravel().astype(bool)
    tp = np.sum(pred & y)
    assert 2 * tp / (pred.sum() + y.sum()) == pytest.approx(f1_max_from_ranking(ranking), abs=TOL)


# ---- argument order: ground truth first, as in scikit-learn ----------------------------------------------------


def test_argument_order_is_ground_truth_first():
    masks = np.zeros((2, 6, 6), np.uint8)
    masks[0, 1:3, 2:5] = 1
    maps = np.where(masks == 1, 0.9, 0.1) + np.linspace(0, 0.05, masks.size).reshape(masks.shape)
    assert pixel_auroc(masks, masks.astype(np.float32)) == 1.0
    assert pixel_auroc(masks, 1 - masks.astype(np.float32)) == 0.0
    assert pixel_auroc(masks, maps) == 1.0 and pixel_auroc(masks, -maps) == 0.0
    y_true, y_score = [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]
    assert auroc(y_true, y_score) == roc_auc_score(y_true, y_score) == 1.0
    y_true, y_score = [0, 1, 0, 1, 1], [0.3, 0.2, 0.7, 0.9, 0.3]  # not symmetric in its arguments
    assert auroc(y_true, y_score) == pytest.approx(roc_auc_score(y_true, y_score), abs=TOL)
    assert average_precision(y_true, y_score) == pytest.approx(average_precision_score(y_true, y_score), abs=TOL)
    out = compute_metrics(masks=masks, maps=maps, labels=[1, 0], image_scores=[0.2, 0.1])
    assert out["pixel_auroc"] == 1.0 and out["image_auroc"] == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]),
        lambda: average_precision([0.1, 0.8], [0, 1]),
        lambda: f1_max(np.array([0.3, 0.7]), np.array([False, True])),
        lambda: pixel_auroc(np.full((1, 2, 2), 0.5), np.eye(2)[None]),
        lambda: pixel_ap(np.full((1, 2, 2), 0.5), np.eye(2)[None]),
        lambda: pixel_f1_max(np.full((1, 2, 2), 0.5), np.eye(2)[None]),
        lambda: aupro(np.full((1, 2, 2), 0.5), np.eye(2)[None]),
        lambda: pro_curve(np.full((1, 2, 2), 0.5), np.eye(2)[None]),
    ],
)
def test_swapped_arguments_raise_and_say_ground_truth_first(call):
    with pytest.raises(MetricInputError, match=r"arguments swapped\? ground truth first, as in scikit-learn"):
        call()


def test_non_binary_ground_truth_without_binary_scores_has_no_swap_hint():
    with pytest.raises(MetricInputError, match="binary") as info:
        auroc([0.1, 0.8], [0.3, 0.4])
    assert "swapped" not in str(info.value)


def test_compute_metrics_and_options_are_keyword_only():
    masks = np.eye(4)[None]
    maps = np.eye(4)[None] * 0.5
    with pytest.raises(TypeError):
        compute_metrics(masks, maps)  # type: ignore[misc]
    with pytest.raises(TypeError):
        aupro(masks, maps, 0.3)  # type: ignore[misc]
    with pytest.raises(TypeError):
        pro_curve(masks, maps, 0.3)  # type: ignore[misc]
