"""What an exported model computes: one ``torch.nn.Module`` per method, from raw pixels to the reported map and
the image score, so that an exported file needs no Python code of this package at run time.

Input: float32 (B, 3, S, S), RGB values in [0, 255], already resized to the model's input size S (PIL bilinear, as
the evaluation does); the graph normalises. Outputs: ``map`` float32 (B, E, E) at the evaluation size and ``score``
(B,) with the method's own rule (STLM: mean of the top-k map values; PatchCore: the map's maximum).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class Normalise(nn.Module):
    """``(x / 255 - mean) / std`` on (B, 3, S, S), mean and std on the 0-1 scale (the evaluation's order of
    operations, so exported and eager inputs agree to the bit)."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x / 255.0 - self.mean) / self.std


class StlmGraph(nn.Module):
    """A trained STLM: both streams (or the frozen teacher standing in for the plain one), the FA head, the
    reported map (``fa``, else ``wo_fa``) upsampled to ``eval_size`` and the top-k image score. The teacher's
    distillation role is training only; it is here only where it *is* the plain stream."""

    def __init__(self, model: nn.Module, *, eval_size: int, top_k: int, normalisation=None):
        super().__init__()
        from stlm_core.data.transforms import NORMALISATIONS

        self.normalise = Normalise(*(normalisation or NORMALISATIONS["sam"]))
        self.model = model
        self.eval_size, self.top_k = int(eval_size), int(top_k)
        self.eval()  # inference only (the exporter restores this mode after tracing)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from stlm_core.stlm.model import image_scores, upsample

        out = self.model(self.normalise(image))
        reported = out["fa_map"] if out["fa_map"] is not None else out["wo_fa_map"]
        full = upsample(reported.float(), self.eval_size)
        return full, image_scores(full, self.top_k)


def nearest_distance(flat: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each row of ``flat`` (Q, D) to its nearest row of ``bank`` (N, D), (Q,); ``bank_sq``
    (N,) is ``(bank ** 2).sum(1)``. Written as ``|f|^2 - 2 f.m + |m|^2`` and one matrix product, which every export
    backend runs well (a ``cdist`` does not export)."""
    squared = (flat ** 2).sum(dim=1, keepdim=True) - 2 * flat @ bank.T + bank_sq[None]
    return squared.min(dim=1).values.clamp_min(0).sqrt()


class PatchCoreGraph(nn.Module):
    """A fitted PatchCore: backbone, local pooling, the 1-NN distance to the memory bank inside the graph (as
    ``|f|^2 - 2 f.m + |m|^2`` and one matrix product, which every backend runs well), upsampling, Gaussian blur and
    the max image score."""

    def __init__(self, detector, *, eval_size: int):
        super().__init__()
        from stlm_core.modeling.efficientnet_lite import IMAGENET_MEAN_255, IMAGENET_STD_255

        if not isinstance(detector.backbone, nn.Module) or detector.memory_bank is None:
            raise ValueError("PatchCoreGraph needs a fitted PatchCore with a torch backbone")
        self.normalise = Normalise(tuple(m / 255 for m in IMAGENET_MEAN_255), tuple(s / 255 for s in IMAGENET_STD_255))
        self.backbone = detector.backbone.eval()
        self.pool_size = detector.pool_size
        self.register_buffer("bank", detector.memory_bank.detach().float().clone())
        self.register_buffer("bank_sq", (self.bank ** 2).sum(dim=1))
        projection = detector._feature_projection if detector.feature_dim is not None else None
        self.register_buffer("projection", projection if projection is not None else torch.empty(0))
        self.blur_sigma = detector.blur_sigma if detector.blur else 0.0
        self.eval_size = int(eval_size)
        self.eval()  # inference only (the exporter restores this mode after tracing)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from stlm_core.baselines.patchcore import gaussian_blur

        f8, f16 = self.backbone(self.normalise(image))[:2]
        if self.pool_size > 1:
            pad = self.pool_size // 2
            f8 = F.avg_pool2d(f8, self.pool_size, stride=1, padding=pad)
            f16 = F.avg_pool2d(f16, self.pool_size, stride=1, padding=pad)
        f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        features = torch.cat([f8, f16], dim=1).permute(0, 2, 3, 1)
        if self.projection.numel():
            features = features @ self.projection
        b, h, w, d = features.shape
        patch = nearest_distance(features.reshape(b * h * w, d), self.bank, self.bank_sq).reshape(b, 1, h, w)
        full = F.interpolate(patch, size=(self.eval_size, self.eval_size), mode="bilinear", align_corners=False)[:, 0]
        if self.blur_sigma > 0:
            full = gaussian_blur(full, self.blur_sigma)
        return full, full.reshape(b, -1).max(dim=1).values


def graph_for_run(run_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """(inference module, facts for the sidecar) of a finished STLM or PatchCore run: STLM from its final
    checkpoint; PatchCore refitted on the run's recorded training images with its recorded config and seed (the
    same memory bank: the fit is deterministic)."""
    from stlm_core.errors import StlmError
    from stlm_core.fileio import read_json
    from stlm_core.runs import CONFIG_FILE, DATA_FILE

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise StlmError(f"{run_dir} is not a run directory (no {CONFIG_FILE}); pass a finished 'stlm train' or "
                        "PatchCore run (runs/<method>/<dataset>/<category>/<run-id>).")
    record = read_json(run_dir / CONFIG_FILE)
    method = record.get("method")
    if method == "stlm":
        from stlm_core.stlm.evaluation import load_model

        model, config, _ = load_model(run_dir, device)
        graph = StlmGraph(model, eval_size=config.eval_size, top_k=config.top_k)
        facts = {"input_size": config.image_size, "eval_size": config.eval_size, "normalisation": "sam",
                 "score": f"mean of the top {config.top_k} map values"}
    elif method == "patchcore":
        from stlm_core.baselines.patchcore_run import PatchCoreConfig, build_patchcore
        from stlm_core.data.spec import DataSpec

        config = PatchCoreConfig.from_dict(record["config"])
        recorded = read_json(run_dir / DATA_FILE)
        data = DataSpec(recorded["dataset"], recorded["root"], recorded["category"], recorded.get("limit"))
        data.validate(("train",), action=f"refit PatchCore for {run_dir}")
        detector = build_patchcore(config, device).fit([s.image for s in data.open("train")])
        graph = PatchCoreGraph(detector, eval_size=config.eval_size)
        facts = {"input_size": config.image_size, "eval_size": config.eval_size, "normalisation": "imagenet",
                 "score": "maximum of the map", "memory_bank": int(detector.memory_bank.shape[0])}
    else:
        raise StlmError(f"{run_dir} is a {method} run; 'stlm export' takes finished STLM and PatchCore runs.")
    return graph.eval(), {"method": method, "record": record, **facts}
