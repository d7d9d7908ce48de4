"""APRIL-GAN adapters: losses, the training loop lowers its loss, save/load keeps outputs and provenance."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stlm_core.clipsam.adapters import (
    adapter_meta, dice_loss, focal_loss, load_adapters, save_adapters, train_adapters,
)
from stlm_core.clipsam.clip_localiser import build_clip
from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.errors import WeightsError


class SquaresSet(list):
    """Tiny synthetic set: dark noisy images with one bright square each and its exact mask."""

    def __init__(self, n=8, size=64, seed=0, category="widget"):
        rng = np.random.default_rng(seed)
        super().__init__()
        self.category = category
        for _ in range(n):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            mask = np.zeros((size, size), np.uint8)
            s = int(rng.integers(12, 24))
            y, x = rng.integers(0, size - s, 2)
            image[y : y + s, x : x + s] = 230
            mask[y : y + s, x : x + s] = 1
            self.append(SimpleNamespace(image=image, mask=mask, label=1))


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_clip(ClipSamConfig.from_profile("smoke", adapter_lr=1e-2), checkpoint=None)


def test_losses_prefer_the_right_answer():
    target = torch.zeros(2, 8, 8)
    target[:, 2:5, 2:5] = 1
    right = torch.stack([1 - target, target], 1).clamp(0.01, 0.99)
    wrong = torch.stack([target, 1 - target], 1).clamp(0.01, 0.99)
    assert focal_loss(right, target) < 0.01 < focal_loss(wrong, target)
    assert dice_loss(right[:, 1], target) < 0.05 < dice_loss(wrong[:, 1], target)


def test_training_lowers_loss_on_tiny_synthetic_set(backbone):
    data = SquaresSet()
    adapters, history = train_adapters(backbone, [data], "toy", ClipSamConfig.from_profile("smoke", adapter_lr=1e-2), epochs=6, seed=0, progress=False)
    losses = history["epoch_loss"]
    assert len(losses) == 6 and history["images"] == 8
    assert losses[-1] < 0.9 * losses[0], losses


def test_save_load_round_trip_and_mismatch(backbone, tmp_path):
    data = SquaresSet(n=4)
    adapters, history = train_adapters(backbone, [data], "mvtec", ClipSamConfig.from_profile("smoke", adapter_lr=1e-2), epochs=1, seed=0, progress=False)
    meta = adapter_meta(backbone, "mvtec", ["widget"], history, ClipSamConfig.from_profile("smoke", adapter_lr=1e-2))
    path = save_adapters(tmp_path / "a.pt", adapters, meta)
    loaded, meta2 = load_adapters(path, backbone)
    assert meta2["trained_on"] == "mvtec" and meta2["split"] == "test"
    tokens = [torch.randn(1, 64, backbone.width) for _ in range(backbone.n_layers)]
    with torch.no_grad():
        for a, b in zip(adapters(tokens), loaded(tokens)):
            torch.testing.assert_close(a, b)
    other = build_clip(ClipSamConfig.from_profile("smoke", clip_layers=(2,)), checkpoint=None)
    with pytest.raises(WeightsError, match="same --profile"):
        load_adapters(path, other)
    with pytest.raises(ValueError):
        save_adapters(tmp_path / "b.pt", adapters, {"width": 1})
    with pytest.raises(WeightsError):
        load_adapters(tmp_path / "missing.pt")


def test_april_gan_release_format_loads_with_its_dataset_from_the_file_name(backbone, tmp_path):
    """APRIL-GAN saves {"trainable_linearlayer": LinearLayer.state_dict()} with fc.<i> keys; the same weights give
    the same outputs once read, and the file name says which dataset they were trained on."""
    width, embed_dim, n = backbone.width, backbone.embed_dim, backbone.n_layers
    fc = torch.nn.ModuleList(torch.nn.Linear(width, embed_dim) for _ in range(n))  # APRIL-GAN's layout
    path = tmp_path / "visa_pretrained.pth"
    torch.save({"trainable_linearlayer": {f"fc.{k}": v for k, v in fc.state_dict().items()}}, path)
    loaded, meta = load_adapters(path)
    assert meta["trained_on"] == "visa" and meta["source"] == "APRIL-GAN release"
    assert (meta["width"], meta["embed_dim"], meta["n_layers"]) == (width, embed_dim, n)
    assert meta["clip_model"] == "ViT-L-14-336" and meta["clip_layers"] == [6, 12, 18, 24]
    tokens = [torch.randn(1, 16, width) for _ in range(n)]
    with torch.no_grad():
        for layer, token, out in zip(fc, tokens, loaded(tokens)):
            torch.testing.assert_close(layer(token), out)
    with pytest.raises(WeightsError, match="ViT-L-14-336"):  # released for ViT-L-14-336, not this backbone
        load_adapters(path, backbone)
    unnamed = tmp_path / "epoch_15.pth"
    unnamed.write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="mvtec_pretrained.pth"):
        load_adapters(unnamed)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="could not read"):
        load_adapters(junk)
    torch.save({"something": 1}, junk)
    with pytest.raises(WeightsError, match="neither"):
        load_adapters(junk)


def test_a_run_records_where_april_gan_adapters_were_trained_and_warns_on_the_same_dataset(backbone, tmp_path,
                                                                                           synthetic_root):
    """APRIL-GAN's released files carry no metadata: the run's record still names the dataset they were trained on
    (from the file name, read by the same reader that loads them), and a run on that dataset is warned about."""
    from stlm_core.clipsam.zeroshot import adapters_identity, run
    from stlm_core.data.spec import DataSpec

    width, embed_dim, n = backbone.width, backbone.embed_dim, backbone.n_layers
    fc = torch.nn.ModuleList(torch.nn.Linear(width, embed_dim) for _ in range(n))
    path = tmp_path / "mvtec_pretrained.pth"
    torch.save({"trainable_linearlayer": {f"fc.{k}": v for k, v in fc.state_dict().items()}}, path)
    identity = adapters_identity(path)
    assert identity["trained_on"] == "mvtec" and len(identity["sha256"]) == 64
    data = DataSpec("mvtec", synthetic_root, "carpet_like", limit=2)  # the synthetic set is in MVTec AD layout
    with pytest.warns(UserWarning, match="trained on mvtec, the dataset evaluated here"):
        with pytest.raises(WeightsError, match="ViT-L-14-336"):  # released for another CLIP than the smoke one
            run(ClipSamConfig.from_profile("smoke"), data, runs_dir=tmp_path / "runs", clip_checkpoint=None,
                sam_checkpoint=None, adapters=path, device="cpu", progress=False)
