"""PatchCore baseline: coreset, localisation on synthetic defects, determinism, and the real bottle sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from stlm_core.baselines.patchcore import PatchCore, WideResNet50Extractor, gaussian_blur, greedy_coreset

torch.set_num_threads(1)


def _texture(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A regular stripe texture with a random phase plus mild noise (uint8 RGB)."""
    yy, xx = np.mgrid[:size, :size]
    phase = rng.uniform(0, 2 * np.pi)
    base = 128 + 60 * np.sin(2 * np.pi * (xx + yy) / 8 + phase)
    image = base[..., None] * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 6, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _with_defect(image: np.ndarray, top: int, left: int, side: int = 16) -> np.ndarray:
    out = image.copy()
    out[top:top + side, left:left + side] = (30, 200, 40)
    return out


@pytest.fixture(scope="module")
def textures():
    rng = np.random.default_rng(0)
    train = np.stack([_texture(rng) for _ in range(8)])
    test = np.stack([_with_defect(_texture(rng), 8, 8), _with_defect(_texture(rng), 36, 32)])
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 8:24, 8:24] = 1
    masks[1, 36:52, 32:48] = 1
    return train, test, masks


def test_defect_scores_higher_than_background(textures):
    train, test, masks = textures
    model = PatchCore(backbone="efficientnet_lite0", image_size=64, coreset_fraction=0.25, seed=0).fit(train)
    maps, scores = model.predict(test)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32 and scores.shape == (2,)
    for anomaly_map, mask in zip(maps, masks):
        assert anomaly_map[mask == 1].mean() > 1.5 * anomaly_map[mask == 0].mean()
        near_defect = binary_dilation(mask, iterations=4)  # the blur and 8 px patches smear the peak a bit
        assert near_defect[np.unravel_index(anomaly_map.argmax(), anomaly_map.shape)]
    _, normal_scores = model.predict(train[:2])
    assert scores.min() > normal_scores.max()
    np.testing.assert_allclose(scores, maps.reshape(2, -1).max(1))


def _coverage_radius(points: torch.Tensor, chosen: torch.Tensor) -> float:
    return float(torch.cdist(points, points[chosen]).min(dim=1).values.max())


def test_coreset_indices_and_k_center_property():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(20, 32, generator=gen) * 10
    points = centers[torch.randint(20, (3000,), generator=gen)] + torch.randn(3000, 32, generator=gen)
    points[:5] += 60  # a few far outliers a good cover must include
    for projection_dim in (None, 8):
        chosen = greedy_coreset(points, 40, projection_dim=projection_dim, seed=1)
        assert chosen.shape == (40,) and chosen.dtype == torch.long
        assert len(set(chosen.tolist())) == 40 and 0 <= int(chosen.min()) and int(chosen.max()) < 3000
        radius = _coverage_radius(points, chosen)
        random_radii = [_coverage_radius(points, torch.randperm(3000, generator=gen)[:40]) for _ in range(5)]
        assert radius < min(random_radii)
    # exact greedy (no projection): each new center is the farthest point from the previous ones, so the
    # selection distances never increase and bound the final coverage radius from above
    chosen = greedy_coreset(points, 40, projection_dim=None, seed=1)
    gaps = [float(torch.cdist(points[chosen[k:k + 1]], points[chosen[:k]]).min()) for k in range(1, 40)]
    assert all(b <= a + 1e-3 for a, b in zip(gaps, gaps[1:]))
    assert _coverage_radius(points, chosen) <= gaps[-1] + 1e-3
    assert torch.equal(chosen, greedy_coreset(points, 40, projection_dim=None, seed=1))
    with pytest.raises(ValueError):
        greedy_coreset(points, 0)


def test_coreset_distinct_with_duplicate_features():
    points = torch.zeros(50, 4)
    points[:5] = torch.eye(4, 4).repeat(2, 1)[:5]
    chosen = greedy_coreset(points, 50, projection_dim=None)
    assert sorted(chosen.tolist()) == list(range(50))


def test_deterministic_for_a_seed(textures):
    train, test, _ = textures
    a = PatchCore(image_size=64, coreset_fraction=0.2, seed=3, feature_dim=64).fit(train)
    b = PatchCore(image_size=64, coreset_fraction=0.2, seed=3, feature_dim=64).fit(train)
    c = PatchCore(image_size=64, coreset_fraction=0.2, seed=4, feature_dim=64).fit(train)
    assert torch.equal(a.coreset_indices, b.coreset_indices)
    assert not torch.equal(a.coreset_indices, c.coreset_indices)
    maps_a, scores_a = a.predict(test, size=32)
    maps_b, scores_b = b.predict(test, size=32)
    assert maps_a.shape == (2, 32, 32)
    np.testing.assert_array_equal(maps_a, maps_b)
    np.testing.assert_array_equal(scores_a, scores_b)


def test_blur_flag_and_kernel():
    impulse = torch.zeros(1, 41, 41)
    impulse[0, 20, 20] = 1.0
    blurred = gaussian_blur(impulse, 4.0)
    assert blurred.shape == impulse.shape and abs(float(blurred.sum()) - 1.0) < 1e-4
    assert int(blurred.flatten().argmax()) == 20 * 41 + 20
    assert torch.equal(gaussian_blur(impulse, 0.0), impulse)


def test_wide_resnet_extractor_is_random_init_with_strides_8_and_16():
    extractor = WideResNet50Extractor(seed=0)
    f8, f16 = extractor(torch.randn(1, 3, 64, 64))
    assert f8.shape == (1, 512, 8, 8) and f16.shape == (1, 1024, 4, 4)
    assert extractor.weights_identity == "random-init"
    assert not any(p.requires_grad for p in extractor.parameters())


def test_real_sample_pixel_auroc(sample_root):
    from stlm_core.data import open_dataset
    from stlm_core.data.transforms import resize_mask
    from stlm_core.metrics import auroc, pixel_auroc

    size = 128
    train = [s.image for s in open_dataset("mvtec", sample_root, "bottle", "train")]
    test = list(open_dataset("mvtec", sample_root, "bottle", "test"))
    model = PatchCore(backbone="efficientnet_lite0", image_size=size, coreset_fraction=0.1, seed=0).fit(train)
    maps, scores = model.predict([s.image for s in test])
    masks = np.stack([resize_mask(s.mask, size) for s in test])
    labels = np.array([s.label for s in test])
    assert pixel_auroc(masks, maps) > 0.9
    assert auroc(labels, scores) > 0.9
