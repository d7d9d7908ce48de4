"""PPG on constructed CLIP maps (random weights cannot show where prompts go)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.clipsam.ppg import (
    PromptRules, extreme_region, feature_similarity, generate_prompts, point_spacing, ring_region, select_spaced,
)


def gaussian(shape, centre, sigma):
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-(((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2)))


def two_blob_map(shape=(200, 300)):
    """Map in [0, 1] with blobs at (x=70, y=60) (peak 1.0) and (x=220, y=140) (peak 0.9)."""
    return np.maximum(gaussian(shape, (70, 60), 14), 0.9 * gaussian(shape, (220, 140), 10)).astype(np.float32)


def distance_similarity(point):
    """Similarity = minus the distance to ``point``: the least similar ring pixels are the farthest from it."""

    def fn(region):
        h, w = region.shape
        ys, xs = np.mgrid[0:h, 0:w]
        return -np.hypot(xs - point[0], ys - point[1])

    return fn


def naive_greedy(scores, valid, k, spacing):
    order = np.argsort(-np.where(valid, scores, -np.inf), axis=None, kind="stable")
    chosen = []
    for flat in order:
        y, x = divmod(int(flat), scores.shape[1])
        if not valid[y, x]:
            break
        if all((x - cx) ** 2 + (y - cy) ** 2 >= spacing**2 for cx, cy in chosen):
            chosen.append((x, y))
            if len(chosen) == k:
                break
    return np.array(chosen, dtype=np.float32).reshape(-1, 2)


@pytest.mark.parametrize("seed", range(5))
def test_select_spaced_matches_greedy_scan(seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((23, 31))
    valid = rng.random((23, 31)) > 0.3
    got = select_spaced(scores, valid, k=5, spacing=6.0)
    want = naive_greedy(scores, valid, 5, 6.0)
    np.testing.assert_array_equal(got, want)


def test_positives_inside_blobs_spaced_and_negatives_on_ring():
    cfg = ClipSamConfig.from_profile("paper", tau=0.5, k_positive=3, k_negative=3, min_spacing_px=15, ring_kernel=25)
    m = two_blob_map()
    s_a = extreme_region(m, cfg.tau)
    prompts = generate_prompts(m, distance_similarity((70, 60)), PromptRules.from_config(cfg))
    assert len(prompts) == 2                                    # one per connected component
    # highest peak first: the component of the first blob
    first = prompts[0]
    assert first.region[60, 70] and not first.region[140, 220]
    spacing = point_spacing(m.shape, cfg.min_spacing_px, cfg.spacing_cap_fraction)
    assert spacing == 15
    for p in prompts:
        pos, neg = p.positives, p.negatives
        assert len(pos) >= 1 and len(neg) >= 1
        xs, ys = pos[:, 0].astype(int), pos[:, 1].astype(int)
        assert p.region[ys, xs].all() and s_a[ys, xs].all()     # positives inside the blob
        for pts in (pos, neg):
            d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
            assert (d[~np.eye(len(pts), dtype=bool)] >= spacing).all()
        xn, yn = neg[:, 0].astype(int), neg[:, 1].astype(int)
        assert ((xn >= 0) & (xn < m.shape[1]) & (yn >= 0) & (yn < m.shape[0])).all()
        assert p.ring[yn, xn].all() and not s_a[yn, xn].any()   # negatives on the ring, outside S_a
    # the strongest positive is the blob's peak
    np.testing.assert_array_equal(first.positives[0], [70, 60])
    # negatives of the first blob = least similar ring pixels = farthest from (70, 60) on its ring
    ring = prompts[0].ring
    ys, xs = np.nonzero(ring)
    far = np.hypot(xs - 70, ys - 60).max()
    assert np.hypot(*(prompts[0].negatives[0] - [70, 60])) == pytest.approx(far)


def test_spacing_is_capped_by_image_size_and_default_400():
    assert point_spacing((1000, 1500), 400, 0.25) == 250
    assert point_spacing((2000, 3000), 400, 0.25) == 400


def test_ring_is_outside_region_and_within_kernel():
    s_a = np.zeros((60, 60), bool)
    s_a[25:35, 25:35] = True
    ring = ring_region(s_a, s_a, kernel=7, shape="ellipse")
    assert ring.any() and not (ring & s_a).any()
    ys, xs = np.nonzero(ring)
    assert xs.min() >= 25 - 3 and xs.max() <= 34 + 3 and ys.min() >= 22 and ys.max() <= 37


def test_ring_at_border_stays_in_image():
    cfg = ClipSamConfig.from_profile("paper", min_spacing_px=5)
    m = gaussian((80, 80), (0, 0), 8).astype(np.float32)          # blob in the corner
    (p,) = generate_prompts(m, distance_similarity((0, 0)), PromptRules.from_config(cfg))
    assert p.ring.shape == m.shape
    assert (p.negatives >= 0).all() and (p.negatives[:, 0] < 80).all() and (p.negatives[:, 1] < 80).all()


def test_empty_extreme_region_gives_no_prompts():
    cfg = ClipSamConfig.from_profile("paper")
    m = np.full((50, 50), 0.2, np.float32)
    assert generate_prompts(m, distance_similarity((0, 0)), PromptRules.from_config(cfg)) == []


def test_global_region_mode_gives_one_prompt_set():
    cfg = ClipSamConfig.from_profile("paper", per_component=False, min_spacing_px=15)
    prompts = generate_prompts(two_blob_map(), distance_similarity((70, 60)), PromptRules.from_config(cfg))
    assert len(prompts) == 1 and len(prompts[0].positives) == 3


def test_feature_similarity_prototype_and_max():
    feats = torch.zeros(4, 5, 5)
    feats[0] = 1.0                      # background direction
    feats[0, 1:3, 1:3] = 0.0
    feats[1, 1:3, 1:3] = 1.0            # anomaly direction in a 2x2 patch
    support = torch.zeros(5, 5)
    support[1:3, 1:3] = 1
    for mode in ("prototype", "max"):
        sim = feature_similarity(feats, support, mode)
        assert sim[1, 1] == pytest.approx(1.0) and sim[4, 4] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        feature_similarity(feats, support, "nope")
