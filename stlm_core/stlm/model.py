"""The STLM inference model: two student streams + shared decoder + FA head, and its anomaly maps.

Conventions: inputs are SAM-normalised images (B, 3, S, S); features are lists over levels
(level 1 = image embedding, level 2 = decoder-transformer output), each (B, 256, S/16, S/16) (S/8 with an
EfficientNet-Lite teacher at feature_stride 8).

- ``wo_fa_map`` (the map "w/o FA") = prod_l (1 - cos(P_l, D_l)) (or the sum over levels), (B, 1, h, w); with
  ``level_norm="normal_stats"`` each level's distance is first standardised, (d_l - mean_l) / std_l, with its mean
  and standard deviation over every pixel of the clean training images (:meth:`STLM.set_level_stats`), so no
  level dominates the sum by its scale alone;
- ``fa_map`` = FA(concat_l(-P^_l * D^_l)), (B, 1, h, w), in [0, 1] (``None`` when FA is switched off);
- :func:`upsample` to the evaluation size (bilinear, align_corners=False) and :func:`image_scores`
  (mean of the top-k pixels) turn them into pixel maps and image scores.

Ablation ``use_plain=False``: the frozen teacher takes the plain stream's place (at training and inference),
i.e. a DeSTSeg-like teacher / denoising-student pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stlm_core.modeling.fa_head import FAHead


def l2_normalise(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """x / (||x||_2 + eps) over the channel dimension (dim 1)."""
    return x / (x.norm(p=2, dim=1, keepdim=True) + eps)


def cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - cos(x, y) per pixel: (B, C, h, w) x 2 -> (B, 1, h, w), in [0, 2]."""
    return 1.0 - (l2_normalise(x) * l2_normalise(y)).sum(dim=1, keepdim=True)


class STLM(nn.Module):
    """Students + shared decoder + FA head (everything that runs at inference, teacher excluded)."""

    def __init__(self, *, denoise: nn.Module, decoder: nn.Module | None, plain: nn.Module | None = None,
                 plain_teacher: nn.Module | None = None, fa: FAHead | None = None, levels: int = 2,
                 wo_fa_combine: str = "product", freeze_student_bn: bool = False, fa_detach: bool = False,
                 level_norm: str = "none"):
        """Exactly one of ``plain`` (a student) and ``plain_teacher`` (the frozen teacher standing in for the plain
        stream) is given; ``fa=None`` switches the FA head off. Students either return one embedding, which the
        shared ``decoder`` turns into feature levels, or the levels themselves (``decoder=None``). ``levels``: how
        many levels are compared; ``wo_fa_combine``: ``product`` or ``sum`` of the per-level cosine distances;
        ``freeze_student_bn``: keep the students' BatchNorm statistics fixed while training (small batches);
        ``fa_detach``: the FA head reads detached features (its losses train the head only, not the streams);
        ``level_norm``: ``none`` or ``normal_stats`` (per-level standardisation of the w/o-FA distances, with
        statistics held in the ``level_stats`` buffer, (levels, 2) = (mean, std), set after training)."""
        super().__init__()
        if (plain is None) == (plain_teacher is None):
            raise ValueError("pass exactly one of plain (student) and plain_teacher (teacher as plain stream)")
        if wo_fa_combine not in ("product", "sum"):
            raise ValueError(f"wo_fa_combine must be 'product' or 'sum', got {wo_fa_combine!r}")
        if level_norm not in ("none", "normal_stats"):
            raise ValueError(f"level_norm must be 'none' or 'normal_stats', got {level_norm!r}")
        self.plain = plain
        self.plain_teacher = plain_teacher
        self.denoise = denoise
        self.decoder = decoder
        self.fa = fa
        self.levels = levels
        self.wo_fa_combine = wo_fa_combine
        self.freeze_student_bn = freeze_student_bn
        self.fa_detach = fa_detach
        self.level_norm = level_norm
        if level_norm != "none":  # only then: the paper model's state dict keeps the official keys
            self.register_buffer("level_stats", torch.tensor([[0.0, 1.0]] * levels))

    def train(self, mode: bool = True) -> "STLM":
        super().train(mode)
        if mode and self.freeze_student_bn:
            for student in (self.plain, self.denoise):
                for module in (student.modules() if student is not None else []):
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    def _levels(self, student: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        features = student(x)
        if not isinstance(features, (list, tuple)):
            features = self.decoder(features)
        return list(features)[:self.levels]

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups: ``tlm`` (students + decoder + prompt encoder, Adam) and ``fa_res`` / ``fa_head`` (SGD)."""
        decoder = list(self.decoder.parameters()) if self.decoder is not None else []
        tlm = [p for p in list(self.denoise.parameters()) + decoder if p.requires_grad]
        if self.plain is not None:
            tlm = [p for p in self.plain.parameters() if p.requires_grad] + tlm
        groups = {"tlm": tlm}
        if self.fa is not None:
            groups["fa_res"] = list(self.fa.res.parameters())
            groups["fa_head"] = list(self.fa.head.parameters())
        return groups

    def streams(self, x: torch.Tensor, teacher_features: list[torch.Tensor] | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(plain features P, denoising features D), each a list over levels. ``teacher_features``: the frozen
        teacher's features of ``x`` when the caller has them already (training computes them for the targets);
        used only where the teacher is the plain stream, so it does not run twice."""
        if self.plain is not None:
            plain = self._levels(self.plain, x)
        elif teacher_features is not None:
            plain = list(teacher_features)[:self.levels]
        else:
            plain = self.plain_teacher(x)[:self.levels]
        return plain, self._levels(self.denoise, x)

    def maps(self, plain: list[torch.Tensor], denoise: list[torch.Tensor]) -> dict[str, torch.Tensor | None]:
        """``{"wo_fa_map", "fa_map", "fa_logits"}``, each (B, 1, h, w) (FA entries ``None`` without FA)."""
        distances = self.level_distances(plain, denoise)
        if self.level_norm == "normal_stats":
            distances = [(d - stats[0]) / stats[1] for d, stats in zip(distances, self.level_stats)]
        wo_fa = distances[0]
        for distance in distances[1:]:
            wo_fa = wo_fa * distance if self.wo_fa_combine == "product" else wo_fa + distance
        fa = logits = None
        if self.fa is not None:
            if self.fa_detach:
                plain, denoise = [p.detach() for p in plain], [d.detach() for d in denoise]
            fa_input = torch.cat([-l2_normalise(p) * l2_normalise(d) for p, d in zip(plain, denoise)], dim=1)
            logits = self.fa.logits(fa_input)
            fa = torch.sigmoid(logits)
        return {"wo_fa_map": wo_fa, "fa_map": fa, "fa_logits": logits}

    @staticmethod
    def level_distances(plain: list[torch.Tensor], denoise: list[torch.Tensor]) -> list[torch.Tensor]:
        """1 - cos(P_l, D_l) per level, each (B, 1, h, w) in [0, 2] (no normalisation)."""
        return [cosine_distance(p, d) for p, d in zip(plain, denoise)]

    def set_level_stats(self, batches) -> torch.Tensor:
        """Measure (:func:`measure_level_stats`) and store ``level_stats`` on ``batches`` of clean normal images."""
        if self.level_norm == "none":
            raise ValueError("set_level_stats: this model has level_norm 'none'")
        self.level_stats.copy_(measure_level_stats(self, batches).to(self.level_stats))
        return self.level_stats

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        return self.maps(*self.streams(x))

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The state to checkpoint: everything but a frozen teacher standing in for the plain stream (it is
        rebuilt from its own weights)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("plain_teacher.")}


