"""AUPRO: hand-computed cases, property tests against a brute-force per-threshold reference, the official
MVTec algorithm, the fixed-threshold approximation, connectivity and invariances."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from stlm_core.metrics import MetricInputError, aupro, compute_metrics, label_regions, pro_curve

TOL = 1e-9


# ---- references, written plainly ------------------------------------------------------------------------------


def regions_of(masks, connectivity=8):
    structure = np.ones((3, 3)) if connectivity == 8 else np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    out = []
    for i, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=structure)
        out += [(i, labels == k) for k in range(1, count + 1)]
    return out


def trapezoid_with_limit(x, y, x_max):
    """The MVTec AD official ``trapezoid`` (interpolates at x_max when it is not a vertex)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    correction = 0.0
    if x_max not in x:
        ins = bisect.bisect(x, x_max)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def brute_force_aupro(masks, maps, limit=0.3, connectivity=8):
    """One threshold per distinct score: FPR and mean per-region overlap, then the official trapezoid."""
    regions = regions_of(masks, connectivity)
    normal = maps[masks == 0]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fprs.append(np.mean(normal >= t))
        pros.append(np.mean([np.mean(maps[i][region] >= t) for i, region in regions]))
    fprs.append(1.0)
    pros.append(1.0)
    return trapezoid_with_limit(fprs, pros, limit) / limit


def official_vectorised_aupro(masks, maps, limit=0.3):
    """The MVTec AD script's algorithm (argsort + cumulative sums), in float64 instead of its float32 FPRs."""
    fp_changes = np.zeros(maps.shape, np.float64)
    pro_changes = np.zeros(maps.shape, np.float64)
    n_ok = n_regions = 0
    for i, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), int))
        n_regions += count
        n_ok += np.sum(labels == 0)
        fp_changes[i, labels == 0] = 1
        for k in range(count):
            region = labels == k + 1
            pro_changes[i, region] = 1.0 / region.sum()
    order = np.argsort(maps.ravel())[::-1]
    scores = maps.ravel()[order]
    fprs = np.cumsum(fp_changes.ravel()[order]) / n_ok
    pros = np.cumsum(pro_changes.ravel()[order]) / n_regions
    keep = np.append(np.diff(scores) != 0, True)
    fprs = np.concatenate([[0.0], np.clip(fprs[keep], None, 1.0), [1.0]])
    pros = np.concatenate([[0.0], np.clip(pros[keep], None, 1.0), [1.0]])
    return trapezoid_with_limit(fprs, pros, limit) / limit


def rd4ad_style_aupro(masks, maps, limit=0.3, num_th=200):
    """The loop of RD4AD/DeSTSeg-style ``compute_pro`` (pandas and skimage replaced by numpy/scipy)."""
    regions = regions_of(masks, 8)
    lo, hi = maps.min(), maps.max()
    fprs, pros = [], []
    for th in np.arange(float(lo), float(hi), (float(hi) - float(lo)) / num_th):
        binary = maps > th
        pros.append(np.mean([binary[i][region].sum() / region.sum() for i, region in regions]))
        fprs.append(np.logical_and(masks == 0, binary).sum() / (masks == 0).sum())
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < limit
    if not keep.any() or fprs[keep].max() == 0:
        return float("nan")  # the original divides by zero (e.g. a perfect map has FPR 0 at every threshold)
    x, y = fprs[keep] / fprs[keep].max(), pros[keep]
    return abs(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


# ---- hand-computed cases ----------------------------------------------------------------------------------------


def row(values):
    return np.array(values, dtype=np.float64)[None, None, :]


def test_one_region_by_hand():
    maps, masks = row([0.9, 0.1, 0.8, 0.2, 0.05]), row([1, 1, 0, 0, 0])
    # curve (0,0) (0,.5) (1/3,.5) (2/3,.5) (2/3,1) (1,1): flat at 0.5 up to FPR 1/3
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(0.5, abs=TOL)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(2 / 3, abs=TOL)


def test_two_regions_of_different_sizes_are_averaged_per_region():
    maps = row([0.9, 0.5, 0.9, 0.3, 0.3, 0.1, 0.1])
    masks = row([1, 0, 1, 1, 1, 0, 0])  # regions {0} (1 px) and {2,3,4} (3 px)
    # at t=0.9 PRO = (1 + 1/3) / 2 = 2/3 (pixel-pooled TPR would be 1/2)
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(2 / 3, abs=TOL)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(8 / 9, abs=TOL)


def test_ties_between_normal_and_anomalous_scores_by_hand():
    maps, masks = row([0.5, 0.5, 0.5, 0.1]), row([1, 0, 0, 0])
    # one vertex (2/3, 1) from (0, 0): interpolated PRO at 0.3 is 0.45
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(0.5 * 0.45 * 0.3 / 0.3, abs=TOL)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(2 / 3, abs=TOL)


def test_region_touching_border_and_connectivity():
    masks = np.array([[[1, 1, 0], [0, 0, 1], [0, 0, 0]]], np.uint8)
    maps = np.array([[[0.0, 0.0, 0.5], [0.5, 0.5, 1.0], [0.5, 0.5, 0.5]]])
    # 8-connected: one region of 3 border pixels, one detected -> PRO 1/3 up to FPR 1
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(1 / 3, abs=TOL)
    # 4-connected: regions of 2 and 1 pixels, the single pixel detected -> PRO 1/2
    assert aupro(masks, maps, fpr_limit=0.3, connectivity=4) == pytest.approx(1 / 2, abs=TOL)
    assert brute_force_aupro(masks, maps, 0.3, connectivity=4) == pytest.approx(1 / 2, abs=TOL)


def test_regions_never_span_images():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, 3, 3] = masks[1, 0, 0] = 1  # would touch if the images were stacked
    region_of_pixel, sizes = label_regions(masks)
    assert sizes.tolist() == [1, 1] and region_of_pixel.tolist() == [0, 1]


