"""STLM training: pseudo-anomalies, the four losses, two optimisers, atomic per-epoch checkpoints, resume.

Losses (spec section 3, weights all 1): for each feature level l,
``L_plain = sum_l mean(1 - cos(P_l(I_a), T_l(I_a)))``, ``L_denoise = sum_l mean(1 - cos(D_l(I_a), T_l(I_n)))``,
``L_focal = mean(BCE(p, y) * (1 - p_t)**4)`` (evaluated from the logits, see :func:`focal_loss`) and
``L_L1 = mean|p - y|`` on the FA output p against the pseudo-anomaly mask y (bilinear to the feature grid, > 0.5); one backward over the sum. The FA input is not
detached (joint training, as in the official code). Optimisers: Adam (lr 5e-4, betas (0.5, 0.999)) over both
students, the shared decoder and the prompt encoder; SGD (momentum 0.9, weight decay 1e-4) over the FA head,
lr 0.1 for its residual blocks and 0.01 for its ASPP head. No schedule.

Run directory (``runs/stlm/<dataset>/<category>/<config-id>/`` by default)::

    config.json       the run's configuration (stlm_core.results.prepare_run_dir)
    data.json         dataset name, root and category (not part of the config id)
    checkpoint.pt     written atomically at the end of every epoch: model, optimisers, RNG states, counters
    losses.jsonl      one line per optimisation step (epoch, step, losses, seconds)
    metrics.json ...  written by :mod:`stlm_core.stlm.evaluate`

Reproducibility: one seed fixes the model initialisation (``torch.manual_seed``), the data order and every
pseudo-anomaly (one ``numpy.random.Generator``); on the CPU the run is deterministic, and the checkpoint holds
the generator and torch RNG states, so ``--resume`` after a kill reaches the same final weights as an
uninterrupted run. The reported model is the **final** epoch: there is no selection on test data.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stlm_core.errors import StlmError
from stlm_core.stlm.config import StlmConfig, resolved_rotation

CHECKPOINT = "checkpoint.pt"
LOSSES = "losses.jsonl"
DATA_FILE = "data.json"
CHECKPOINT_FORMAT = 1


class TrainingDiverged(StlmError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------------------- losses


def cosine_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """sum over levels of the mean per-pixel cosine distance."""
    from stlm_core.stlm.model import cosine_distance

    return sum(cosine_distance(s, t).mean() for s, t in zip(student, teacher))


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 4.0) -> torch.Tensor:
    """mean(BCE(p, y) * (1 - p_t)**gamma), p = sigmoid(logits), p_t = p y + (1 - p)(1 - y); no alpha weighting.

    Computed from the logits. The official code applies ``binary_cross_entropy`` to the sigmoid output; once a
    pixel saturates (p == 0.0 or 1.0 in float32, logit beyond about +-17 / -88), the log is clamped at -100 and
    the pixel's gradient is exactly zero, so a confidently wrong pixel never recovers. Measured on the cpu
    profile: after 200 steps a quarter of the FA pixels had p == 0 (logits down to -600) and the FA head did
    not segment even its own pseudo-anomalies. The value is the same function; only its gradient is sound.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    prob = torch.sigmoid(logits)
    p_t = prob * target + (1 - prob) * (1 - target)
    return (bce * (1 - p_t) ** gamma).mean()


