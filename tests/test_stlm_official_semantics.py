"""STLM computes what the official code computes: the semantics pinned without the official code.

Each test states the official behaviour it pins (the official repository has no licence, so nothing of it is
copied here; the equivalence check ``stlm check official --repo CLONE`` compares against a user's clone).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from stlm_core.data.transforms import resize_mask
from stlm_core.modeling.fa_head import FAHead
from stlm_core.stlm.training import fa_target


# ------------------------------------------------------------------------------------- mask binarisation


def _half_covered_mask(size: int = 8) -> np.ndarray:
    """A vertical edge whose boundary column lands exactly on 0.5 after a 2x bilinear downscale."""
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 2 - 1] = 1  # columns 0..2 of 8: output column 1 averages to exactly 0.5
    return mask


def test_training_target_counts_a_half_covered_pixel_as_anomalous():
    """Official training loop: ``where(mask < 0.5, 0, 1)`` after a bilinear resize, i.e. ``>= 0.5``."""
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :1] = 1  # the top-left 2x2 block is half anomalous
    resized = torch.nn.functional.interpolate(mask, size=(2, 2), mode="bilinear", align_corners=False)
    assert resized[0, 0, 0, 0].item() == 0.5  # the boundary case this test is about
    target = fa_target(mask, (2, 2))
    assert target[0, 0, 0, 0].item() == 1.0
    assert target.sum().item() == 1.0 and target.dtype == torch.float32


def test_evaluation_masks_count_a_half_covered_pixel_as_anomalous():
    """Official MVTec reader: ToTensor -> bilinear resize -> ``where(mask < 0.5, 0, 1)``."""
    from stlm_core.data.sample import Sample
    from stlm_core.data.transforms import ResizeNormalise

    mask = _half_covered_mask()
    resized = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((4, 4), Image.BILINEAR))
    assert (resized == 0.5).any()  # the boundary case this test is about
    binary = resize_mask(mask, 4)
    np.testing.assert_array_equal(binary, (resized >= 0.5).astype(np.uint8))
    assert binary[:, 1].all()
    sample = Sample(image=np.zeros((8, 8, 3), np.uint8), mask=mask, label=1, defect="edge", path="x.png",
                    category="c", split="test")
    np.testing.assert_array_equal(ResizeNormalise(4)(sample)["mask"][0].numpy(), binary)


def test_clipsam_masks_follow_april_gan_strict_threshold():
    """APRIL-GAN's reader (followed by the CLIP-SAM pipeline): ``gt[gt > 0.5] = 1`` so exactly 0.5 stays normal."""
    mask = _half_covered_mask()
    strict = resize_mask(mask, 4, include_half=False)
    assert not strict[:, 1].any() and strict[:, 0].all()


# ---------------------------------------------------------------------------------- FA head initialisation


def _default_conv_std(conv: torch.nn.Conv2d) -> float:
    """PyTorch's default Conv2d init: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    return 1.0 / math.sqrt(fan_in) / math.sqrt(3.0)


def test_fa_head_initialisation_is_kaiming_on_res_only():
    """Official ``SegmentationNet``: the Kaiming loop runs before ``head`` exists, so the head keeps the
    default init (final conv weight std about 0.05 at 128 inputs, not Kaiming's about 1.4)."""
    torch.manual_seed(0)
    head = FAHead(512, 128)
    final = head.head[-1]
    assert abs(final.weight.std().item() / _default_conv_std(final) - 1) < 0.2
    for module in head.res.modules():
        if isinstance(module, torch.nn.Conv2d):
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            assert abs(module.weight.std().item() / math.sqrt(2.0 / fan_out) - 1) < 0.2
    for module in head.head.modules():
        if isinstance(module, torch.nn.Conv2d):
            assert abs(module.weight.std().item() / _default_conv_std(module) - 1) < 0.2


@pytest.mark.parametrize("prior", [0.01, 0.1])
@pytest.mark.parametrize("train_mode", [True, False])
def test_fa_prior_sets_the_median_initial_probability(prior, train_mode):
    """With ``prior=p`` the head starts near p (within a factor of 3 for the median pixel) on random
    unit-variance input, in train and in eval mode: no pixel starts saturated."""
    torch.manual_seed(0)
    head = FAHead(512, 128, prior=prior).train(train_mode)
    with torch.no_grad():
        prob = head(torch.randn(2, 512, 32, 32))
    median = prob.median().item()
    assert prior / 3 < median < prior * 3, median
    assert (prob > 1e-6).all()


def test_fa_prior_is_validated():
    with pytest.raises(ValueError, match="prior"):
        FAHead(512, 128, prior=1.0)


# ------------------------------------------------------------- documented differences, with measured tolerances
# Tolerances the equivalence check against the official code measured (stlm check official, float32 inference):
# stream features within 1.8e-6 relative, FA / TLM maps within 4e-7 absolute, focal term within 2.1e-7 relative.


def test_normalisation_order_changes_inputs_by_rounding_only():
    """Ours: x / 255 then (x - mean/255) / (std/255); official: (x - mean) / std on 0-255 (SAM's preprocess)."""
    from stlm_core.data.transforms import to_tensor

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ours = to_tensor(image, "sam")
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    official = (torch.from_numpy(image).permute(2, 0, 1).float() - mean) / std
    difference = (ours - official).abs().max().item()
    assert difference <= 1e-6 * official.abs().max().item()
    assert difference > 0  # the two orders really are different computations (float32 rounding)


def test_focal_loss_from_logits_equals_the_official_sigmoid_form_where_nothing_saturates():
    """Official: BCE on the sigmoid output; ours: from the logits. Same value (the check: 2.1e-7 relative)."""
    from stlm_core.stlm.training import focal_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 1, 32, 32) * 2  # |logit| < 8: the float32 sigmoid keeps 1 - p to ~1e-5
    target = (torch.rand(2, 1, 32, 32) > 0.9).float()
    prob = torch.sigmoid(logits)
    p_t = prob * target + (1 - prob) * (1 - target)
    official = (torch.nn.functional.binary_cross_entropy(prob, target, reduction="none") * (1 - p_t) ** 4).mean()
    assert abs(focal_loss(logits, target).item() - official.item()) <= 1e-5 * official.item()


def test_batched_decoder_call_equals_the_per_image_loop():
    """Official: one decoder call per image; ours: one batched call (the check: stream features 1.8e-6 rel)."""
    from stlm_core.stlm.build import build_stlm
    from stlm_core.stlm.config import StlmConfig

    torch.manual_seed(0)
    decoder = build_stlm(StlmConfig.from_profile("smoke", image_size=64, eval_size=64)).decoder.eval()
    embedding = torch.randn(3, 256, 4, 4)
    with torch.no_grad():
        batched = decoder(embedding)
        looped = [torch.cat(level) for level in zip(*(decoder(embedding[i:i + 1]) for i in range(3)))]
    for a, b in zip(batched, looped):
        assert (a - b).abs().max().item() <= 1e-5 * b.abs().max().item()
