"""Model benchmark harness: parameter counts per submodule, latency statistics, peak memory."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from stlm_core.bench import (
    benchmark_module,
    count_parameters,
    current_memory_mb,
    environment_info,
    measure_latency,
    peak_memory_mb,
    reset_peak_memory,
)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(5))  # own parameter of the root
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)
        self.tied = self.head  # shared module: counted once
        self.frozen = nn.Linear(2, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.frozen(self.head(self.encoder(x)))


def test_count_parameters_per_submodule():
    model = Toy()
    counts = count_parameters(model, depth=1)
    assert counts["total"] == 5 + (4 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2) + (2 * 3 + 3)
    assert counts["frozen"] == 9 and counts["trainable"] == counts["total"] - 9
    assert counts["modules"]["encoder"] == 40 + 72 and counts["modules"]["(own)"] == 5
    assert counts["modules"]["head"] == 18 and "tied" not in counts["modules"]  # a shared module appears once
    assert sum(counts["modules"].values()) == counts["total"]  # one level sums to the total
    deep = count_parameters(model, depth=2)["modules"]
    assert deep["encoder.0"] == 40 and deep["encoder.2"] == 72 and deep["encoder.1"] == 0
    assert count_parameters(model, depth=0)["modules"] == {}


def test_measure_latency_statistics():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    result = measure_latency(fn, warmup=2, runs=5)
    assert len(calls) == 7 and len(result["times_ms"]) == 5
    assert result["min_ms"] >= 2.0 - 1e-6
    assert result["min_ms"] <= result["p10_ms"] <= result["median_ms"] <= result["p90_ms"] <= result["max_ms"]
    assert result["median_ms"] == pytest.approx(float(np.median(result["times_ms"])))
    assert result["std_ms"] == pytest.approx(float(np.std(result["times_ms"], ddof=1)))
    assert result["device"] == "cpu" and result["threads"] == torch.get_num_threads()
    with pytest.raises(ValueError):
        measure_latency(fn, runs=0)


def test_peak_memory_tracks_a_large_allocation():
    import os

    # Linux lets a process reset its peak (VmHWM); elsewhere the function must say it could not
    assert reset_peak_memory() is os.access("/proc/self/clear_refs", os.W_OK)
    before = peak_memory_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    assert peak_memory_mb() >= before + 50
    del block
    if reset_peak_memory():  # Linux: the peak falls back to the current resident size
        assert peak_memory_mb() < current_memory_mb() + 20


def test_benchmark_module_on_a_tiny_model():
    model = Toy()
    result = benchmark_module(model, torch.zeros(1, 4), warmup=1, runs=3)
    assert result["parameters"]["total"] == count_parameters(model)["total"]
    assert result["latency"]["runs"] == 3 and result["latency"]["median_ms"] > 0
    assert result["peak_memory_mb"] > 0
    assert environment_info()["cpu_count"] >= 1
    kwargs = benchmark_module(nn.Bilinear(2, 2, 1), (torch.zeros(1, 2), torch.zeros(1, 2)), runs=1, warmup=0)
    assert kwargs["parameters"]["total"] == 2 * 2 + 1
