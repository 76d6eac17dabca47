"""What a run or a benchmark ran on: CPU model, the SIMD level PyTorch uses, threads, GPU.

Times and speeds depend on it (a 2-core AVX2 box trains 3-4x slower than an AVX-512 one),
and so does float rounding; every published time names it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | None = None) -> dict:
    """The machine as a dict: ``cpu``, ``simd`` (``torch.backends.cpu.get_cpu_capability()``,
    which honours ``ATEN_CPU_CAPABILITY``), ``onednn_max_isa`` (``ONEDNN_MAX_CPU_ISA``, "" when
    unset), ``threads``, ``torch`` and, on CUDA, ``gpu``."""
    info = {"cpu": cpu_name(), "simd": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""), "threads": torch.get_num_threads(),
            "torch": str(torch.__version__)}
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def describe(info: dict | None = None) -> str:
    """One line, e.g. ``AMD EPYC, SIMD AVX2, ONEDNN_MAX_CPU_ISA=AVX2, 2 threads, torch 2.13.0+cpu``."""
    info = info or machine_info()
    parts = [info["cpu"], f"SIMD {info['simd']}"]
    if info.get("onednn_max_isa"):
        parts.append(f"ONEDNN_MAX_CPU_ISA={info['onednn_max_isa']}")
    parts += [f"{info['threads']} threads", f"torch {info['torch']}"]
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    return ", ".join(parts)
