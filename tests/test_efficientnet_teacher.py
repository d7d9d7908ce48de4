"""The offline ImageNet EfficientNet-Lite teacher: real weights, STLM feature shapes, frozen vs trainable."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from stlm_core.modeling.efficientnet_lite import (
    EfficientNetLiteFeatures,
    build_efficientnet_lite,
    pretrained_weights_file,
    to_input,
    weights_identity,
)

torch.set_num_threads(1)

# ImageNet-1k class indices that fit scikit-learn's sample images.
CHINA_OK = {
    442: "bell cote", 483: "castle", 497: "church", 663: "monastery", 668: "mosque", 698: "palace",
    832: "stupa", 858: "tile roof", 975: "lakeside",
}
FLOWER_OK = {985: "daisy"}


def _center_crop(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Resize the short side to size * 256 / 224, then center-crop size x size (the ImageNet protocol)."""
    pil = Image.fromarray(image)
    scale = size * 256 / 224 / min(pil.size)
    pil = pil.resize((round(pil.size[0] * scale), round(pil.size[1] * scale)), Image.BILINEAR)
    left, top = (pil.size[0] - size) // 2, (pil.size[1] - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)))


@pytest.fixture(scope="module")
def sample_batch() -> torch.Tensor:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    names = [path.rsplit("/", 1)[-1] for path in data.filenames]
    assert names == ["china.jpg", "flower.jpg"]
    return to_input(np.stack([_center_crop(image) for image in data.images]))


def _fits(model: torch.nn.Module, batch: torch.Tensor) -> bool:
    with torch.no_grad():
        top5 = model(batch).topk(5, dim=1).indices.tolist()
    return bool(set(top5[0]) & CHINA_OK.keys()) and bool(set(top5[1]) & FLOWER_OK.keys())


def test_pretrained_lite0_classifies_sample_images(sample_batch):
    assert _fits(build_efficientnet_lite("efficientnet_lite0", pretrained=True), sample_batch)


def test_random_init_lite0_does_not(sample_batch):
    torch.manual_seed(0)
    assert not _fits(build_efficientnet_lite("efficientnet_lite0", pretrained=False), sample_batch)


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite1"])
@pytest.mark.parametrize("size", [128, 256])
def test_feature_contract_shapes(variant, size):
    features = EfficientNetLiteFeatures(variant=variant, pretrained=True, frozen=True)
    out = features(torch.randn(2, 3, size, size))
    assert isinstance(out, list) and len(out) == 2
    for level in out:
        assert level.shape == (2, 256, size // 16, size // 16) and level.dtype == torch.float32
        assert torch.isfinite(level).all()


def test_stride_8_levels_are_finer_and_agree_with_stride_16_where_they_share_blocks():
    import torch.nn.functional as F

    x = torch.randn(1, 3, 128, 128)
    coarse = EfficientNetLiteFeatures(variant="efficientnet_lite0", output_stride=16)(x)
    fine = EfficientNetLiteFeatures(variant="efficientnet_lite0", output_stride=8)(x)
    assert [f.shape for f in fine] == [(1, 256, 16, 16)] * 2 and [c.shape for c in coarse] == [(1, 256, 8, 8)] * 2
    # level 2 is the same stride-16 projection, bilinearly upsampled to the stride-8 grid
    expected = F.interpolate(coarse[1], size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(fine[1], expected)
    # level 1 differs: it keeps the stride-8 block at full resolution
    assert not torch.allclose(F.avg_pool2d(fine[0], 2), coarse[0], atol=1e-3)
    clone = EfficientNetLiteFeatures(variant="efficientnet_lite0", output_stride=8).trainable_copy().eval()
    assert clone.output_stride == 8 and torch.equal(clone(x)[0], fine[0])
    with pytest.raises(ValueError, match="output_stride"):
        EfficientNetLiteFeatures(output_stride=4)


def test_stride_8_config_needs_an_offline_teacher_and_copied_students():
    from stlm_core.errors import ConfigError
    from stlm_core.stlm.config import StlmConfig

    assert StlmConfig.from_profile("cpu", feature_stride=8).embed_size == 32
    with pytest.raises(ConfigError, match="teacher_copy"):
        StlmConfig.from_profile("cpu", feature_stride=8, student="tinyvit")
    with pytest.raises(ConfigError, match="feature_stride"):
        StlmConfig.from_profile("smoke", feature_stride=8)


def test_rejects_sizes_not_multiple_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        EfficientNetLiteFeatures()(torch.randn(1, 3, 100, 100))


def test_frozen_teacher_has_no_grads_and_stays_in_eval():
    teacher = EfficientNetLiteFeatures(variant="efficientnet_lite0", frozen=True)
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    out = teacher(x)
    assert all(not level.requires_grad and level.grad_fn is None for level in out)


def test_trainable_copy_equals_teacher_at_init():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 128, 128)
    teacher = EfficientNetLiteFeatures(variant="efficientnet_lite0", pretrained=True, projection_seed=3, frozen=True)
    student = EfficientNetLiteFeatures(variant="efficientnet_lite0", pretrained=True, projection_seed=3, frozen=False)
    assert student.training and all(p.requires_grad for p in student.parameters())
    assert torch.equal(student.projection1, teacher.projection1)
    student.eval()
    expected = teacher(x)
    got = student(x)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)
    # gradients flow through the trainable copy but never into the fixed projections
    sum(level.square().mean() for level in got).backward()
    assert student.backbone.stem[0].weight.grad is not None and not student.projection1.requires_grad
    # the deep-copy route gives the same outputs too
    clone = teacher.trainable_copy()
    assert clone.training and any(p.requires_grad for p in clone.parameters())
    clone.eval()
    for a, b in zip(expected, clone(x)):
        assert torch.equal(a, b)
    # another projection seed gives another projection
    other = EfficientNetLiteFeatures(variant="efficientnet_lite0", projection_seed=4)
    assert not torch.allclose(other.projection1, teacher.projection1)


def test_projection_is_orthogonal():
    features = EfficientNetLiteFeatures(variant="efficientnet_lite0")
    p1, p2 = features.projection1, features.projection2  # (256, 152): orthonormal columns; (256, 432): rows
    assert p1.shape == (256, 152) and p2.shape == (256, 432)
    assert torch.allclose(p1.T @ p1, torch.eye(152), atol=1e-5)
    assert torch.allclose(p2 @ p2.T, torch.eye(256), atol=1e-5)


def test_identity_contains_the_real_sha256():
    path = pretrained_weights_file("efficientnet_lite0")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert weights_identity("efficientnet_lite0") == f"efficientnet_lite0@{digest}"
    assert EfficientNetLiteFeatures(variant="efficientnet_lite0").weights_identity.endswith(digest)
    assert weights_identity("efficientnet_lite0", pretrained=False) == "random-init"
    assert path.name.startswith("efficientnet-lite0-") and digest.startswith(path.stem.rsplit("-", 1)[1])
