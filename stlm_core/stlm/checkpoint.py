"""STLM training checkpoints: one file per run, replaced atomically after every epoch (``Run.save_checkpoint``).

Contents: format version, the run record it belongs to, epoch / step counters, the model state (a frozen teacher
standing in for the plain stream excluded), a randomly initialised teacher's state (it cannot be rebuilt from a
file), the optimiser states, the numpy and torch RNG states (so a resumed run repeats an uninterrupted one
bitwise on the CPU), training seconds, weights identities and the texture source.

An interrupted training (Ctrl-C) raises :class:`TrainingInterrupted`, whose message names the last saved epoch and
the command that continues the run (:func:`resume_command`).
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any, Iterator

from stlm_core.errors import StlmError

CHECKPOINT_FORMAT = 1


class CorruptCheckpoint(StlmError):
    """A checkpoint file cannot be read."""


class TrainingInterrupted(StlmError):
    """Training was interrupted (Ctrl-C); the message says what was saved and the command that continues."""

    exit_status = 130


def load_checkpoint(path: Path, device: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file raises an error naming it and the fix."""
    import torch

    if not path.is_file():
        raise StlmError(f"no checkpoint at {path}; train first ('stlm train ... --out {path.parent}').")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle errors ... for damaged files
        raise CorruptCheckpoint(f"{path} cannot be read ({type(exc).__name__}: {exc}); it is damaged or not an STLM "
                                f"checkpoint. {_RESTART_FIX.format(run=_quote(path.parent))}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CorruptCheckpoint(f"{path} is not an STLM checkpoint of format {CHECKPOINT_FORMAT}. "
                                f"{_RESTART_FIX.format(run=_quote(path.parent))}")
    return state


_RESTART_FIX = "Retrain the run from scratch with its recorded settings: 'stlm train --force --out {run}'."


def _quote(path: Path) -> str:
    return shlex.quote(str(path))


def resume_command(run_dir: Path) -> str:
    """The command that continues (or, with nothing saved, restarts) the training run in ``run_dir``."""
    return f"stlm train --resume --out {_quote(run_dir)}"


def saved_progress(run_dir: Path) -> str:
    """What ``run_dir``'s checkpoint holds, as a phrase: the last saved epoch and step, or that none was saved."""
    from stlm_core.runs import CHECKPOINT_FILE

    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return "no epoch was saved yet"
    try:
        state = load_checkpoint(path)
    except StlmError:
        return f"its checkpoint {path} cannot be read"
    epoch, epochs, step = state.get("epoch"), state.get("epochs", "?"), state.get("step")
    if epoch == epochs:
        return f"training is complete (epoch {epoch}/{epochs}, step {step} saved); the evaluation was not finished"
    return f"the last saved checkpoint is epoch {epoch}/{epochs} (step {step})"


def interrupted_message(run_dir: Path) -> str:
    """Where an interrupted training run stopped and the exact command that continues it."""
    from stlm_core.runs import CONFIG_FILE

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        return f"training was interrupted before {run_dir} was set up; nothing was saved. Run the same command again."
    return f"training was interrupted: {saved_progress(run_dir)}. Continue with: {resume_command(run_dir)}"


@contextlib.contextmanager
def interrupts_reported(run_dir: Path) -> Iterator[None]:
    """Turn a ``KeyboardInterrupt`` inside the block into :class:`TrainingInterrupted` saying where it stopped."""
    try:
        yield
    except KeyboardInterrupt:
        raise TrainingInterrupted(interrupted_message(run_dir)) from None
