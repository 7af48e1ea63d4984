"""What the efficiency benchmark divides by: the frame's FLOPs split into base network and
refiner, the CPU's FLOP limit, and an allocator that keeps freed memory so PyTorch eager is timed
without page faults."""

import os
import subprocess
import sys

import pytest

from mattex.exporter.config import ExportConfig
from mattex.measure.flops import count_flops
from mattex.measure.machine import cpu_ghz, fp32_peak


def refiner_conv_gflop(k: int) -> float:
    """The refiner's four 3x3 convolutions on k patches, by hand: 2 x in x 9 x out x outputs."""
    per_patch = 2 * 9 * (42 * 24 * 6 * 6 + 24 * 16 * 4 * 4 + 22 * 12 * 6 * 6 + 12 * 4 * 4 * 4)
    return per_patch * k / 1e9


def test_flops_split_base_and_refiner_as_counted_by_hand():
    small = ExportConfig(height=128, width=160, sample_pixels=1600)  # k = 100
    flops = count_flops(small)
    by_hand = refiner_conv_gflop(small.k)
    # The refiner counts the published arithmetic: what mattex adds to run it fast is left out.
    assert flops.refiner == pytest.approx(by_hand)
    assert flops.base > 0 and flops.total == pytest.approx(flops.base + flops.refiner)
    # The base network does not depend on k; the refiner scales with it.
    more = count_flops(ExportConfig(height=128, width=160, sample_pixels=3200))
    assert more.base == pytest.approx(flops.base) and more.refiner == pytest.approx(2 * flops.refiner, rel=1e-3)


def test_the_flop_limit_comes_from_fma_width_cores_and_clock():
    assert cpu_ghz("cpu MHz\t\t: 2596.142\ncpu MHz\t\t: 2400.0\n") == 2.596
    peak = fp32_peak(2, flags={"avx2", "fma"}, ghz=2.5, measure=False)
    assert peak["flop_per_cycle"] == 32 and peak["nominal_gflops"] == peak["gflops"] == 160.0
    assert fp32_peak(4, flags={"sse2"}, ghz=2.0, measure=False)["gflops"] == 64.0
    # A measured matrix product above the nominal figure (a boost clock) becomes the limit.
    measured = fp32_peak(1, flags={"sse2"}, ghz=0.001)
    assert (
        measured["measured_sgemm_gflops"] > measured["nominal_gflops"]
        and measured["gflops"] == measured["measured_sgemm_gflops"]
    )


def test_keep_freed_memory_stops_page_faults_on_reallocation():
    code = """
import resource, sys, numpy as np
from mattex.measure.bench import freed_memory_kept, keep_freed_memory
if sys.argv[1] in ("keep", "restored", "kept after a block"):
    assert keep_freed_memory()
if sys.argv[1] == "restored":
    assert keep_freed_memory(False)
if sys.argv[1] in ("kept after a block", "default after a block"):
    with freed_memory_kept():  # as bench() runs its runners
        pass
def faults_of_one_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, written through
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_block()
print(faults_of_one_block())
"""
    faults = {}
    glibc_defaults = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # see conftest.py
    for how in ("keep", "default", "restored", "kept after a block", "default after a block"):
        done = subprocess.run(
            [sys.executable, "-c", code, how], capture_output=True, text=True, timeout=60, env=glibc_defaults
        )
        assert done.returncode == 0, done.stderr
        faults[how] = int(done.stdout)
    assert faults["keep"] < 50 and faults["default"] > 5 * max(faults["keep"], 1), faults
    assert faults["restored"] > 5 * max(faults["keep"], 1), faults
    # bench() leaves the setting as it found it: a process that keeps freed memory (this suite's
    # workers) still keeps it, one at glibc's defaults is back at them.
    assert faults["kept after a block"] < 50, faults
    assert faults["default after a block"] > 5 * max(faults["keep"], 1), faults