def test_perfect_and_inverted_maps():
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[0, 2:6, 2:9] = 1
    masks[1, 10:16, 0:3] = 1  # touches the border
    maps = masks.astype(np.float32)
    assert aupro(masks, maps) == 1.0
    assert aupro(masks, 1 - maps) == 0.0
    # the fixed-grid code divides by its largest FPR below the limit, which is 0 for a perfect map
    assert np.isnan(aupro(masks, maps, method="thresholds"))


# ---- property tests ---------------------------------------------------------------------------------------------


@st.composite
def small_case(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(2, 7))
    masks = draw(arrays(np.uint8, (n, h, w), elements=st.integers(0, 1)))
    levels = draw(st.integers(2, 12))  # few levels: many ties
    maps = draw(arrays(np.float64, (n, h, w), elements=st.integers(0, levels).map(float)))
    return maps, masks


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=small_case(), limit=st.sampled_from([0.3, 1.0, 0.05, 0.5, 1 / 3]))
def test_exact_aupro_equals_brute_force(case, limit):
    maps, masks = case
    if masks.all() or not masks.any():
        with pytest.raises(MetricInputError):
            aupro(masks, maps, fpr_limit=limit)
        return
    expected = brute_force_aupro(masks, maps, limit)
    assert abs(aupro(masks, maps, fpr_limit=limit) - expected) < TOL
    fpr, pro = pro_curve(masks, maps, fpr_limit=limit)
    assert abs(np.trapezoid(pro, fpr) / limit - expected) < TOL


@settings(max_examples=60, deadline=None)
@given(case=small_case())
def test_aupro_invariant_to_monotone_transforms(case):
    maps, masks = case
    if masks.all() or not masks.any():
        return
    reference = aupro(masks, maps)
    for transformed in (np.exp(maps / 3.0), 5.0 * maps - 2.0, maps**3 + maps):  # strictly increasing
        assert abs(aupro(masks, transformed) - reference) < TOL
        assert abs(aupro(masks, transformed.astype(np.float32)) - reference) < TOL


@settings(max_examples=25, deadline=None)
@given(case=small_case(), dtype=st.sampled_from([np.float64, np.float32]))
def test_threshold_approximation_equals_reference_loop(case, dtype):
    maps, masks = case
    maps = maps.astype(dtype)  # float32: grid thresholds (float64) are compared exactly with float32 scores
    if masks.all() or not masks.any() or maps.min() == maps.max():
        return
    expected = rd4ad_style_aupro(masks, maps)
    got = aupro(masks, maps, method="thresholds", num_thresholds=200)
    assert (np.isnan(got) and np.isnan(expected)) or abs(got - expected) < TOL


def test_exact_aupro_equals_official_algorithm_on_blobs():
    rng = np.random.default_rng(0)
    n, size = 6, 64
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(4):  # 4 anomalous images with blobs of varied size, some on the border
        for _ in range(3):
            r, c, rad = rng.integers(0, size), rng.integers(0, size), rng.integers(1, 10)
            yy, xx = np.ogrid[:size, :size]
            masks[i][(yy - r) ** 2 + (xx - c) ** 2 <= rad**2] = 1
    maps = ndimage.gaussian_filter(masks.astype(np.float32), (0, 3, 3)) + 0.2 * rng.random(masks.shape)
    maps = maps.astype(np.float32)
    for limit in (0.3, 0.01, 1.0):
        assert abs(aupro(masks, maps, fpr_limit=limit) - official_vectorised_aupro(masks, maps, limit)) < TOL
    out = compute_metrics(masks=masks, maps=maps, aupro_thresholds=200)
    assert abs(out["pixel_aupro"] - official_vectorised_aupro(masks, maps)) < TOL
    assert abs(out["pixel_aupro_thresholds"] - rd4ad_style_aupro(masks, maps)) < TOL


def test_aupro_argument_errors():
    maps, masks = row([0.9, 0.1, 0.8]), row([1, 0, 0])
    for limit in (0.0, -0.1, 1.5):
        with pytest.raises(MetricInputError, match="fpr_limit"):
            aupro(masks, maps, fpr_limit=limit)
    with pytest.raises(MetricInputError, match="method"):
        aupro(masks, maps, method="grid")
    with pytest.raises(MetricInputError, match="connectivity"):
        aupro(masks, maps, connectivity=6)


def test_count_at_most_is_exact_for_float32_scores_and_float64_keys():
    from stlm_core.metrics.pro import _count_at_most

    rng = np.random.default_rng(0)
    scores = np.sort(rng.integers(0, 50, 2000).astype(np.float32) / np.float32(7))  # ties, inexact values
    keys = np.r_[scores[::37].astype(np.float64), np.nextafter(scores[::37].astype(np.float64), np.inf),
                 np.nextafter(scores[::37].astype(np.float64), -np.inf), rng.uniform(-1, 8, 50)]
    expected = [(scores.astype(np.float64) <= k).sum() for k in keys]
    assert _count_at_most(scores, keys).tolist() == expected
