"""Time per image of each CLIP-SAM stage on this device.

Models are randomly initialised (timing only: cost does not depend on the weights) and the bench never looks for
checkpoints. The CLIP stage includes adapters (random) and the upsampled map; text features are cached after the
warm-up, as in a real run. PPG and CPS run on a constructed CLIP map with one Gaussian blob (peak 1, S_a non-empty,
one component), so they do their full work whatever the random CLIP map looks like.

Stages: ``clip`` (CLIP image encoder + adapters + map), ``sam_encoder`` (``SamPredictor.set_image``), ``ppg``
(S_a, positives, ring, SAM-feature similarity, negatives), ``cps`` (the 3-stage cascade = 3 decoder calls).
Inside the same timed cascades each decoder call is timed too: ``cps_stage1`` is the first call (what a single-pass
method pays) and ``cps_overhead_ms`` the median of stages 2-3 together, i.e. the extra cost of cascading (the paper:
about 100 ms on its GPU). Timing them inside one run keeps the difference robust to load changes on a shared CPU.
"""

from __future__ import annotations

import os

import numpy as np


class _TimedPredictor:
    """Wraps a ``SamPredictor``: records (is stage 1, ms) of every ``predict`` call into ``calls[-1]``; stage-1
    calls are those without a mask prompt (including a multimask fallback of stage 1)."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.calls: list[list[tuple[bool, float]]] = [[]]

    def predict(self, **kwargs):
        import time

        start = time.perf_counter()
        out = self.predictor.predict(**kwargs)
        self.calls[-1].append((kwargs.get("mask_input") is None, (time.perf_counter() - start) * 1e3))
        return out


def blob_map(shape: tuple[int, int], sigma_fraction: float = 0.08) -> np.ndarray:
    """A (H, W) map in [0, 1] with one Gaussian blob at the centre (peak 1)."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    sigma = sigma_fraction * min(h, w)
    return np.exp(-(((xs - w / 2) ** 2 + (ys - h / 2) ** 2) / (2 * sigma**2))).astype(np.float32)


def bench_clipsam(profile: str, image_size: int | None = None, runs: int = 3, warmup: int = 1,
                  device: str = "cpu", seed: int = 0, decoder_runs: int = 15) -> dict:
    """Per-stage latency (ms, median over ``runs``) of one image of ``image_size`` squared (default: the SAM input
    size of the profile), with parameter counts, peak memory and the CPS overhead fraction.

    The cheap decoder-only stage ``cps`` is timed ``max(runs, decoder_runs)`` times (its overhead is small and
    noisy on a shared CPU)."""
    import torch

    from stlm_core.bench import count_parameters, environment_info, measure_latency, peak_memory_mb, reset_peak_memory
    from stlm_core.clipsam.adapters import LinearAdapters
    from stlm_core.clipsam.clip_localiser import AdapterLocaliser, build_clip
    from stlm_core.clipsam.config import ClipSamConfig
    from stlm_core.clipsam.cps import run_cascade
    from stlm_core.clipsam.pipeline import ClipSamPipeline
    from stlm_core.clipsam.ppg import PromptRules, generate_prompts, sam_similarity_fn
    from stlm_core.clipsam.sam_backend import build_sam

    config = ClipSamConfig.from_profile(profile)
    size = int(image_size or config.sam_image_size)
    torch.manual_seed(seed)
    reset_peak_memory(device)
    clip = build_clip(config, checkpoint=None, device=device)
    adapters = LinearAdapters(clip.width, clip.embed_dim, config.n_layers).to(device)
    sam = build_sam(config, checkpoint=None, device=device)
    pipe = ClipSamPipeline(config, clip, AdapterLocaliser(adapters, trained_on=None), sam)

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    clip_map = blob_map((size, size))
    state: dict = {}

    def clip_stage():
        pipe.clip_stage(image, "object")

    def sam_encoder():
        sam.set_image(image)

    def ppg():
        state["prompts"] = generate_prompts(clip_map, sam_similarity_fn(sam, config.cofeature),
                                            PromptRules.from_config(config))

    timed = _TimedPredictor(sam.predictor)

    def cps():
        timed.calls.append([])
        for p in state["prompts"]:
            run_cascade(timed, p.points, p.labels, config.cps_stages, config.multimask, config.box_mode, clip_map,
                        config.multimask_fallback)

    stages = {}
    with torch.inference_mode():
        stages["clip"] = measure_latency(clip_stage, warmup=warmup, runs=runs, device=device)
        stages["sam_encoder"] = measure_latency(sam_encoder, warmup=warmup, runs=runs, device=device)
        stages["ppg"] = measure_latency(ppg, warmup=warmup, runs=runs, device=device)
        n_dec = max(runs, decoder_runs)
        stages["cps"] = measure_latency(cps, warmup=max(warmup, 1), runs=n_dec, device=device)
    # per decoder call of the timed runs (the last n_dec cascades): stage 1 vs the extra stages 2..n
    per_run = timed.calls[-n_dec:]
    stage1 = [sum(ms for first, ms in run if first) for run in per_run]
    extra = [sum(ms for first, ms in run if not first) for run in per_run]
    for timing in stages.values():
        timing.pop("times_ms", None)
    median = {name: t["median_ms"] for name, t in stages.items()}
    median["cps_stage1"] = float(np.median(stage1))
    total = median["clip"] + median["sam_encoder"] + median["ppg"] + median["cps"]
    overhead = float(np.median(extra))
    return {
        "method": "clipsam",
        "profile": profile,
        "weights": "random-init (timing only)",
        "image_size": size,
        "clip_model": config.clip_model,
        "clip_image_size": config.clip_image_size,
        "sam_arch": config.sam_arch,
        "sam_image_size": config.sam_image_size,
        "prompts": {"components": len(state["prompts"]),
                    "points": int(sum(len(p.points) for p in state["prompts"])),
                    # > 3 per component when the empty-mask fallback (multimask) fired, as with random weights
                    "decoder_calls_per_cascade": float(np.mean([len(run) for run in per_run]))
                    / max(len(state["prompts"]), 1)},
        "stages": stages,
        "median_ms": median,
        "total_ms": total,
        "cps_fraction": median["cps"] / total,
        "cps_overhead_ms": overhead,
        "cps_overhead_fraction": overhead / total,
        "parameters": {
            "clip_visual": count_parameters(clip.model.visual, depth=0)["total"],
            "clip_text_total": count_parameters(clip.model, depth=0)["total"]
            - count_parameters(clip.model.visual, depth=0)["total"],
            "adapters": count_parameters(adapters, depth=0)["total"],
            "sam": count_parameters(sam.model, depth=1),
        },
        "peak_memory_mb": peak_memory_mb(device),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # shared machines: context
        "environment": environment_info(device),
    }
