"""Inference cost of STLM on this device: parameters per module and batch-1 latency.

Timed: students + shared decoder + FA head (+ the w/o-FA map), fp32, batch 1, under ``torch.inference_mode``,
after warm-up; the teacher (training only), data loading and upsampling to the evaluation size are excluded.
Randomly initialised weights: the cost of the architecture does not depend on them, so no download is needed.
"""

from __future__ import annotations

from typing import Any


def bench_stlm(profile: str, image_size: int | None = None, runs: int = 10, warmup: int = 2,
               device: str = "cpu") -> dict[str, Any]:
    """``{"model", "profile", "image_size", "batch_size", "parameters", "latency", "peak_memory_mb", ...}``.

    ``parameters`` maps module -> count (``student_plain``, ``student_denoise``, ``mask_decoder``,
    ``prompt_encoder``, ``fa_head``, ``total``); ``latency`` is :func:`stlm_core.bench.measure_latency`'s dict
    (milliseconds).
    """
    import torch

    from stlm_core.bench import environment_info, peak_memory_mb, reset_peak_memory, measure_latency
    from stlm_core.stlm.build import build_stlm
    from stlm_core.stlm.config import StlmConfig
    from stlm_core.stlm.model import parameter_counts

    overrides: dict[str, Any] = {}
    if image_size is not None:
        overrides["image_size"] = overrides["eval_size"] = image_size
        if image_size != 1024:
            overrides["teacher"] = "reduced"  # the teacher is not built; only its registry size check matters
    config = StlmConfig.from_profile(profile, **overrides)
    torch.manual_seed(config.seed)
    model = build_stlm(config).to(device).eval()
    x = torch.randn(1, 3, config.image_size, config.image_size, device=device)

    def step():
        with torch.inference_mode():
            return model(x)

    reset = reset_peak_memory(device)
    latency = measure_latency(step, warmup=warmup, runs=runs, device=device)
    return {
        "model": "stlm",
        "profile": profile,
        "image_size": config.image_size,
        "feature_grid": config.embed_size,
        "batch_size": 1,
        "precision": "fp32",
        "timed": "students + shared decoder + FA head (teacher excluded)",
        "weights": "random-init (architecture cost only)",
        "parameters": parameter_counts(model),
        "latency": latency,
        "peak_memory_mb": peak_memory_mb(device),
        "peak_memory_reset": reset,
        "environment": environment_info(device),
    }
