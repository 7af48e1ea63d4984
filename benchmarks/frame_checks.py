"""What the runtime's frame checks (NaN/Inf, values in [0, 1]) cost per HD frame, beside doing
nothing, in one process; with the CPU's model and instruction sets.

    python benchmarks/frame_checks.py [--rounds 50]

A frame is src and bgr, each (1, 3, 1080, 1920). Rows: `check_values` on float32 frames (what
Matter runs before every float call), the same on float16 frames (fp16-I/O files), nothing (the
timer alone), and a float min and max pass per tensor (the obvious way, for comparison).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mattex.measure.machine import describe_machine
from mattex.runtime.io_spec import check_values


def median_ms(call, rounds: int) -> float:
    call()  # warm: page in, allocate
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    hd = {name: rng.random((1, 3, 1080, 1920), dtype=np.float32) for name in ("src", "bgr")}
    half = {name: x.astype(np.float16) for name, x in hd.items()}
    rows = {
        "check_values, float32": median_ms(lambda: check_values(hd), args.rounds),
        "check_values, float16": median_ms(lambda: check_values(half), args.rounds),
        "nothing": median_ms(lambda: None, args.rounds),
        "float min + max, float32": median_ms(lambda: [(x.min(), x.max()) for x in hd.values()], args.rounds),
        "float min + max, float16": median_ms(
            lambda: [(x.min(), x.max()) for x in half.values()], max(3, args.rounds // 10)
        ),
    }
    machine = describe_machine()
    print(
        f"CPU: {machine['cpu']}, {machine['cores']} cores, instruction sets: "
        f"{', '.join(machine['instruction_sets']) or 'none detected'}"
    )
    print(f"ms per HD frame (src + bgr, 1x3x1080x1920 each), median of {args.rounds} rounds:")
    for name, ms in rows.items():
        print(f"  {name:<26} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
