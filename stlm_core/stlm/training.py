"""STLM training: pseudo-anomalies, the four losses, two optimisers, atomic per-epoch checkpoints, resume.

Entry point: :func:`train` (``stlm train`` on the command line). Losses (weights all 1): for each feature level l,
``L_plain = sum_l mean(1 - cos(P_l(I_a), T_l(I_a)))``, ``L_denoise = sum_l mean(1 - cos(D_l(I_a), T_l(I_n)))``,
``L_focal = mean(BCE(p, y) * (1 - p_t)**4)`` (evaluated from the logits, see :func:`focal_loss`) and
``L_L1 = mean|p - y|`` on the FA output p against the pseudo-anomaly mask y (bilinear to the feature grid, >= 0.5 as
``where(mask < 0.5, 0, 1)`` in the official code);
one backward over the sum. The FA input is not detached (joint training, as in the official code). Optimisers:
Adam over both students, the shared decoder and the prompt encoder; SGD with momentum over the FA head (its
residual blocks and its ASPP head at different learning rates). No schedule.

Reproducibility: one seed fixes the model initialisation (``torch.manual_seed``), the data order and every
pseudo-anomaly (one ``numpy.random.Generator``); on the CPU the run is deterministic, and the checkpoint holds the
generator and torch RNG states, so a resumed run reaches the same final weights as an uninterrupted one. The
reported model is the **final** epoch: there is no selection on test data. Run layout: :mod:`stlm_core.runs`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from stlm_core.data.spec import DataSpec
from stlm_core.errors import StlmError
from stlm_core.fileio import atomic_write_text, ensure_writable
from stlm_core.runs import CHECKPOINT_FILE, LOSSES_FILE, begin_run, run_dir_for, run_lock, run_record
from stlm_core.runtime import resolve_device
from stlm_core.stlm.checkpoint import interrupts_reported, load_checkpoint, save_checkpoint
from stlm_core.stlm.config import StlmConfig
from stlm_core.stlm.model import STLM, cosine_distance


@dataclass(frozen=True)
class EpochEnd:
    """What :func:`train` passes to its ``on_epoch_end`` callback after each epoch's checkpoint."""

    epoch: int
    step: int
    train_s: float  # training seconds so far: resumed parts included, checkpoints and callbacks excluded
    model: STLM  # in training mode; a callback may switch it to eval (it is switched back afterwards)
    teacher: torch.nn.Module  # frozen; teacher(x)[:model.levels] are the distillation targets


