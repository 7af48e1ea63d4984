"""Timing shared by the benchmarks: the frame they time, PyTorch eager as a runner, and each runner
alone, then all interleaved round by round, so a run shows whether one runner slows the next (a
runtime's idle threads spinning, an allocator's state) instead of hiding it in a ratio."""

from __future__ import annotations

import statistics
import time


def cpu_benchmark_arguments(doc: str):
    """The options every CPU benchmark over backbones and sizes takes; add its own, then parse
    with `parse_and_prepare`."""
    import argparse
    import os
    from pathlib import Path

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "mobilenetv2"])
    parser.add_argument("--resolutions", nargs="+", default=["hd", "4k"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path)
    return parser


def parse_and_prepare(parser):
    """Parse, then set PyTorch's threads and keep freed memory (PyTorch eager without page-fault
    noise: mattex.measure.bench.keep_freed_memory)."""
    import torch

    from mattex.measure.bench import keep_freed_memory

    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    return args


def bench_frame(height: int, width: int):
    """The frame every benchmark times: seeded noise as src, bgr a slightly perturbed copy,
    both (1, 3, H, W) float32 in [0, 1]."""
    import numpy as np

    rng = np.random.default_rng(0)
    src = rng.random((1, 3, height, width), dtype=np.float32)
    bgr = np.clip(src + rng.normal(0, 0.1, src.shape), 0, 1).astype(np.float32)
    return src, bgr


def eager(model, src, bgr):
    """A runner calling a PyTorch module on (src, bgr) in eager mode, without autograd."""
    import torch

    src_t, bgr_t = torch.from_numpy(src), torch.from_numpy(bgr)

    def run():
        with torch.no_grad():
            model(src_t, bgr_t)

    return run


def timed(run, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def alone_and_interleaved(runners: dict, rounds: int) -> dict[str, dict]:
    """For each runner: median seconds alone (after one warm-up), median and all samples
    interleaved round by round."""
    alone = {}
    for name, run in runners.items():
        run()
        alone[name] = statistics.median(timed(run, rounds))
    mixed = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            mixed[name] += timed(run, 1)
    return {
        name: {"alone": alone[name], "interleaved": statistics.median(mixed[name]), "samples": mixed[name]}
        for name in runners
    }