@torch.no_grad()
def measure_level_stats(model: STLM, batches) -> torch.Tensor:
    """(levels, 2) float64 = (mean, std) of each level's 1 - cos(P_l, D_l) over every pixel of ``batches`` (an
    iterable of SAM-normalised clean normal images (B, 3, S, S)); eval mode while measuring, the previous mode
    restored. A std below 1e-6 is clamped there (a level that never differs)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums = torch.zeros(model.levels, dtype=torch.float64)
    squares = torch.zeros(model.levels, dtype=torch.float64)
    count = 0
    for x in batches:
        distances = model.level_distances(*model.streams(x.to(device)))
        for level, d in enumerate(distances):
            sums[level] += d.double().sum().cpu()
            squares[level] += (d.double() ** 2).sum().cpu()
        count += distances[0].numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("measure_level_stats: no images")
    mean = sums / count
    std = (squares / count - mean ** 2).clamp_min(0).sqrt().clamp_min(1e-6)
    return torch.stack([mean, std], dim=1)


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, h, w) -> (B, size, size), bilinear, align_corners=False (no smoothing)."""
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def image_scores(maps: torch.Tensor, top_k: int = 100) -> torch.Tensor:
    """Mean of the ``top_k`` largest pixels of each map: (B, H, W) -> (B,)."""
    flat = maps.flatten(1)
    return flat.topk(min(top_k, flat.shape[1]), dim=1).values.mean(dim=1)


def parameter_counts(model: STLM) -> dict[str, int]:
    """Parameters per inference module and the total (teacher excluded unless it replaces the plain stream)."""
    def count(module: nn.Module | None) -> int:
        return 0 if module is None else sum(p.numel() for p in module.parameters())

    counts = {
        "student_plain": count(model.plain),
        "student_denoise": count(model.denoise),
        "mask_decoder": count(model.decoder.mask_decoder) if model.decoder is not None else 0,
        "prompt_encoder": count(model.decoder.prompt_encoder) if model.decoder is not None else 0,
        "fa_head": count(model.fa),
    }
    if model.plain_teacher is not None:
        counts["teacher_as_plain_stream"] = count(model.plain_teacher)
    counts["total"] = sum(counts.values())
    return counts
