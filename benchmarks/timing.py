"""Timing shared by the benchmarks: each runner alone, then all interleaved round by round, so a
run shows whether one runner slows the next (a runtime's idle threads spinning, an allocator's
state) instead of hiding it in a ratio."""

from __future__ import annotations

import statistics
import time


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
