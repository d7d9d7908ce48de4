"""Evaluate a trained STLM run: FA and w/o-FA maps of the test split -> the run record.

Entry point: :func:`evaluate` (``stlm evaluate``). Test images are resized to the model input (PIL bilinear) and
SAM-normalised; maps are upsampled bilinearly (align_corners=False, no smoothing) to the profile's evaluation size;
masks are resized to it (bilinear, >= 0.5 as the official reader); image score = mean of the top-k (100) pixels of the upsampled map.
The primary map is ``fa`` (``wo_fa`` when the FA head is switched off); ``wo_fa`` is always recorded too.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from stlm_core.data.spec import DataSpec
from stlm_core.errors import StlmError
from stlm_core.fileio import read_json
from stlm_core.runs import CHECKPOINT_FILE, CONFIG_FILE, DATA_FILE, Run, RunMaps, read_config
from stlm_core.runtime import resolve_device
from stlm_core.stlm.build import build_for_training, build_stlm, resolve_stlm_weights
from stlm_core.stlm.checkpoint import load_checkpoint
from stlm_core.stlm.config import StlmConfig
from stlm_core.stlm.model import image_scores, upsample


# Where a run of another method comes from, for the message refusing it.
OTHER_METHODS = {"clipsam": "written by 'stlm zeroshot', which evaluates as it runs (its metrics.json is the result)"}


def run_record_of(run_dir: str | Path) -> dict:
    """``config.json`` of an STLM run directory; a folder that is not one is refused with a message saying why."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        what = "does not exist" if not run_dir.exists() else f"is not a run directory (it has no {CONFIG_FILE})"
        raise StlmError(f"{run_dir} {what}; pass the --out folder of a 'stlm train' run (by default "
                        "runs/stlm/<dataset>/<category>/<run-id>).")
    record = read_config(run_dir)
    method = record.get("method", "unknown")
    if method != "stlm":
        origin = OTHER_METHODS.get(method, "")
        raise StlmError(f"{run_dir} is a {method} run{' ' + origin if origin else ''}, not an STLM run; "
                        "'stlm evaluate' and 'stlm train --resume' take runs written by 'stlm train'.")
    return record


def run_config(run_dir: str | Path) -> StlmConfig:
    """The :class:`StlmConfig` of a run directory; a run of another method is refused with a clear message."""
    return StlmConfig.from_dict(run_record_of(run_dir)["config"])


def load_model(run_dir: str | Path, device: str = "cpu"):
    """(model in eval mode, config, checkpoint dict) of a trained run."""
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT_FILE, device)
    if config.use_plain:
        # Inference needs no teacher and no official weights: everything comes from the checkpoint.
        torch.manual_seed(config.seed)
        model = build_stlm(config)
    else:  # the teacher stands in for the plain stream: rebuild it from its weights (or the checkpoint)
        model, teacher = build_for_training(config, resolve_stlm_weights(config))
        if state.get("teacher") is not None:
            teacher.load_state_dict(state["teacher"])
    model.load_state_dict(state["model"], strict=False)
    model.to(device).eval()
    return model, config, state


@torch.no_grad()
def infer(model, images: np.ndarray, config: StlmConfig, device: str = "cpu", batch_size: int = 8,
          progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(maps, scores) for uint8 images (N, S, S, 3): name (``fa``, ``wo_fa``) -> float32 (N, E, E) at
    ``config.eval_size``, and name -> (N,) image scores."""
    from tqdm import tqdm

    from stlm_core.data.transforms import to_tensor

    maps: dict[str, list] = {"fa": [], "wo_fa": []}
    scores: dict[str, list] = {"fa": [], "wo_fa": []}
    for start in tqdm(range(0, len(images), batch_size), desc="infer", disable=not progress, leave=False):
        x = torch.stack([to_tensor(im, "sam") for im in images[start:start + batch_size]]).to(device)
        out = model(x)
        for name in ("fa", "wo_fa"):
            m = out[f"{name}_map"]
            if m is None:
                continue
            full = upsample(m.float(), config.eval_size)
            maps[name].append(full.cpu().numpy().astype(np.float32))
            scores[name].append(image_scores(full, config.top_k).cpu().numpy())
    return ({k: np.concatenate(v) for k, v in maps.items() if v},
            {k: np.concatenate(v) for k, v in scores.items() if v})


def evaluate_locked(run: Run, *, device: str = "auto", save_maps: bool = True, progress: bool = True,
                    batch_size: int = 8) -> Path:
    """:func:`evaluate` for a caller that is already writing the run (training): the final checkpoint's maps of
    the test split, scored and recorded with :meth:`~stlm_core.runs.Run.finish`."""
    device = resolve_device(device)
    model, config, state = load_model(run.run_dir, device)
    t0 = time.perf_counter()
    test = run.data.load_test(config.image_size, config.eval_size, progress=progress)
    n_images = len(test["labels"])
    t1 = time.perf_counter()
    maps, scores = infer(model, test["images"], config, device, batch_size, progress)
    infer_s = time.perf_counter() - t1
    run_maps = RunMaps(primary="fa" if "fa" in maps else "wo_fa", maps=maps, scores=scores, labels=test["labels"],
                       masks=test["masks"], defects=test["defects"], paths=test["paths"])
    run.finish(
        run_maps, profile=config.profile, device=device, seed=config.seed, weights=state["weights"], save=save_maps,
        timings={"train_s": state["train_s"], "eval_s": time.perf_counter() - t0,
                 "infer_ms_per_image": 1000 * infer_s / n_images},
        epochs=state["epoch"], steps=state["step"], checkpoint="final epoch (no selection on test data)",
        train_threads=state.get("threads"), resumed_from=state.get("resumed_from"),
        textures=state.get("textures"), eval_size=config.eval_size, image_size=config.image_size,
    )
    return run.run_dir


def evaluate(run_dir: str | Path, *, root: str | Path | None = None, device: str = "auto", save_maps: bool = True,
             progress: bool = True, batch_size: int = 8) -> Path:
    """Evaluate a trained run's final checkpoint on its test split; writes the run record, returns ``run_dir``.

    ``root``: the dataset root (default: the one recorded at training time).
    """
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    if config.profile == "paper":  # the paper profile refuses to run without the official weights
        resolve_stlm_weights(config)
    recorded = read_json(run_dir / DATA_FILE)
    data = DataSpec(recorded["dataset"], Path(root) if root is not None else Path(recorded["root"]),
                    recorded["category"], recorded.get("limit"))
    if not data.root.exists():
        raise StlmError(f"the run's dataset root {data.root} does not exist; pass --root DIR.")
    data.validate(("test",), action=f"evaluate {run_dir}")
    load_checkpoint(run_dir / CHECKPOINT_FILE)  # a missing or damaged checkpoint is reported before any change
    run = Run.open(run_dir, data, locations={k: v for k, v in recorded.items()
                                             if k not in ("dataset", "root", "category", "limit")})
    with run.writing(resume=True):
        return evaluate_locked(run, device=device, save_maps=save_maps, progress=progress, batch_size=batch_size)
