"""Helpers shared by the benchmarks: timing, machine description, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import torch


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Shortest wall time of `repeats` calls (after one warm-up), and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), result


def emit(name: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": name, "machine": machine(), **figures}, indent=2))