class TrainingDiverged(StlmError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------------------- losses


def cosine_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """sum over levels of the mean per-pixel cosine distance."""
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


def fa_target(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The FA head's target: the pseudo-anomaly mask (B, 1, S, S) in {0, 1} resized bilinearly to ``size`` and
    binarised with ``>= 0.5`` (the official ``where(mask < 0.5, 0, 1)``: a boundary pixel averaging exactly 0.5
    counts as anomalous). (B, 1, *size) in {0, 1}, of ``mask``'s floating dtype."""
    resized = F.interpolate(mask, size=tuple(size), mode="bilinear", align_corners=False)
    return (resized >= 0.5).to(mask.dtype)


# --------------------------------------------------------------------------------------------------- helpers


def make_optimisers(model, config: StlmConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam over the two-stream module (``tlm``), SGD over the FA head (``fa``) when it is on."""
    groups = model.trainable_parameters()
    optimisers = {"tlm": torch.optim.Adam(groups["tlm"], lr=config.lr_tlm, betas=tuple(config.betas))}
    if "fa_res" in groups:
        optimisers["fa"] = torch.optim.SGD(
            [{"params": groups["fa_res"], "lr": config.lr_fa_res},
             {"params": groups["fa_head"], "lr": config.lr_fa_head}],
            lr=config.lr_fa_res, momentum=config.fa_momentum, weight_decay=config.fa_weight_decay)
    return optimisers


def stlm_record(config: StlmConfig, data: DataSpec, textures_name: str) -> tuple[dict, dict]:
    """(run record, resolved weights files) of an STLM run: what its run id hashes."""
    from stlm_core.stlm.build import resolve_stlm_weights, weights_identities

    weights = resolve_stlm_weights(config)
    record = run_record("stlm", config, data.identity(), weights_identities(config, weights),
                        rotation=config.rotation_for(data.category), textures=textures_name)
    return record, weights


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint (by a killed epoch)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _split(features: list[torch.Tensor], n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [f[:n] for f in features], [f[n:] for f in features]


def step_losses(model: STLM, teacher: torch.nn.Module, x_a: torch.Tensor, x_n: torch.Tensor,
                mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (model in training mode): ``denoise``, ``plain`` (when the plain stream is a
    student), ``focal`` and ``l1`` (when the FA head is on); their sum is the training loss.

    ``x_a``, ``x_n``: SAM-normalised pseudo-anomalous and clean images (B, 3, S, S); ``mask``: the pseudo-anomaly
    mask (B, 1, S, S) in {0, 1}. The teacher runs once on both images (one batched, gradient-free forward); where
    it stands in for the plain stream, its features of ``x_a`` are that stream's output.
    """
    target_a, target_n = _split(teacher(torch.cat([x_a, x_n]))[:model.levels], len(x_a))
    # where the frozen teacher is the plain stream, P(I_a) is T(I_a), computed just above
    plain, denoise = model.streams(x_a, target_a if model.plain_teacher is teacher else None)
    parts = {"denoise": cosine_loss(denoise, target_n)}
    if model.plain is not None:
        parts["plain"] = cosine_loss(plain, target_a)
    if model.fa is not None:
        logits = model.maps(plain, denoise)["fa_logits"]
        target = fa_target(mask, logits.shape[-2:])
        parts["focal"] = focal_loss(logits, target)
        parts["l1"] = (torch.sigmoid(logits) - target).abs().mean()
    return parts


def training_step(model: STLM, teacher: torch.nn.Module, optimisers: dict[str, torch.optim.Optimizer],
                  x_a: torch.Tensor, x_n: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """One optimisation step on one batch (see :func:`step_losses` for the inputs): one backward over the sum
    of the loss terms, then one step of every optimiser. Returns ``{"loss": total, <term>: value}`` as floats;
    raises :class:`TrainingDiverged` (before any parameter changes) when the loss is not finite."""
    parts = step_losses(model, teacher, x_a, x_n, mask)
    loss = sum(parts.values())
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"the training loss became {loss.item()} "
                               f"({', '.join(f'{k}={v.item():.4g}' for k, v in parts.items())})")
    for opt in optimisers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimisers.values():
        opt.step()
    return {"loss": loss.item(), **{k: v.item() for k, v in parts.items()}}


def sam_batches(images, device: str | torch.device = "cpu", batch_size: int = 8):
    """Batches (B, 3, S, S) of SAM-normalised tensors from uint8 images (N, S, S, 3), one at a time."""
    from stlm_core.data.transforms import to_tensor

    for i in range(0, len(images), batch_size):
        yield torch.stack([to_tensor(im, "sam") for im in images[i:i + batch_size]]).to(device)


def calibrate_level_norm(model: STLM, images, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
    """Set the model's per-level distance statistics from clean normal images (uint8 (N, S, S, 3) at the model's
    input size) when its config asks for ``level_norm``; a no-op otherwise."""
    if model.level_norm != "none":
        model.set_level_stats(sam_batches(images, device, batch_size))


# ------------------------------------------------------------------------------------------------------ train


def train(config: StlmConfig, data: DataSpec, *, run_dir: str | Path | None = None, runs_dir: str | Path = "runs",
          device: str = "auto", dtd: str | Path | None = None, resume: bool = False, force: bool = False,
          evaluate: bool = True, save_maps: bool = True, progress: bool = True,
          stop_after_epoch: int | None = None, deterministic: bool = False,
          on_epoch_end: Callable[[EpochEnd], None] | None = None) -> Path:
    """Train STLM on one category (``train/good`` images only) and evaluate the final model; returns the run dir.

    Args:
        config: model / training settings (``StlmConfig.from_profile``).
        data: the category to train on and evaluate.
        run_dir: output folder; default ``runs_dir/stlm/<dataset>/<category>/<run-id>``.
        device: ``auto`` | ``cpu`` | ``cuda[:i]``.
        dtd: DTD folder for the anomaly textures (default: ``$STLM_DTD`` or ``data/dtd``, else procedural).
        resume: continue from the run's checkpoint; without it an existing checkpoint is an error (or, with
            ``force``, is discarded).
        evaluate: evaluate the final model on the test split (metrics.json, maps.npz, finished.json).
        save_maps: keep the maps (``maps.npz``) of the evaluation.
        stop_after_epoch: stop (as if killed) after this epoch's checkpoint; for tests of ``resume``.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (slower; CPU runs repeat bitwise without it).
        on_epoch_end: called with an :class:`EpochEnd` after each epoch's checkpoint (learning curves); the
            model is switched back to training mode afterwards.
    """
    from tqdm import tqdm

    from stlm_core.data.transforms import to_tensor
    from stlm_core.stlm.build import build_for_training, weights_identities
    from stlm_core.stlm.pseudo_anomaly import anomaly_fill, geometric_augment, synthesize, texture_source

    device = resolve_device(device)
    data.validate(("train", "test") if evaluate else ("train",), action=f"train STLM on {data.dataset}/{data.category}")
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    textures = texture_source(dtd)
    record, weights = stlm_record(config, data, textures.name)
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(runs_dir, record)
    ckpt_path, log_path = run_dir / CHECKPOINT_FILE, run_dir / LOSSES_FILE
    if resume and not ckpt_path.exists():
        raise StlmError(f"--resume: no checkpoint at {ckpt_path}; start the run without --resume.")
    if not resume and ckpt_path.exists() and not force:
        raise StlmError(f"{run_dir} already holds a checkpoint; pass --resume to continue it or --force to restart.")
    ensure_writable(run_dir)
    state = load_checkpoint(ckpt_path, device) if resume else None  # a damaged file is reported before any change
    if state is not None and state.get("record") != record:
        raise StlmError(f"{ckpt_path} was written for a different configuration; use another run directory or "
                        "restart with --force.")
    with run_lock(run_dir), interrupts_reported(run_dir):  # Ctrl-C: say what was saved, how to resume
        begin_run(run_dir, record, data, force=force and not resume,
                  textures_root=str(getattr(textures, "root", "")) or None)
        if not resume:
            for stale in (ckpt_path, log_path):
                stale.unlink(missing_ok=True)

        images = data.load_images("train", config.image_size, progress=progress)
        n_train = len(images)
        if n_train < config.batch_size:
            raise StlmError(f"{data.dataset}/{data.category} has {n_train} training images, fewer than the batch "
                            f"size {config.batch_size}; lower --batch-size.")
        steps_per_epoch = n_train // config.batch_size  # drop_last, as the official loader
        epochs = math.ceil(config.train_steps / steps_per_epoch) if config.train_steps else config.epochs
        rotation = config.rotation_for(data.category)
        fill = anomaly_fill(config.anomaly_source, textures, images)

        model, teacher = build_for_training(config, weights)
        model.to(device)
        teacher.to(device)
        optimisers = make_optimisers(model, config)
        rng = np.random.default_rng(config.seed)
        start_epoch, step, elapsed, resumed_from = 0, 0, 0.0, None
        if state is not None:
            model.load_state_dict(state["model"], strict=False)
            if state.get("teacher") is not None:
                teacher.load_state_dict(state["teacher"])
            for name, opt in optimisers.items():
                opt.load_state_dict(state["optimisers"][name])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            start_epoch, step, elapsed = state["epoch"], state["step"], state["train_s"]
            resumed_from = {"epoch": start_epoch, "step": step}
            _truncate_log(log_path, step)
        identities = weights_identities(config, weights)

        def batch_tensors(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            anomalous, normal, masks = [], [], []
            for i in index:
                image = geometric_augment(images[i], rotation, rng)
                aug, mask = synthesize(image, fill, rng, config.aug_prob, config.beta_max,
                                       config.perlin_max_exp, config.perlin_threshold)
                anomalous.append(to_tensor(aug, "sam"))
                normal.append(to_tensor(image, "sam"))
                masks.append(torch.from_numpy(mask)[None])
            return (torch.stack(anomalous).to(device), torch.stack(normal).to(device),
                    torch.stack(masks).to(device))

        model.train()
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            order = rng.permutation(n_train)
            batches = [order[i * config.batch_size:(i + 1) * config.batch_size] for i in range(steps_per_epoch)]
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
            lines = []
            for index in bar:
                x_a, x_n, mask = batch_tensors(index)
                try:
                    parts = training_step(model, teacher, optimisers, x_a, x_n, mask)
                except TrainingDiverged as error:
                    raise TrainingDiverged(
                        f"{error} at epoch {epoch + 1}, step {step + 1}. Training stopped; the last good "
                        f"checkpoint ({ckpt_path if ckpt_path.exists() else 'none yet'}) is kept. Try another "
                        "--seed or lower learning rates; resume with --resume.") from None
                step += 1
                line = {"epoch": epoch + 1, "step": step, **parts}
                lines.append(json.dumps(line))
                bar.set_postfix(loss=f"{line['loss']:.4f}")
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
            if epoch + 1 == epochs:  # statistics of the final model, saved with it
                calibrate_level_norm(model, images, device)
                model.train()
            elapsed += time.perf_counter() - t0
            save_checkpoint(ckpt_path, {
                "record": record, "epoch": epoch + 1, "epochs": epochs, "step": step,
                "model": model.trained_state(),
                "teacher": teacher.state_dict() if identities["teacher"] == "random-init" else None,
                "optimisers": {k: v.state_dict() for k, v in optimisers.items()},
                "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "train_s": elapsed, "weights": identities, "textures": textures.name, "device": device,
                "threads": torch.get_num_threads(), "resumed_from": resumed_from,
            })
            if progress:
                print(f"epoch {epoch + 1}/{epochs}: loss {json.loads(lines[-1])['loss']:.4f}, {elapsed:.0f} s",
                      flush=True)
            if on_epoch_end is not None:
                on_epoch_end(EpochEnd(epoch + 1, step, elapsed, model, teacher))
                model.train()
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
                return run_dir
        if evaluate:
            from stlm_core.stlm.evaluation import evaluate_locked

            evaluate_locked(run_dir, data, device=device, save_maps=save_maps, progress=progress)
    return run_dir
