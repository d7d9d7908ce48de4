"""APRIL-GAN linear adapters: training with focal + dice loss, save and load.

One ``Linear(width -> embed_dim)`` per tapped CLIP block maps raw residual-stream patch tokens to the joint
space (tokens are L2-normalised afterwards, in :func:`~stlm_core.clipsam.clip_localiser.layer_probabilities`).

Cross-dataset protocol: adapters are trained on one dataset's **test** split (images and masks, all categories)
and applied to another dataset (MVTec AD -> VisA and VisA -> MVTec AD). The dataset they saw is stored in the
file and recorded in every run record (``adapters_trained_on``). Masks are binarised as APRIL-GAN's reader does:
bilinear resize, then ``> 0.5`` (``resize_mask(..., include_half=False)``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from stlm_core.clipsam.clip_localiser import ClipBackbone, layer_probabilities
from stlm_core.clipsam.config import ClipSamConfig
from stlm_core.data.transforms import resize_mask
from stlm_core.errors import WeightsError

FORMAT = "stlm_clipsam_adapters/1"


class LinearAdapters(nn.Module):
    """Per-layer linear maps: list of (B, L, width) -> list of (B, L, embed_dim)."""

    def __init__(self, width: int, embed_dim: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, embed_dim) for _ in range(n_layers))

    def forward(self, tokens: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(tokens) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} token tensors, got {len(tokens)}")
        return [layer(t) for layer, t in zip(self.layers, tokens)]


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, smooth: float = 1e-5) -> torch.Tensor:
    """APRIL-GAN's focal loss on softmax probabilities.

    ``probs`` (B, 2, H, W) summing to 1 over channels; ``target`` (B, H, W) in {0, 1}. Hand-written because
    torchvision's ``sigmoid_focal_loss`` works on sigmoid logits, not on a 2-channel softmax with label smoothing.
    """
    onehot = torch.stack([1 - target, target], dim=1).clamp(smooth, 1.0 - smooth)
    pt = (onehot * probs).sum(dim=1) + smooth
    return (-(1 - pt).pow(gamma) * pt.log()).mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Binary dice loss (APRIL-GAN): ``prob``, ``target`` (B, H, W); mean over the batch of 1 - dice."""
    p, t = prob.flatten(1), target.flatten(1)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return 1 - dice.mean()


def adapter_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, smooth: float = 1e-5) -> torch.Tensor:
    """Sum over layers of focal + dice (abnormal channel); ``probs`` (B, n_layers, 2, H, W), ``target`` (B, H, W)."""
    total = probs.new_zeros(())
    for layer in range(probs.shape[1]):
        total = total + focal_loss(probs[:, layer], target, gamma, smooth) + dice_loss(probs[:, layer, 1], target)
    return total


class _MaskedImages(Dataset):
    """Images + masks of several categories at ``size``; with probability ``mosaic_rate`` a 2x2 mosaic of four
    images of the same category (APRIL-GAN's ``aug_rate``). Items: (image uint8 (S, S, 3), mask (S, S), class idx)."""

    def __init__(self, datasets: Sequence, size: int, mosaic_rate: float, seed: int):
        self.items = [(ci, ds, i) for ci, ds in enumerate(datasets) for i in range(len(ds))]
        self.by_class = {ci: [i for i in range(len(ds))] for ci, ds in enumerate(datasets)}
        self.size, self.mosaic_rate = size, mosaic_rate
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, ds, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        from stlm_core.data.transforms import resize_image

        sample = ds[index]
        return resize_image(sample.image, size, Image.BICUBIC), resize_mask(sample.mask, size, include_half=False)

    def __getitem__(self, index: int):
        ci, ds, i = self.items[index]
        if self.mosaic_rate > 0 and self.rng.random() < self.mosaic_rate and len(self.by_class[ci]) >= 4:
            half = self.size // 2
            picks = [i] + self.rng.sample([j for j in self.by_class[ci] if j != i], 3)
            tiles = [self._load(ds, j, half) for j in picks]
            image = np.concatenate([np.concatenate([tiles[0][0], tiles[1][0]], 1),
                                    np.concatenate([tiles[2][0], tiles[3][0]], 1)], 0)
            mask = np.concatenate([np.concatenate([tiles[0][1], tiles[1][1]], 1),
                                   np.concatenate([tiles[2][1], tiles[3][1]], 1)], 0)
            from stlm_core.data.transforms import resize_image

            return resize_image(image, self.size), resize_mask(mask, self.size, include_half=False), ci
        image, mask = self._load(ds, i, self.size)
        return image, mask, ci


