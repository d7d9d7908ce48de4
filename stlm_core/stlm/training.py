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
from stlm_core.runs import Run
from stlm_core.runs.run import Resume
from stlm_core.runtime import resolve_device
from stlm_core.stlm.checkpoint import CHECKPOINT_FORMAT, interrupts_reported, load_checkpoint
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


def plan_stlm(config: StlmConfig, data: DataSpec, *, dtd: str | Path | None = None, runs_dir: str | Path = "runs",
              run_dir: str | Path | None = None) -> Run:
    """The :class:`~stlm_core.runs.Run` of STLM with ``config`` on ``data``: the record names the weights
    identities, the category's rotations and the texture source (``dtd``: DTD folder, default ``$STLM_DTD`` or
    ``data/dtd``, else procedural); ``resources`` hold the resolved weights files and the texture source."""
    from stlm_core.stlm.build import resolve_stlm_weights, weights_identities
    from stlm_core.stlm.pseudo_anomaly import texture_source

    weights, textures = resolve_stlm_weights(config), texture_source(dtd)
    return Run.plan("stlm", config, data, weights_identities(config, weights), runs_dir=runs_dir, run_dir=run_dir,
                    locations={"textures_root": str(getattr(textures, "root", "")) or None},
                    resources={"weights": weights, "textures": textures},
                    rotation=config.rotation_for(data.category), textures=textures.name)


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


