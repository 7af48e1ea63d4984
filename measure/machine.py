"""What machine a figure was measured on: CPU model, cores, the instruction sets that decide
CPU speed (AVX2, AVX-512, VNNI, AMX, BF16) and the GPU, if any. Standard library only."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# /proc/cpuinfo flag -> the name figures are reported with.
INSTRUCTION_SETS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512F",
    "avx512bw": "AVX-512BW",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_fp16": "AVX-512 FP16",
    "amx_tile": "AMX",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def instruction_sets(flags: set[str] | None = None) -> list[str]:
    """The named instruction sets this CPU has, in INSTRUCTION_SETS order."""
    flags = cpu_flags() if flags is None else flags
    return [name for flag, name in INSTRUCTION_SETS.items() if flag in flags]


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine() -> dict:
    """CPU model, usable cores, instruction sets and the GPU (name and compute capability)."""
    from mattex.errors import MattexError

    gpu = None
    try:
        from mattex.runtime.cuda import device_count, device_properties

        if device_count() > 0:
            from mattex.runtime.cuda import cuda_versions

            name, cc = device_properties(0)
            gpu = {"name": name, "compute_capability": f"{cc[0]}.{cc[1]}", "cuda": cuda_versions()}
    except (MattexError, ImportError, OSError):  # no CUDA runtime or driver: a CPU-only machine
        gpu = None
    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "instruction_sets": instruction_sets(),
        "memory_gib": memory_gib(),
        "gpu": gpu,
        "python": platform.python_version(),
        "system": platform.system(),
    }


def cpu_ghz(cpuinfo: str | None = None) -> float | None:
    """The highest clock /proc/cpuinfo reports (GHz): what a virtual machine exposes of it."""
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    clocks = [float(line.split(":", 1)[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    return round(max(clocks) / 1000, 3) if clocks else None


def fp32_peak(threads: int, flags: set[str] | None = None, ghz: float | None = None, measure: bool = True) -> dict:
    """This CPU's fp32 FLOP limit, two ways, and the larger as `gflops`:
    - nominal: threads x clock x FLOP per cycle, from the FMA width (two FMA pipes assumed: 32
      FLOP/cycle with AVX2 + FMA; 64 with AVX-512 on Intel, whose server cores have two 512-bit
      FMA units; AMD's Zen 4 splits AVX-512 into 256-bit halves, so AMD stays at 32). A virtual
      machine reports its base clock, not its boost: this can fall short of what runs.
    - measured: the best of three 2048x2048 single-precision matrix products (numpy's BLAS).
    A frame cannot beat either, so the larger is the limit a frame is compared with."""
    flags = cpu_flags() if flags is None else flags
    ghz = cpu_ghz() if ghz is None else ghz
    amd = "AMD" in cpu_model()
    if "avx512f" in flags and not amd:
        per_cycle, how = 64, "AVX-512: 2 FMA x 16 lanes x 2"
    elif "fma" in flags:
        per_cycle, how = 32, "AVX2 + FMA: 2 FMA x 8 lanes x 2"
    else:
        per_cycle, how = 8, "SSE: 4 lanes x 2"
    nominal = round(threads * (ghz or 0.0) * per_cycle, 1)
    measured = measured_sgemm_gflops() if measure else None
    return {
        "threads": threads,
        "ghz": ghz,
        "flop_per_cycle": per_cycle,
        "how": how,
        "nominal_gflops": nominal,
        "measured_sgemm_gflops": measured,
        "gflops": max(nominal, measured or 0.0),
    }


def measured_sgemm_gflops(n: int = 2048, rounds: int = 3) -> float:
    """GFLOP/s of the best of `rounds` n x n float32 matrix products (numpy's BLAS, its threads)."""
    import time

    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a  # warm-up: threads started, pages touched
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - started)
    return round(2 * n**3 / best / 1e9, 1)


def memory_gib() -> float | None:
    """Physical memory (Linux /proc/meminfo), GiB."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