# --------------------------------------------------------------------------------------------------- helpers


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` (never half-written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StlmError(f"--device {device} requested but CUDA is not available; use --device cpu.")
    return device


def load_images(dataset: str, root: str | Path, category: str, split: str, size: int,
                progress: bool = True) -> tuple[np.ndarray, Any]:
    """All images of a split resized to (size, size): uint8 (N, size, size, 3), and the dataset."""
    from tqdm import tqdm

    from stlm_core.data import open_dataset
    from stlm_core.data.transforms import resize_image

    samples = open_dataset(dataset, root, category, split)
    images = np.stack([resize_image(s.image, size) for s in
                       tqdm(samples, desc=f"load {split}", disable=not progress, leave=False)])
    return images, samples


def run_config(config: StlmConfig, dataset: str, category: str, texture_source: str) -> dict:
    """What ``config.json`` stores (and the run id hashes): method, data identity, model and training settings."""
    return {"method": "stlm", "dataset": dataset, "category": category,
            "rotation": resolved_rotation(config, category), "textures": texture_source,
            "stlm": config.to_dict()}


def build_for_training(config: StlmConfig, weights: dict[str, Path | None]):
    """(model, teacher) built in a fixed order under ``torch.manual_seed(config.seed)``."""
    from stlm_core.stlm.decoder import build_mobilesam_decoder
    from stlm_core.stlm.model import STLM
    from stlm_core.stlm.students import load_mobilesam_encoder
    from stlm_core.stlm.teacher import build_teacher

    torch.manual_seed(config.seed)
    teacher = build_teacher(config, weights.get("teacher"))
    decoder_ckpt = weights.get("mobile_sam") if config.decoder_weights else None
    decoder = build_mobilesam_decoder(config, decoder_ckpt)
    model = STLM(config, decoder, teacher=None if config.use_plain else teacher)
    if config.student_init == "mobilesam":
        for student in (model.plain, model.denoise):
            if student is not None:
                load_mobilesam_encoder(student, weights["mobile_sam"])
    return model, teacher


def make_optimisers(model, config: StlmConfig) -> dict[str, torch.optim.Optimizer]:
    groups = model.trainable_parameters()
    optimisers = {"tlm": torch.optim.Adam(groups["tlm"], lr=config.lr_tlm, betas=tuple(config.betas))}
    if "fa_res" in groups:
        optimisers["fa"] = torch.optim.SGD(
            [{"params": groups["fa_res"], "lr": config.lr_fa_res},
             {"params": groups["fa_head"], "lr": config.lr_fa_head}],
            lr=config.lr_fa_res, momentum=config.fa_momentum, weight_decay=config.fa_weight_decay)
    return optimisers


def weights_identities(weights: dict[str, Path | None], config: StlmConfig) -> dict[str, str]:
    from stlm_core.weights import weights_identity

    teacher_name = f"sam_{config.teacher}" if config.teacher in ("vit_h", "vit_l", "vit_b") else config.teacher
    ids = {"teacher": weights_identity(teacher_name, weights.get("teacher")),
           "decoder": weights_identity("mobile_sam", weights.get("mobile_sam") if config.decoder_weights else None),
           "students": "random-init"}
    if config.student_init == "mobilesam":
        ids["students"] = weights_identity("mobile_sam", weights.get("mobile_sam"))
    return ids


def _model_state(model) -> dict:
    # A teacher standing in for the plain stream (ablation) is frozen and rebuilt from its weights: not saved.
    return {k: v for k, v in model.state_dict().items() if not k.startswith("plain_teacher.")}


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint (by a killed epoch)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------------ train


def train_stlm(config: StlmConfig, dataset: str, root: str | Path, category: str, run_dir: str | Path | None = None,
               *, runs_dir: str | Path = "runs", device: str = "auto", dtd: str | Path | None = None,
               resume: bool = False, force: bool = False, evaluate: bool = True, save_maps: bool = False,
               progress: bool = True, stop_after_epoch: int | None = None, deterministic: bool = False) -> dict:
    """Train STLM on one category; returns ``{"run_dir", "epochs", "steps", "train_s", "metrics"}``.

    Args:
        config: model / training settings (:func:`stlm_core.stlm.config.profile_config`).
        dataset, root, category: the training data (``train/good`` images only are used).
        run_dir: output folder; default ``runs_dir/stlm/<dataset>/<category>/<config-id>``.
        device: ``auto`` | ``cpu`` | ``cuda[:i]``.
        dtd: DTD folder for the anomaly textures (default: ``$STLM_DTD`` or ``data/dtd``, else procedural).
        resume: continue from ``checkpoint.pt``; without it an existing checkpoint is an error (or, with
            ``force``, is discarded).
        evaluate: evaluate the final model on the test split (writes ``metrics.json``).
        stop_after_epoch: stop (as if killed) after this epoch's checkpoint; for tests of ``resume``.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (about 3x slower on the CPU; CPU runs
            already repeat bitwise without it, see tests/test_stlm_train.py).
    """
    from tqdm import tqdm

    from stlm_core.results import atomic_write_json, prepare_run_dir, run_dir_for
    from stlm_core.stlm.model import weights_paths
    from stlm_core.stlm.pseudo_anomaly import geometric_augment, synthesize, texture_source
    from stlm_core.data.transforms import to_tensor

    device = resolve_device(device)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    weights = weights_paths(config, require=config.profile == "paper")
    textures = texture_source(dtd)
    cfg = run_config(config, dataset, category, textures.name)
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(runs_dir, "stlm", dataset, category, cfg)
    ckpt_path, log_path = run_dir / CHECKPOINT, run_dir / LOSSES
    if resume and not ckpt_path.exists():
        raise StlmError(f"--resume: no checkpoint at {ckpt_path}; start the run without --resume.")
    if not resume and ckpt_path.exists() and not force:
        raise StlmError(f"{run_dir} already holds a checkpoint; pass --resume to continue it or --force to restart.")
    prepare_run_dir(run_dir, cfg, force=force and not resume)
    if not resume:
        for stale in (ckpt_path, log_path):
            stale.unlink(missing_ok=True)
    atomic_write_json(run_dir / DATA_FILE, {"dataset": dataset, "root": str(Path(root).resolve()),
                                            "category": category})

    images, _ = load_images(dataset, root, category, "train", config.image_size, progress)
    n_train = len(images)
    if n_train < config.batch_size:
        raise StlmError(f"{dataset}/{category} has {n_train} training images, fewer than the batch size "
                        f"{config.batch_size}; lower --batch-size.")
    steps_per_epoch = n_train // config.batch_size  # drop_last, as the official loader
    epochs = math.ceil(config.train_steps / steps_per_epoch) if config.train_steps else config.epochs
    rotation = resolved_rotation(config, category)

    model, teacher = build_for_training(config, weights)
    model.to(device)
    teacher.to(device)
    optimisers = make_optimisers(model, config)
    rng = np.random.default_rng(config.seed)
    start_epoch, step, elapsed = 0, 0, 0.0
    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state.get("config") != cfg:
            raise StlmError(f"{ckpt_path} was written for a different configuration; use another run directory.")
        model.load_state_dict(state["model"], strict=False)
        if state.get("teacher") is not None:
            teacher.load_state_dict(state["teacher"])
        for name, opt in optimisers.items():
            opt.load_state_dict(state["optimisers"][name])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        start_epoch, step, elapsed = state["epoch"], state["step"], state["train_s"]
        _truncate_log(log_path, step)
    identities = weights_identities(weights, config)

    def batch_tensors(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        anomalous, normal, masks = [], [], []
        for i in index:
            image = geometric_augment(images[i], rotation, rng)
            aug, mask = synthesize(image, textures, rng, config.aug_prob, config.beta_max,
                                   config.perlin_max_exp, config.perlin_threshold)
            anomalous.append(to_tensor(aug, "sam"))
            normal.append(to_tensor(image, "sam"))
            masks.append(torch.from_numpy(mask)[None])
        return (torch.stack(anomalous).to(device), torch.stack(normal).to(device), torch.stack(masks).to(device))

    side = config.embed_size
    model.train()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        order = rng.permutation(n_train)
        batches = [order[i * config.batch_size:(i + 1) * config.batch_size] for i in range(steps_per_epoch)]
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        lines = []
        for index in bar:
            x_a, x_n, mask = batch_tensors(index)
            target_a, target_n = _split(teacher(torch.cat([x_a, x_n])), len(index))
            plain, denoise = model.streams(x_a)
            parts = {"denoise": cosine_loss(denoise, target_n)}
            if model.plain is not None:
                parts["plain"] = cosine_loss(plain, target_a)
            if model.fa is not None:
                logits = model.maps(plain, denoise)["fa_logits"]
                target = (F.interpolate(mask, size=(side, side), mode="bilinear", align_corners=False) > 0.5).float()
                parts["focal"] = focal_loss(logits, target)
                parts["l1"] = (torch.sigmoid(logits) - target).abs().mean()
            loss = sum(parts.values())
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                    f"({', '.join(f'{k}={v.item():.4g}' for k, v in parts.items())}). Training stopped; the last "
                    f"good checkpoint ({ckpt_path if ckpt_path.exists() else 'none yet'}) is kept. Try another "
                    "--seed or lower learning rates; resume with --resume."
                )
            for opt in optimisers.values():
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimisers.values():
                opt.step()
            step += 1
            record = {"epoch": epoch + 1, "step": step, "loss": loss.item(),
                      **{k: v.item() for k, v in parts.items()}}
            lines.append(json.dumps(record))
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
        elapsed += time.perf_counter() - t0
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "config": cfg, "epoch": epoch + 1, "epochs": epochs, "step": step,
            "model": _model_state(model), "teacher": teacher.state_dict() if identities["teacher"] == "random-init" else None,
            "optimisers": {k: v.state_dict() for k, v in optimisers.items()},
            "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "train_s": elapsed, "weights": identities, "textures": textures.name, "device": device,
        }, ckpt_path)
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: loss {json.loads(lines[-1])['loss']:.4f}, {elapsed:.0f} s", flush=True)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
            return {"run_dir": run_dir, "epochs": epoch + 1, "steps": step, "train_s": elapsed, "metrics": None,
                    "stopped": True}
    result = {"run_dir": run_dir, "epochs": epochs, "steps": step, "train_s": elapsed, "metrics": None,
              "stopped": False}
    if evaluate:
        from stlm_core.stlm.evaluate import evaluate_run

        result["metrics"] = evaluate_run(run_dir, device=device, save_maps=save_maps, progress=progress)
    return result


def _split(features: list[torch.Tensor], n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [f[:n] for f in features], [f[n:] for f in features]
