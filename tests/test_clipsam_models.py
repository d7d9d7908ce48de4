"""CLIP and SAM building and loading through the real libraries (tiny random models saved to tmp files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stlm_core.clipsam.clip_localiser import (
    TrainingFreeLocaliser, build_clip, clip_anomaly_maps, layer_probabilities,
)
from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.clipsam.prompts import ABNORMAL_STATES, NORMAL_STATES, TEMPLATES, state_sentences
from stlm_core.clipsam.sam_backend import build_sam, construct_sam
from stlm_core.errors import WeightsError


@pytest.fixture(scope="module")
def smoke_clip():
    torch.manual_seed(0)
    return build_clip(ClipSamConfig.from_profile("smoke"), checkpoint=None)


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An environment where no official checkpoint can be found."""
    monkeypatch.setenv("STLM_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_prompt_ensemble_sizes():
    assert len(TEMPLATES) == 35 and len(NORMAL_STATES) == 7 and len(ABNORMAL_STATES) == 5
    sentences = state_sentences("metal_nut", ABNORMAL_STATES)
    assert len(sentences) == 5 * 35 and "a bad photo of a damaged metal_nut." in sentences


def test_text_features_normalised_two_columns(smoke_clip):
    t = smoke_clip.text_features("bottle")
    assert t.shape == (smoke_clip.embed_dim, 2)
    torch.testing.assert_close(t.norm(dim=0), torch.ones(2))
    assert not torch.allclose(t[:, 0], t[:, 1])


def test_clip_map_shape_range_and_layers(smoke_clip):
    cfg = ClipSamConfig.from_profile("smoke")
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    map_a, score = clip_anomaly_maps(smoke_clip, TrainingFreeLocaliser(), [image, image], "bottle",
                                     logit_scale=cfg.logit_scale, align_corners=cfg.map_align_corners)
    assert (smoke_clip.image_size, smoke_clip.n_layers) == (cfg.clip_image_size, cfg.n_layers)
    assert map_a.shape == (2, cfg.clip_image_size, cfg.clip_image_size)
    assert map_a.min() >= 0 and map_a.max() <= cfg.n_layers + 1e-5
    assert score.shape == (2,) and ((score >= 0) & (score <= 1)).all()
    _, tokens = smoke_clip.encode_image(smoke_clip.preprocess([image]))
    grid = cfg.clip_image_size // 8
    assert [t.shape for t in tokens] == [(1, grid * grid, smoke_clip.width)] * cfg.n_layers


def test_layer_probabilities_softmax_and_upsampling():
    tokens = [torch.randn(2, 16, 8) for _ in range(3)]
    text = torch.nn.functional.normalize(torch.randn(8, 2), dim=0)
    probs = layer_probabilities(tokens, text, image_size=20)
    assert probs.shape == (2, 3, 2, 20, 20)
    torch.testing.assert_close(probs.sum(dim=2), torch.ones(2, 3, 20, 20))


def test_clip_checkpoint_round_trip(smoke_clip, tmp_path):
    path = tmp_path / "clip_smoke.pt"
    torch.save(smoke_clip.model.state_dict(), path)
    torch.manual_seed(123)                       # a different random init, overwritten by the file
    loaded = build_clip(ClipSamConfig.from_profile("smoke"), checkpoint=path)
    assert loaded.weights.startswith("clip-ViT-B-16@") and len(loaded.weights.split("@")[1]) == 64
    for (k, a), (_, b) in zip(smoke_clip.model.state_dict().items(), loaded.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_clip_checkpoint_with_other_image_size_resizes_pos_embedding(smoke_clip, tmp_path):
    path = tmp_path / "clip_smoke.pt"
    torch.save(smoke_clip.model.state_dict(), path)
    bigger = build_clip(ClipSamConfig.from_profile("smoke", clip_image_size=96), checkpoint=path)
    assert bigger.model.visual.positional_embedding.shape[0] == (96 // 8) ** 2 + 1


def test_sam_checkpoint_round_trip_and_resize(tmp_path):
    cfg = ClipSamConfig.from_profile("smoke")
    torch.manual_seed(0)
    sam = construct_sam(cfg.sam_arch, cfg.sam_image_size)
    path = tmp_path / "sam_smoke.pth"
    torch.save(sam.state_dict(), path)
    loaded = build_sam(cfg, checkpoint=path)
    assert loaded.weights.startswith("sam-smoke@")
    for (k, a), (_, b) in zip(sam.state_dict().items(), loaded.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    # the same file at another input size: position embeddings resized on load
    other = build_sam(ClipSamConfig.from_profile("smoke", sam_image_size=192), checkpoint=path)
    assert other.model.image_encoder.pos_embed.shape[1:3] == (12, 12)
    image = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    feats = other.set_image(image)
    assert feats.shape == (1, 64, 12, 12)
    assert other.features_to_image(feats[:, :1]).shape == (1, 1, 90, 130)


def test_random_init_recorded_for_cpu_and_smoke(no_weights):
    assert build_sam(ClipSamConfig.from_profile("smoke")).weights == "random-init"


def test_paper_profile_requires_official_weights(no_weights):
    with pytest.raises(WeightsError, match="stlm weights download clip_vit_l14_336_openai"):
        build_clip(ClipSamConfig.from_profile("paper"))
    with pytest.raises(WeightsError, match="stlm weights download sam_vit_h"):
        build_sam(ClipSamConfig.from_profile("paper"))


def test_missing_explicit_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_sam(ClipSamConfig.from_profile("smoke"), checkpoint=tmp_path / "nope.pth")


def test_torchscript_archive_detection(tmp_path):
    from stlm_core.clipsam.clip_localiser import _is_torchscript_archive

    module = torch.nn.Linear(2, 2)
    torch.save(module.state_dict(), tmp_path / "state.pt")
    torch.jit.save(torch.jit.script(module), tmp_path / "scripted.pt")
    assert not _is_torchscript_archive(tmp_path / "state.pt")
    assert _is_torchscript_archive(tmp_path / "scripted.pt")
