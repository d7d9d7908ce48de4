"""Device and CPU-thread choices, shared by every command that runs a model.

``device``: ``auto`` (CUDA when available, else CPU; the default everywhere), ``cpu`` or ``cuda[:i]``.
``threads``: torch's CPU threads. On a shared machine, use 1 thread per concurrent job: two jobs with two threads
each on two cores slow each other down 2-5x. ``None`` keeps torch's default (all cores).
"""

from __future__ import annotations

from stlm_core.errors import ConfigError

DEFAULT_DEVICE = "auto"
THREADS_HELP = ("torch CPU threads (default: all cores). On a machine shared with other jobs use --threads 1: two "
                "jobs with two threads on two cores slow each other down 2-5x. Recorded in the run.")


def resolve_device(device: str = DEFAULT_DEVICE) -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``; a CUDA device without CUDA raises :class:`ConfigError`."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} requested but CUDA is not available; use --device cpu (or auto).")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda[:i].")
    return device


def set_threads(threads: int | None) -> int:
    """Set torch's CPU thread count (``None``: leave it); returns the count in use."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be a positive number of threads, got {threads}.")
        torch.set_num_threads(threads)
    return torch.get_num_threads()
