"""Model benchmark harness: parameter counts, latency and peak memory.

Conventions: latency in milliseconds (wall clock, ``time.perf_counter``), memory in MiB (2**20 bytes).
CPU peak memory is the process's peak resident set size (``VmHWM``); on Linux it can be reset with
:func:`reset_peak_memory` so that a section can be measured on its own. On CUDA it is
``torch.cuda.max_memory_allocated``. The method packages (``stlm_core.stlm.bench``,
``stlm_core.clipsam.bench``) build their models and call :func:`benchmark_module` / :func:`measure_latency`;
``stlm bench <model> --json`` prints the resulting dict.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable

_PROC_STATUS = "/proc/self/status"
_PROC_CLEAR_REFS = "/proc/self/clear_refs"


# --------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------


def _numel(params) -> int:
    return int(sum(p.numel() for p in params))


def count_parameters(module, depth: int = 1) -> dict:
    """Count the parameters of a ``torch.nn.Module`` in total and per named submodule.

    Args:
        module: the model.
        depth: how deep to break down: 1 = direct children (``image_encoder``, ``mask_decoder``, ...),
            2 = grandchildren too (``image_encoder.blocks``, ...), 0 = totals only.

    Returns:
        ``{"total": int, "trainable": int, "frozen": int, "modules": {dotted_name: int}}``. Shared (tied)
        parameters are counted once in the totals. A module's own parameters that are not in any child
        (e.g. a ``pos_embed``) appear under ``"<name>.(own)"`` (``"(own)"`` at the root), so the counts of one
        level sum to the total.
    """
    unique = {id(p): p for p in module.parameters()}
    total = _numel(unique.values())
    trainable = _numel(p for p in unique.values() if p.requires_grad)
    modules: dict[str, int] = {}

    def visit(mod, prefix: str, level: int) -> None:
        children = list(mod.named_children())
        own = _numel(mod.parameters(recurse=False))
        if own and level > 0:
            modules[f"{prefix}.(own)" if prefix else "(own)"] = own
        for name, child in children:
            full = f"{prefix}.{name}" if prefix else name
            n = _numel({id(p): p for p in child.parameters()}.values())
            if level + 1 < depth and list(child.named_children()):
                visit(child, full, level + 1)
            else:
                modules[full] = n

    if depth > 0:
        visit(module, "", 0)
        if "(own)" not in modules and _numel(module.parameters(recurse=False)):
            modules["(own)"] = _numel(module.parameters(recurse=False))
    return {"total": total, "trainable": trainable, "frozen": total - trainable, "modules": modules}


# --------------------------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open(_PROC_STATUS, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_memory_mb() -> float | None:
    """Current resident set size of this process in MiB (Linux; ``None`` elsewhere)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024.0


def reset_peak_memory(device: str = "cpu") -> bool:
    """Reset the peak-memory counter; returns False when the platform cannot (peak then covers the process).

    CPU: writes ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0 resets ``VmHWM`` to the current RSS).
    CUDA: ``torch.cuda.reset_peak_memory_stats``.
    """
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open(_PROC_CLEAR_REFS, "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: str = "cpu") -> float:
    """Peak memory in MiB since the process started or the last :func:`reset_peak_memory`.

    CPU: peak resident set size (``VmHWM``, falling back to ``getrusage`` ru_maxrss, which cannot be reset).
    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the CUDA context).
    """
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024.0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024.0


# --------------------------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------------------------


def _synchronise(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _threads() -> int | None:
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def measure_latency(fn: Callable[[], Any], warmup: int = 3, runs: int = 10, device: str = "cpu") -> dict:
    """Time ``fn()`` (no arguments; batch 1 is the caller's choice of inputs) after ``warmup`` untimed calls.

    CUDA work is synchronised before and after every timed call, so the times cover the whole computation.

    Returns:
        ``{"median_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "p10_ms", "p90_ms", "iqr_ms", "times_ms",
        "runs", "warmup", "threads", "device"}``; ``threads`` is ``torch.get_num_threads()`` when torch is
        loaded.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    _synchronise(device)
    times = []
    for _ in range(runs):
        _synchronise(device)
        start = time.perf_counter()
        fn()
        _synchronise(device)
        times.append((time.perf_counter() - start) * 1000.0)
    ordered = sorted(times)

    def quantile(q: float) -> float:
        # linear interpolation between order statistics (numpy's default), written out to stay numpy-free
        pos = q * (len(ordered) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return {
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "std_ms": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "p10_ms": quantile(0.10),
        "p90_ms": quantile(0.90),
        "iqr_ms": quantile(0.75) - quantile(0.25),
        "times_ms": times,
        "runs": runs,
        "warmup": warmup,
        "threads": _threads(),
        "device": str(device),
    }


# --------------------------------------------------------------------------------------------------------------
# Environment and one-call module benchmark
# --------------------------------------------------------------------------------------------------------------


def matmul_gflops(size: int = 2048, runs: int = 5, threads: int | None = None) -> dict:
    """The machine's speed figure that every timing in this project is quoted beside: torch fp32 ``size`` x
    ``size`` matmul throughput (GFLOPS = 2 size^3 / median seconds / 1e9) after two warm-up products.

    Machines of the same kind differ up to ~3x (47 GFLOPS at 2 threads on the slowest 2-core machine seen, about
    145 on faster ones); budgets hold on the slowest."""
    import statistics
    import time

    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    for _ in range(2):
        a @ b
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"gflops": round(2 * size**3 / median / 1e9, 1), "size": size, "runs": runs,
            "median_s": round(median, 4), "threads": torch.get_num_threads(), **environment_info("cpu")}


def environment_info(device: str = "cpu") -> dict:
    """Facts that make a timing comparable: versions, threads, CPU count, device name."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "device": str(device),
        "threads": _threads(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        if str(device).startswith("cuda") and torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(device)
    return info


def benchmark_module(module, inputs: Any, *, warmup: int = 3, runs: int = 10, device: str = "cpu",
                     depth: int = 1, call: Callable[[Any, Any], Any] | None = None) -> dict:
    """Parameters, latency and peak memory of ``module`` on ``inputs`` (batch 1) under ``torch.inference_mode``.

    Args:
        module: a ``torch.nn.Module`` already on ``device``; put in eval mode here.
        inputs: a tensor, a tuple of positional arguments, or a dict of keyword arguments (on ``device``).
        call: optional ``call(module, inputs)`` when the forward is not ``module(*inputs)``.

    Returns ``{"parameters": count_parameters(...), "latency": measure_latency(...), "peak_memory_mb": float,
    "peak_memory_reset": bool, "environment": environment_info(...)}``; peak memory covers warm-up and runs.
    """
    import torch

    module.eval()
    if call is None:
        if isinstance(inputs, dict):
            def call(m, x):
                return m(**x)
        elif isinstance(inputs, (tuple, list)):
            def call(m, x):
                return m(*x)
        else:
            def call(m, x):
                return m(x)

    def step():
        with torch.inference_mode():
            return call(module, inputs)

    was_reset = reset_peak_memory(device)
    latency = measure_latency(step, warmup=warmup, runs=runs, device=device)
    return {
        "parameters": count_parameters(module, depth=depth),
        "latency": latency,
        "peak_memory_mb": peak_memory_mb(device),
        "peak_memory_reset": was_reset,
        "environment": environment_info(device),
    }
