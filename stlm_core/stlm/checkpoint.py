"""STLM training checkpoints: one file per run, replaced atomically after every epoch.

Contents: format version, the run record it belongs to, epoch / step counters, the model state (a frozen teacher
standing in for the plain stream excluded), a randomly initialised teacher's state (it cannot be rebuilt from a
file), the optimiser states, the numpy and torch RNG states (so a resumed run repeats an uninterrupted one
bitwise on the CPU), training seconds, weights identities and the texture source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stlm_core.errors import StlmError
from stlm_core.fileio import atomic_torch_save

CHECKPOINT_FORMAT = 1


class CorruptCheckpoint(StlmError):
    """A checkpoint file cannot be read."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format version) to ``path`` atomically."""
    atomic_torch_save({"format": CHECKPOINT_FORMAT, **state}, path)


def load_checkpoint(path: Path, device: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file raises an error naming it and the fix."""
    import torch

    if not path.is_file():
        raise StlmError(f"no checkpoint at {path}; train first ('stlm train ... --out {path.parent}').")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle errors ... for damaged files
        raise CorruptCheckpoint(f"{path} cannot be read ({type(exc).__name__}: {exc}); it is damaged or not an STLM "
                                "checkpoint. Restart the run with --force (the run is retrained).") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CorruptCheckpoint(f"{path} is not an STLM checkpoint of format {CHECKPOINT_FORMAT}; restart the run "
                                "with --force.")
    return state
