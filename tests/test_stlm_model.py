"""STLM model: parameter fidelity (paper profile), decoder features, maps, ablation switches, weights loading,
pseudo-anomalies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stlm_core.errors import StlmError, WeightsError
from stlm_core.stlm.build import build_stlm, build_teacher
from stlm_core.stlm.config import StlmConfig, rotation_for_category
from stlm_core.stlm.model import image_scores, parameter_counts, upsample

# The paper architecture's parameter counts, computed analytically from the architecture definitions
# (TinyViT-5M + MobileSAM neck, MobileSAM mask decoder and prompt encoder, DeSTSeg FA head with 512 inputs).
SPEC_COUNTS = {
    "student_plain": 5_743_892,
    "student_denoise": 5_743_892,
    "mask_decoder": 4_058_340,
    "prompt_encoder": 6_220,
    "fa_head": 1_870_465,
    "total": 17_422_809,
}


def test_paper_profile_parameter_counts_match_spec():
    """Students + decoder + FA of the paper profile (the ViT-H teacher is not built)."""
    model = build_stlm(StlmConfig.from_profile("paper"))
    assert parameter_counts(model) == SPEC_COUNTS


def test_paper_faithful_variant_keeps_paper_architecture_counts():
    from stlm_core.stlm.study import VARIANTS

    config = StlmConfig.from_profile("cpu", **VARIANTS["paper_faithful"])
    assert parameter_counts(build_stlm(config)) == SPEC_COUNTS


def test_every_study_variant_is_a_valid_cpu_config_with_a_named_factor():
    """Each variant changes only named config fields, validates on top of the cpu profile, and says in the
    STLM-T5 table which factor it changes."""
    from dataclasses import fields

    from stlm_core.stlm.study import ABLATION_FACTORS, VARIANTS, variant_config

    names = {f.name for f in fields(StlmConfig)}
    for variant, overrides in VARIANTS.items():
        assert set(overrides) <= names, variant
        config = variant_config(variant, profile="cpu", steps=1)
        assert all(getattr(config, k) == v for k, v in overrides.items()), variant
        assert variant in ABLATION_FACTORS or variant == "paper_faithful_sam_teacher", variant


def test_cpu_profile_starts_with_the_student_equal_to_the_pretrained_teacher():
    """cpu profile: the denoising student is a trainable copy of the frozen ImageNet teacher (D(I) = T(I) at
    step 0, so the w/o-FA map starts at zero), and the FA head starts at the prior probability."""
    import math

    config = StlmConfig.from_profile("cpu", image_size=64, eval_size=64)
    teacher = build_teacher(config)
    model = build_stlm(config, teacher=teacher).eval()
    assert model.plain is None and model.plain_teacher is teacher and model.decoder is None
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in model.denoise.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain, denoise = model.streams(x)
        maps = model.maps(plain, denoise)
    for p, d in zip(plain, denoise):
        torch.testing.assert_close(p, d)
    assert maps["wo_fa_map"].abs().max() < 1e-5
    assert model.fa.head[-1].bias.item() == pytest.approx(-math.log(99))
    model.train()
    assert not any(m.training for m in model.denoise.modules() if isinstance(m, torch.nn.BatchNorm2d))


def smoke_model(**overrides):
    config = StlmConfig.from_profile("smoke", image_size=64, eval_size=64, **overrides)
    torch.manual_seed(0)
    return build_stlm(config).eval(), config


def test_smoke_forward_shapes_and_ranges():
    model, config = smoke_model()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain, denoise = model.streams(x)
        maps = model.maps(plain, denoise)
    assert len(plain) == len(denoise) == 2
    assert all(f.shape == (2, 256, 4, 4) for f in plain + denoise)
    assert maps["fa_map"].shape == maps["wo_fa_map"].shape == (2, 1, 4, 4)
    assert 0 <= maps["fa_map"].min() and maps["fa_map"].max() <= 1
    assert 0 <= maps["wo_fa_map"].min() and maps["wo_fa_map"].max() <= 4
    # the w/o-FA map is the product over levels of the cosine distances
    cos = [1 - torch.nn.functional.cosine_similarity(p, d, dim=1, eps=1e-12) for p, d in zip(plain, denoise)]
    torch.testing.assert_close(maps["wo_fa_map"][:, 0], cos[0] * cos[1], atol=1e-5, rtol=1e-5)
    full = upsample(maps["fa_map"], 64)
    assert full.shape == (2, 64, 64)
    assert image_scores(full, top_k=100).shape == (2,)


def test_image_score_is_mean_of_top_k():
    maps = torch.zeros(1, 20, 20)
    maps[0, 0, :10] = 1.0
    assert image_scores(maps, top_k=10).item() == pytest.approx(1.0)
    assert image_scores(maps, top_k=20).item() == pytest.approx(0.5)


def test_ablation_switches():
    model, _ = smoke_model(use_decoder=False)
    with torch.no_grad():
        plain, denoise = model.streams(torch.randn(1, 3, 64, 64))
        maps = model.maps(plain, denoise)
    assert len(plain) == 1 and model.fa.res[0].conv1.in_channels == 256
    assert maps["fa_map"].shape == (1, 1, 4, 4)

    model, _ = smoke_model(use_fa=False)
    assert model.fa is None and model(torch.randn(1, 3, 64, 64))["fa_map"] is None
    assert "fa_res" not in model.trainable_parameters()

    with pytest.raises(ValueError, match="teacher"):
        smoke_model(use_plain=False)

    config = StlmConfig.from_profile("smoke", image_size=64, eval_size=64, use_plain=False)
    teacher = build_teacher(config)
    model = build_stlm(config, teacher=teacher)
    assert model.plain is None and parameter_counts(model)["teacher_as_plain_stream"] > 0
    assert all(not p.requires_grad for p in teacher.parameters())


def test_decoder_features_match_library_forward():
    """The prompt-free wrapper gives the same feature2 as SAM's own predict_masks (one image per call) and
    batching does not change it."""
    model, config = smoke_model()
    decoder = model.decoder
    emb = torch.randn(3, 256, 4, 4)
    captured = []
    hook = decoder.mask_decoder.transformer.register_forward_hook(lambda m, i, o: captured.append(o[1]))
    with torch.no_grad():
        feats = decoder(emb)
        hook_count = len(captured)
        for b in range(3):
            sparse, dense = decoder.prompt_encoder(points=None, boxes=None, masks=None)
            assert sparse.shape == (1, 0, 256)
            decoder.mask_decoder.predict_masks(emb[b:b + 1], decoder.prompt_encoder.get_dense_pe(), sparse, dense)
    hook.remove()
    assert hook_count == 1
    reference = torch.cat([c.transpose(1, 2).reshape(1, 256, 4, 4) for c in captured[1:]])
    torch.testing.assert_close(feats[1], reference, atol=1e-5, rtol=1e-5)
    assert torch.equal(feats[0], emb)


def test_teacher_is_frozen_and_detached():
    teacher = build_teacher(StlmConfig.from_profile("smoke", image_size=64, eval_size=64))
    teacher.train()
    assert not teacher.training
    out = teacher(torch.randn(1, 3, 64, 64, requires_grad=True))
    assert [f.shape for f in out] == [(1, 256, 4, 4)] * 2
    assert not any(f.requires_grad for f in out)


def test_mobile_sam_checkpoint_loads_into_decoder_and_students(tmp_path):
    """The real loading path: a random MobileSAM saved as mobile_sam.pt, loaded through our builders."""
    from stlm_core.modeling.mobilesam import sam_model_registry
    from stlm_core.modeling.registry import build_mobilesam_decoder
    from stlm_core.modeling.tinyvit_student import load_mobilesam_encoder
    from stlm_core.stlm.build import build_student

    torch.manual_seed(1)
    sam = sam_model_registry["vit_t"](checkpoint=None)
    path = tmp_path / "mobile_sam.pt"
    torch.save(sam.state_dict(), path)
    config = StlmConfig.from_profile("cpu", student="tinyvit", feature_stride=16)
    decoder = build_mobilesam_decoder(image_size=config.image_size, checkpoint=path)
    for name, value in sam.mask_decoder.state_dict().items():
        assert torch.equal(decoder.mask_decoder.state_dict()[name], value), name
    assert torch.equal(decoder.prompt_encoder.no_mask_embed.weight, sam.prompt_encoder.no_mask_embed.weight)
    student = build_student(config)
    load_mobilesam_encoder(student, path)
    assert torch.equal(student.encoder.neck[0].weight, sam.image_encoder.neck[0].weight)


def test_paper_profile_refuses_without_weights(tmp_path, monkeypatch, mvtec_tree):
    from stlm_core.data.spec import DataSpec
    from stlm_core.stlm.training import train

    monkeypatch.setenv("STLM_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    root = mvtec_tree(n_train=2, size=32)
    with pytest.raises(WeightsError, match="stlm weights download sam_vit_h"):
        train(StlmConfig.from_profile("paper"), DataSpec("mvtec", root, "widget"), run_dir=tmp_path / "run",
              progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_config_validation_and_rotation_lists():
    with pytest.raises(StlmError, match="1024"):
        StlmConfig.from_profile("smoke", teacher="vit_h")
    with pytest.raises(StlmError, match="EfficientNet-Lite"):
        StlmConfig.from_profile("cpu", teacher="reduced")  # a teacher copy needs a copyable teacher
    with pytest.raises(StlmError, match="multiple of 16"):
        StlmConfig.from_profile("smoke", image_size=100)
    assert rotation_for_category("bottle") == "full"
    assert rotation_for_category("transistor") == "none"  # DeSTSeg's disjoint lists
    assert rotation_for_category("carpet_like") == "none"
    config = StlmConfig.from_profile("cpu")
    assert type(config).from_dict(config.to_dict()) == config


# ----------------------------------------------------------------------------------------- pseudo anomalies


def test_perlin_mask_is_binary_and_seeded():
    from stlm_core.stlm.pseudo_anomaly import perlin_mask, perlin_noise

    a = perlin_mask(64, np.random.default_rng(3))
    b = perlin_mask(64, np.random.default_rng(3))
    assert a.shape == (64, 64) and set(np.unique(a)) <= {0.0, 1.0}
    assert np.array_equal(a, b)
    noise = perlin_noise((48, 40), (4, 8), np.random.default_rng(0))  # sizes not divisible by the scale
    assert noise.shape == (48, 40) and np.abs(noise).max() <= 1.5


def test_synthesize_blends_only_inside_mask():
    from stlm_core.stlm.pseudo_anomaly import ProceduralTextures, synthesize

    image = np.full((64, 64, 3), 100, np.uint8)
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(10):
        aug, mask = synthesize(image, ProceduralTextures(), rng, aug_prob=1.0)
        assert aug.dtype == np.uint8 and mask.shape == (64, 64)
        assert np.array_equal(aug[mask == 0], image[mask == 0])
        changed += int((aug != image).any())
    assert changed > 0
    aug, mask = synthesize(image, ProceduralTextures(), rng, aug_prob=0.0)
    assert np.array_equal(aug, image) and mask.sum() == 0


def test_dtd_texture_source(tmp_path):
    from PIL import Image

    from stlm_core.stlm.pseudo_anomaly import DtdTextures, texture_source

    (tmp_path / "dtd" / "images" / "banded").mkdir(parents=True)
    Image.fromarray(np.full((20, 30, 3), 7, np.uint8)).save(tmp_path / "dtd" / "images" / "banded" / "a.jpg")
    source = texture_source(tmp_path / "dtd")
    assert isinstance(source, DtdTextures)
    assert source.sample(16, np.random.default_rng(0)).shape == (16, 16, 3)
    with pytest.raises(StlmError, match="DTD"):
        DtdTextures(tmp_path)  # no */*.jpg directly under tmp_path


def test_ablation_table_takes_final_rows_reported_map_and_seed_spread():
    import math

    import pandas as pd

    from stlm_core.stlm.study import ablation_table

    def row(variant, category, seed, step, fa, wo_fa):
        return {"variant": variant, "category": category, "seed": seed, "step": step, "fa.pixel_auroc": fa,
                "fa.pixel_aupro": fa, "wo_fa.pixel_auroc": wo_fa, "wo_fa.pixel_aupro": wo_fa}

    curves = pd.DataFrame([
        row("cpu", "a", 0, 10, 0.1, 0.1), row("cpu", "a", 0, 20, 0.9, 0.5),      # only the last step counts
        row("cpu", "b", 0, 20, 0.7, 0.5),
        row("cpu", "a", 1, 20, 0.8, 0.5), row("cpu", "b", 1, 20, 0.6, 0.5),
        row("no_fa", "a", 0, 20, None, 0.6), row("no_fa", "b", 0, 20, None, 0.4),  # no FA head: the w/o-FA map
    ])
    table = ablation_table(curves)
    assert list(table.index) == ["cpu", "no_fa"]                                 # reference first
    cpu = table.loc["cpu"]
    assert cpu["map"] == "fa" and cpu["seeds"] == 2 and cpu["categories"] == 2
    assert cpu["pixel_auroc"] == pytest.approx(0.75)                             # seed means 0.8 and 0.7
    assert cpu["pixel_auroc_sd"] == pytest.approx(pd.Series([0.8, 0.7]).std())
    no_fa = table.loc["no_fa"]
    assert no_fa["map"] == "wo_fa" and no_fa["pixel_auroc"] == pytest.approx(0.5)
    assert no_fa["delta_auroc"] == pytest.approx(-0.25) and math.isnan(no_fa["pixel_auroc_sd"])
