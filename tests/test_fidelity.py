"""The equivalence check's parts that need no official clone: key map, zero-gradient elements, distribution
tests, clear errors. (The check itself runs against a user's clone: ``stlm check official --repo CLONE``.)"""

from __future__ import annotations

import pytest
import torch

from stlm_core.cli import main
from stlm_core.fidelity.keymap import key_map, official_key, to_official
from stlm_core.fidelity.official import compare_pseudo_anomalies, key_bias_elements, project_pseudo_anomalies
from stlm_core.stlm.build import build_for_training, build_stlm
from stlm_core.stlm.config import StlmConfig


def test_every_paper_model_key_maps_to_a_distinct_official_key_of_the_official_tinyvit():
    from stlm_core.modeling.tinyvit_student import build_tinyvit

    state = build_stlm(StlmConfig.from_profile("paper")).state_dict()
    mapping = key_map(state)
    assert len(mapping) == len(state) == 795
    assert len({(owner, name) for _, owner, name in mapping}) == len(state)
    official = to_official(state)
    tinyvit = build_tinyvit(image_size=1024, dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), heads=(2, 4, 5, 10),
                            windows=(7, 7, 14, 7))  # the official encoderT / encoderS architecture
    for prefix in ("encoderT.", "encoderS."):
        encoder = {k[len(prefix):]: v for k, v in official["twostream"].items() if k.startswith(prefix)}
        result = tinyvit.load_state_dict(encoder, strict=False)
        assert not result.unexpected_keys
        assert set(result.missing_keys) <= {"norm_head.weight", "norm_head.bias", "head.weight", "head.bias"}
    assert official_key("fa.head.2.bias") == ("segmentation", "head.4.bias")
    with pytest.raises(KeyError, match="no official counterpart"):
        official_key("teacher.something")


def test_attention_key_biases_have_zero_gradient():
    """The elements the check compares separately: their gradient is rounding noise only."""
    config = StlmConfig.from_profile("smoke", image_size=64, eval_size=64)
    model, _ = build_for_training(config, {})
    masks = key_bias_elements(model)
    assert any(".qkv.bias" in k for k in masks) and any(".k_proj.bias" in k for k in masks)
    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    (out["wo_fa_map"].mean() + out["fa_map"].mean()).backward()
    params = dict(model.named_parameters())
    scale = max(p.grad.abs().max().item() for p in params.values() if p.grad is not None)
    checked = 0
    for name, mask in masks.items():
        grad = params[name].grad
        if grad is None:
            continue
        checked += 1
        assert grad[mask].abs().max().item() <= 1e-5 * scale, name
        if not mask.all():  # the query and value biases of the same tensor do learn
            assert grad[~mask].abs().max().item() > 100 * grad[mask].abs().max().item(), name
    assert checked > 0


def test_pseudo_anomaly_statistics_tell_a_different_generator_apart():
    common = dict(draws=200, size=64, beta_max=0.8, max_exp=6, threshold=0.5)
    ours = project_pseudo_anomalies(seed=0, aug_prob=0.5, **common)
    rows = compare_pseudo_anomalies(ours, project_pseudo_anomalies(seed=1, aug_prob=0.5, **common))
    assert all(r.ok for r in rows), rows
    rows = compare_pseudo_anomalies(ours, project_pseudo_anomalies(seed=1, aug_prob=0.9, **common))
    assert not rows[0].ok
    rows = compare_pseudo_anomalies(ours, project_pseudo_anomalies(seed=1, aug_prob=0.5, **{**common,
                                                                                          "threshold": 0.2}))
    assert not rows[1].ok


def test_check_official_names_a_missing_or_wrong_clone(tmp_path, capsys):
    assert main(["check", "official", "--repo", str(tmp_path / "absent")]) == 2
    assert "git clone https://github.com/Qi5Lei/STLM" in capsys.readouterr().err
    (tmp_path / "mob_sam.py").write_text("")
    assert main(["check", "official", "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a clone of the official STLM code" in err and "trainSTLM.py" in err


def test_recorded_check_result_is_complete_and_passed():
    """The result the book shows: every part present, every row within tolerance, its provenance named."""
    from stlm_core.fidelity import check_table, load_check_result

    result = load_check_result()
    table = check_table(result)
    parts = {part.split(" (")[0] for part in table["part"]}
    assert parts >= {"inference", "training step", "gradient", "after one step", "pseudo anomalies"}
    assert result["passed"] and (table["verdict"] == "within tolerance").all()
    assert result["provenance"]["official_commit"] and result["provenance"]["date"]
    losses = table[table["quantity"].str.startswith("loss:")]
    assert len(losses) == 4 and (losses["max rel / p"] <= 1e-5).all()