def _collate(batch):
    images, masks, classes = zip(*batch)
    return list(images), torch.from_numpy(np.stack(masks)).float(), torch.tensor(classes)


def train_adapters(
    backbone: ClipBackbone,
    datasets: Sequence,
    dataset_name: str,
    config: ClipSamConfig,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[LinearAdapters, dict]:
    """Train APRIL-GAN adapters on the given datasets (each: a sequence of samples with masks, one category),
    with the training settings of ``config`` (``adapter_*``, ``focal_*``, ``logit_scale``).

    ``datasets`` should be the **test** splits of every category of ``dataset_name`` (cross-dataset protocol).
    Returns the adapters and a history ``{"epoch_loss": [...], "step_loss": [...], ...}``.
    """
    from tqdm import tqdm

    cfg = config
    torch.manual_seed(seed)
    epochs = cfg.epochs_for(dataset_name) if epochs is None else epochs
    classes = [ds.category for ds in datasets]
    text = torch.stack([backbone.text_features(c) for c in classes])            # (C, E, 2)
    adapters = LinearAdapters(backbone.width, backbone.embed_dim, backbone.n_layers).to(backbone.device)
    optimiser = torch.optim.Adam(adapters.parameters(), lr=cfg.adapter_lr, betas=cfg.adapter_betas)
    data = _MaskedImages(datasets, backbone.image_size, cfg.adapter_mosaic_rate.get(dataset_name, 0.0), seed)
    loader = DataLoader(data, batch_size=cfg.adapter_batch_size, shuffle=True, collate_fn=_collate,
                        generator=torch.Generator().manual_seed(seed))
    history: dict = {"epoch_loss": [], "step_loss": [], "epochs": epochs, "images": len(data)}
    adapters.train()
    for epoch in range(epochs):
        losses = []
        for images, masks, cls in tqdm(loader, desc=f"adapters epoch {epoch + 1}/{epochs}", disable=not progress):
            _, tokens = backbone.encode_image(backbone.preprocess(images))      # frozen CLIP
            probs = layer_probabilities(adapters(tokens), text[cls], backbone.image_size,
                                        cfg.logit_scale, cfg.map_align_corners)
            loss = adapter_loss(probs, masks.to(backbone.device), cfg.focal_gamma, cfg.focal_smooth)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        history["step_loss"] += losses
        history["epoch_loss"].append(float(np.mean(losses)))
    adapters.eval()
    return adapters, history


def save_adapters(path: str | Path, adapters: LinearAdapters, meta: dict) -> Path:
    """Write adapters + metadata (must include ``trained_on``) atomically with ``torch.save``."""
    if "trained_on" not in meta:
        raise ValueError("adapter metadata must name the dataset they were trained on ('trained_on')")
    from stlm_core.fileio import atomic_torch_save

    return atomic_torch_save({"format": FORMAT, "state_dict": adapters.state_dict(), "meta": meta}, path)


# APRIL-GAN's train.py saves ``{"trainable_linearlayer": LinearLayer.state_dict()}`` with keys ``fc.<i>.weight`` /
# ``fc.<i>.bias``; its released files (``mvtec_pretrained.pth``, ``visa_pretrained.pth``) are for ViT-L-14-336 at
# 518 px tapping blocks 6/12/18/24, and its LinearLayer drops the class token before the same per-layer Linear.
APRIL_GAN_KEY = "trainable_linearlayer"
APRIL_GAN_BACKBONE = {"clip_model": "ViT-L-14-336", "clip_layers": [6, 12, 18, 24], "clip_image_size": 518}


def _april_gan_checkpoint(path: Path, state: dict) -> tuple[dict, dict]:
    """(state dict for :class:`LinearAdapters`, metadata) of an APRIL-GAN checkpoint. The dataset the adapters
    were trained on is read from the file name, as APRIL-GAN names its releases (``mvtec_...`` / ``visa_...``)."""
    weights = sorted((k for k in state if k.startswith("fc.") and k.endswith(".weight")),
                     key=lambda k: int(k.split(".")[1]))
    if not weights:
        raise WeightsError(f"{path} has a '{APRIL_GAN_KEY}' entry without fc.<i>.weight tensors; it is not an "
                           "APRIL-GAN adapter checkpoint.")
    embed_dim, width = state[weights[0]].shape
    name = path.name.lower()
    trained_on = next((d for d in ("mvtec", "visa") if d in name), None)
    if trained_on is None:
        raise WeightsError(f"{path}: an APRIL-GAN checkpoint does not record the dataset its adapters were trained "
                           "on; name the file as APRIL-GAN's releases are named (mvtec_pretrained.pth = trained on "
                           "MVTec AD, visa_pretrained.pth = trained on VisA).")
    meta = {"trained_on": trained_on, "split": "test", "width": int(width), "embed_dim": int(embed_dim),
            "n_layers": len(weights), "source": "APRIL-GAN release", **APRIL_GAN_BACKBONE}
    return {"layers." + k[len("fc."):]: v for k, v in state.items() if k.startswith("fc.")}, meta


def load_adapters(path: str | Path, backbone: ClipBackbone | None = None) -> tuple[LinearAdapters, dict]:
    """Read adapters saved by :func:`save_adapters` or released by APRIL-GAN (``{"trainable_linearlayer": ...}``,
    e.g. its ``mvtec_pretrained.pth``); check they fit ``backbone`` (width, embed dim, layers)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"adapter file {path} does not exist; train one with 'stlm zeroshot-adapters train'.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise WeightsError(f"could not read adapter file {path}: {exc}") from None
    if isinstance(blob, dict) and isinstance(blob.get(APRIL_GAN_KEY), dict):
        state, meta = _april_gan_checkpoint(path, blob[APRIL_GAN_KEY])
    elif isinstance(blob, dict) and blob.get("format") == FORMAT:
        state, meta = blob["state_dict"], blob["meta"]
    else:
        raise WeightsError(f"{path} is neither an adapter file written by 'stlm zeroshot-adapters train' nor an "
                           f"APRIL-GAN checkpoint (a dict with '{APRIL_GAN_KEY}').")
    adapters = LinearAdapters(meta["width"], meta["embed_dim"], meta["n_layers"])
    adapters.load_state_dict(state)
    if backbone is not None:
        want = (backbone.width, backbone.embed_dim, backbone.n_layers, backbone.model_name, list(backbone.layers))
        have = (meta["width"], meta["embed_dim"], meta["n_layers"], meta.get("clip_model"), list(meta.get("clip_layers", [])))
        if want != have:
            raise WeightsError(
                f"adapters in {path} were trained for CLIP {have[3]} layers {have[4]} (width {have[0]}), but this "
                f"profile uses {want[3]} layers {want[4]} (width {want[0]}); train adapters with the same --profile.")
    return adapters.to(backbone.device if backbone is not None else "cpu").eval(), meta


def adapter_meta(backbone: ClipBackbone, dataset_name: str, categories: Sequence[str], history: dict,
                 config: ClipSamConfig) -> dict:
    """Metadata stored with trained adapters (and copied into run records); ``config``: the training settings."""
    return {
        "trained_on": dataset_name, "categories": list(categories), "split": "test",
        "width": backbone.width, "embed_dim": backbone.embed_dim, "n_layers": backbone.n_layers,
        "clip_model": backbone.model_name, "clip_layers": list(backbone.layers), "clip_image_size": backbone.image_size,
        "clip_weights": backbone.weights, "profile": config.profile, "epochs": history.get("epochs"),
        "images": history.get("images"), "epoch_loss": history.get("epoch_loss"),
        "lr": config.adapter_lr, "batch_size": config.adapter_batch_size,
    }
