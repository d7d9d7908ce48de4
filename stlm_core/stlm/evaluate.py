"""Evaluate a trained STLM run: FA and w/o-FA maps -> ``metrics.json`` (spec section 4).

Test images are resized to the model input size (PIL bilinear) and SAM-normalised; maps are upsampled
bilinearly (align_corners=False, no smoothing) to the profile's evaluation size, masks are resized to it
(bilinear, > 0.5); image score = mean of the top-k (100) pixels of the upsampled map.

Files written into the run directory:

- ``metrics.json``: the FA map's metrics at the top level (``map: "fa"``; the w/o-FA map's when FA is off),
  the w/o-FA map's under ``wo_fa``, and the provenance (weights identities, dataset, timings);
- ``metrics_wo_fa.json``: the w/o-FA map's metrics on their own (for ``load_runs(name=...)``);
- ``maps.npz`` with ``--save-maps``: ``fa_maps`` / ``tlm_maps`` float16 (N, E, E), ``fa_scores`` /
  ``tlm_scores``, ``labels``, ``masks`` uint8 (N, E, E), ``paths``, ``defects`` (compressed).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from stlm_core.errors import StlmError
from stlm_core.stlm.config import StlmConfig

MAPS_FILE = "maps.npz"


def load_model(run_dir: str | Path, device: str = "cpu"):
    """(model in eval mode, config, checkpoint dict) of a trained run."""
    from stlm_core.results import read_json
    from stlm_core.stlm.model import STLM, weights_paths
    from stlm_core.stlm.train import CHECKPOINT, build_for_training

    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    if not ckpt_path.exists():
        raise StlmError(f"no checkpoint at {ckpt_path}; train first with 'stlm train ... --out {run_dir}'.")
    state = torch.load(ckpt_path, map_location=device, weights_only=False)
    config = StlmConfig.from_dict(read_json(run_dir / "config.json")["stlm"])
    if config.use_plain:
        # Inference needs no teacher and no official weights: everything comes from the checkpoint.
        torch.manual_seed(config.seed)
        model = STLM(config)
    else:  # the teacher stands in for the plain stream: rebuild it from its weights (or the checkpoint)
        model, teacher = build_for_training(config, weights_paths(config, require=config.profile == "paper"))
        if state.get("teacher") is not None:
            teacher.load_state_dict(state["teacher"])
    model.load_state_dict(state["model"], strict=False)
    model.to(device).eval()
    return model, config, state


@torch.no_grad()
def infer(model, images: np.ndarray, config: StlmConfig, device: str = "cpu", batch_size: int = 8,
          progress: bool = True) -> dict[str, np.ndarray]:
    """Maps (N, E, E) float32 at ``config.eval_size`` and image scores (N,) for uint8 images (N, S, S, 3)."""
    from tqdm import tqdm

    from stlm_core.data.transforms import to_tensor
    from stlm_core.stlm.model import image_scores, upsample

    out: dict[str, list] = {"fa_maps": [], "tlm_maps": [], "fa_scores": [], "tlm_scores": []}
    for start in tqdm(range(0, len(images), batch_size), desc="infer", disable=not progress, leave=False):
        x = torch.stack([to_tensor(im, "sam") for im in images[start:start + batch_size]]).to(device)
        maps = model(x)
        for name in ("fa", "tlm"):
            m = maps[f"{name}_map"]
            if m is None:
                continue
            full = upsample(m.float(), config.eval_size)
            out[f"{name}_maps"].append(full.cpu().numpy())
            out[f"{name}_scores"].append(image_scores(full, config.top_k).cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items() if v}


def evaluate_run(run_dir: str | Path, *, root: str | Path | None = None, device: str = "auto",
                 save_maps: bool = False, progress: bool = True, batch_size: int = 8) -> dict:
    """Evaluate the run's final checkpoint on the test split; writes and returns the metrics records.

    Returns ``{"fa": metrics or None, "wo_fa": metrics}`` (keys of ``stlm_core.metrics.compute_metrics``).
    """
    from stlm_core.data.transforms import resize_mask
    from stlm_core.metrics import compute_metrics
    from stlm_core.results import make_provenance, read_json, write_metrics
    from stlm_core.stlm.train import DATA_FILE, load_images, resolve_device

    from stlm_core.stlm.model import weights_paths

    device = resolve_device(device)
    run_dir = Path(run_dir)
    if (run_dir / "config.json").is_file():
        planned = StlmConfig.from_dict(read_json(run_dir / "config.json")["stlm"])
        if planned.profile == "paper":  # the paper profile refuses to run without the official weights
            weights_paths(planned, require=True)
    model, config, state = load_model(run_dir, device)
    data = read_json(run_dir / DATA_FILE)
    root = Path(root) if root is not None else Path(data["root"])
    if not root.exists():
        raise StlmError(f"the run's dataset root {root} does not exist; pass --root DIR.")
    t0 = time.perf_counter()
    images, samples = load_images(data["dataset"], root, data["category"], "test", config.image_size, progress)
    masks = np.stack([resize_mask(s.mask, config.eval_size) for s in samples]).astype(np.uint8)
    labels = np.array([int(s.label) for s in samples])
    t1 = time.perf_counter()
    out = infer(model, images, config, device, batch_size, progress)
    infer_s = time.perf_counter() - t1
    metrics_tlm = compute_metrics(masks=masks, maps=out["tlm_maps"], labels=labels, image_scores=out["tlm_scores"])
    metrics_fa = compute_metrics(masks=masks, maps=out["fa_maps"], labels=labels, image_scores=out["fa_scores"]) if "fa_maps" in out else None
    eval_s = time.perf_counter() - t0

    provenance = make_provenance(
        profile=config.profile, device=device, weights=state["weights"],
        dataset={"name": data["dataset"], "category": data["category"], "files": len(samples),
                 "root": str(root), "synthetic": data["dataset"] == "synthetic"},
        seed=config.seed,
        timings={"train_s": state["train_s"], "eval_s": eval_s, "infer_ms_per_image": 1000 * infer_s / len(samples)},
        epochs=state["epoch"], steps=state["step"], checkpoint="final epoch (no selection on test data)",
        textures=state.get("textures"), eval_size=config.eval_size, image_size=config.image_size,
    )
    write_metrics(run_dir, {**metrics_tlm, "map": "wo_fa"}, provenance, name="metrics_wo_fa.json")
    primary = {**(metrics_fa or metrics_tlm), "map": "fa" if metrics_fa else "wo_fa", "wo_fa": metrics_tlm}
    write_metrics(run_dir, primary, provenance)
    if save_maps:
        arrays = {k: (v.astype(np.float16) if k.endswith("_maps") else v.astype(np.float32)) for k, v in out.items()}
        np.savez_compressed(run_dir / MAPS_FILE, **arrays, labels=labels, masks=masks,
                            paths=np.array([str(s.path) for s in samples]),
                            defects=np.array([s.defect for s in samples]))
    return {"fa": metrics_fa, "wo_fa": metrics_tlm}