class PseudoAnomalyBatches:
    """Training batches of one category: geometric augmentation, then a pseudo anomaly (probability
    ``aug_prob``) on each image, all drawn from one ``numpy.random.Generator`` (its state is checkpointed)."""

    def __init__(self, images: np.ndarray, config: StlmConfig, category: str, textures, rng: np.random.Generator,
                 device: str):
        from stlm_core.stlm.pseudo_anomaly import anomaly_fill

        self.images, self.config, self.rng, self.device = images, config, rng, device
        self.rotation = config.rotation_for(category)
        self.fill = anomaly_fill(config.anomaly_source, textures, images)
        self.steps_per_epoch = len(images) // config.batch_size  # drop_last, as the official loader

    def epoch(self) -> list[np.ndarray]:
        """The image indices of each batch of one epoch (a fresh permutation)."""
        order, size = self.rng.permutation(len(self.images)), self.config.batch_size
        return [order[i * size:(i + 1) * size] for i in range(self.steps_per_epoch)]

    def tensors(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pseudo-anomalous images, clean images, masks) of one batch, SAM-normalised (B, 3, S, S) and (B, 1, S, S)."""
        from stlm_core.data.transforms import to_tensor
        from stlm_core.stlm.pseudo_anomaly import geometric_augment, synthesize

        c, anomalous, normal, masks = self.config, [], [], []
        for i in index:
            image = geometric_augment(self.images[i], self.rotation, self.rng)
            aug, mask = synthesize(image, self.fill, self.rng, c.aug_prob, c.beta_max, c.perlin_max_exp,
                                   c.perlin_threshold)
            anomalous.append(to_tensor(aug, "sam"))
            normal.append(to_tensor(image, "sam"))
            masks.append(torch.from_numpy(mask)[None])
        return tuple(torch.stack(t).to(self.device) for t in (anomalous, normal, masks))


@dataclass
class Trainer:
    """What one training run changes: model, frozen teacher, optimisers, batches and the counters."""

    model: STLM
    teacher: torch.nn.Module
    optimisers: dict[str, torch.optim.Optimizer]
    batches: PseudoAnomalyBatches
    epochs: int
    epoch: int = 0
    step: int = 0
    train_s: float = 0.0
    resumed_from: dict | None = None

    @classmethod
    def start(cls, run: Run, config: StlmConfig, images: np.ndarray, device: str, state: dict | None) -> "Trainer":
        """A fresh trainer (model and teacher built from the run's weights, ``config.seed``), or, with a
        checkpoint ``state``, the one that wrote it (weights, optimisers, RNG states, counters)."""
        from stlm_core.stlm.build import build_for_training

        if len(images) < config.batch_size:
            raise StlmError(f"{run.data.dataset}/{run.data.category} has {len(images)} training images, fewer than "
                            f"the batch size {config.batch_size}; lower --batch-size.")
        model, teacher = build_for_training(config, run.resources["weights"])
        model.to(device)
        teacher.to(device)
        optimisers = make_optimisers(model, config)
        batches = PseudoAnomalyBatches(images, config, run.data.category, run.resources["textures"],
                                       np.random.default_rng(config.seed), device)
        epochs = (math.ceil(config.train_steps / batches.steps_per_epoch) if config.train_steps else config.epochs)
        trainer = cls(model, teacher, optimisers, batches, epochs)
        if state is not None:
            model.load_state_dict(state["model"], strict=False)
            if state.get("teacher") is not None:
                teacher.load_state_dict(state["teacher"])
            for name, opt in optimisers.items():
                opt.load_state_dict(state["optimisers"][name])
            batches.rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            trainer.epoch, trainer.step, trainer.train_s = state["epoch"], state["step"], state["train_s"]
            trainer.resumed_from = {"epoch": trainer.epoch, "step": trainer.step}
        return trainer

    def run_epoch(self, progress: bool) -> list[dict]:
        """One epoch of :func:`training_step`; returns its loss rows (epoch, step, loss terms)."""
        from tqdm import tqdm

        t0, rows = time.perf_counter(), []
        bar = tqdm(self.batches.epoch(), desc=f"epoch {self.epoch + 1}/{self.epochs}", disable=not progress,
                   leave=False)
        for index in bar:
            try:
                parts = training_step(self.model, self.teacher, self.optimisers, *self.batches.tensors(index))
            except TrainingDiverged as error:
                raise TrainingDiverged(f"{error} at epoch {self.epoch + 1}, step {self.step + 1}. Training stopped; "
                                       "the last good checkpoint is kept. Try another --seed or lower learning "
                                       "rates; resume with --resume.") from None
            self.step += 1
            rows.append({"epoch": self.epoch + 1, "step": self.step, **parts})
            bar.set_postfix(loss=f"{parts['loss']:.4f}")
        self.epoch += 1
        if self.epoch == self.epochs:  # statistics of the final model, saved with it
            calibrate_level_norm(self.model, self.batches.images, self.batches.device)
            self.model.train()
        self.train_s += time.perf_counter() - t0
        return rows

    def checkpoint(self, run: Run) -> dict:
        """What ``checkpoint.pt`` holds after the current epoch (see :mod:`stlm_core.stlm.checkpoint`)."""
        return {"epoch": self.epoch, "epochs": self.epochs, "step": self.step, "model": self.model.trained_state(),
                "teacher": self.teacher.state_dict() if run.weights["teacher"] == "random-init" else None,
                "optimisers": {k: v.state_dict() for k, v in self.optimisers.items()},
                "numpy_rng": self.batches.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "train_s": self.train_s, "weights": run.weights, "textures": run.record["textures"],
                "device": self.batches.device, "threads": torch.get_num_threads(), "resumed_from": self.resumed_from}


def train(config: StlmConfig, data: DataSpec, *, run_dir: str | Path | None = None, runs_dir: str | Path = "runs",
          device: str = "auto", dtd: str | Path | None = None, resume: Resume = False, force: bool = False,
          evaluate: bool = True, save_maps: bool = True, progress: bool = True,
          stop_after_epoch: int | None = None, deterministic: bool = False,
          on_epoch_end: Callable[[EpochEnd], None] | None = None, planned: Run | None = None) -> Path:
    """Train STLM on one category (``train/good`` images only) and evaluate the final model; returns the run dir.

    Args:
        config: model / training settings (``StlmConfig.from_profile``).
        data: the category to train on and evaluate.
        run_dir: output folder; default ``runs_dir/stlm/<dataset>/<category>/<run-id>``.
        device: ``auto`` | ``cpu`` | ``cuda[:i]``.
        dtd: DTD folder for the anomaly textures (default: ``$STLM_DTD`` or ``data/dtd``, else procedural).
        resume: ``"auto"`` continues from an existing checkpoint, else starts; ``True`` continues (a run that
            saved no epoch yet starts over); ``False`` starts, and an existing checkpoint is an error unless
            ``force`` (see :meth:`stlm_core.runs.Run.resolve_resume`).
        evaluate: evaluate the final model on the test split (metrics.json, maps.npz, finished.json).
        save_maps: keep the maps (``maps.npz``) of the evaluation.
        stop_after_epoch: stop (as if killed) after this epoch's checkpoint; for tests of ``resume``.
        deterministic: ``torch.use_deterministic_algorithms(True)`` (slower; CPU runs repeat bitwise without it).
        on_epoch_end: called with an :class:`EpochEnd` after each epoch's checkpoint (learning curves); the
            model is switched back to training mode afterwards.
        planned: the run of :func:`plan_stlm` (planned here when not given).
    """
    device = resolve_device(device)
    data.validate(("train", "test") if evaluate else ("train",), action=f"train STLM on {data.dataset}/{data.category}")
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    run = planned or plan_stlm(config, data, dtd=dtd, runs_dir=runs_dir, run_dir=run_dir)
    resuming = run.resolve_resume(resume, force=force)
    state = load_checkpoint(run.checkpoint_path, device) if resuming else None  # damage is reported before any change
    if state is not None and state.get("record") != run.record:
        raise StlmError(f"{run.checkpoint_path} was written for a different configuration; use another run "
                        "directory or restart with --force.")
    with run.writing(resume=resuming, force=force), interrupts_reported(run.run_dir):  # Ctrl-C: what was saved
        images = data.load_images("train", config.image_size, progress=progress)
        trainer = Trainer.start(run, config, images, device, state)
        run.truncate_log(trainer.step)
        trainer.model.train()
        while trainer.epoch < trainer.epochs:
            rows = trainer.run_epoch(progress)
            run.log_steps(rows)
            run.save_checkpoint(trainer.checkpoint(run), CHECKPOINT_FORMAT)
            if progress:
                print(f"epoch {trainer.epoch}/{trainer.epochs}: loss {rows[-1]['loss']:.4f}, {trainer.train_s:.0f} s",
                      flush=True)
            if on_epoch_end is not None:
                on_epoch_end(EpochEnd(trainer.epoch, trainer.step, trainer.train_s, trainer.model, trainer.teacher))
                trainer.model.train()
            if stop_after_epoch is not None and stop_after_epoch <= trainer.epoch < trainer.epochs:
                return run.run_dir
        if evaluate:
            from stlm_core.stlm.evaluation import evaluate_locked

            evaluate_locked(run, device=device, save_maps=save_maps, progress=progress)
    return run.run_dir
