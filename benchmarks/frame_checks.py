"""What the runtime's frame checks (NaN/Inf, values in [0, 1]) cost per HD frame, beside the
frame itself doing nothing, in one process.

    python benchmarks/frame_checks.py
"""

import statistics
import time

import numpy as np

from mattex.machine import describe_machine
from mattex.runtime.io_spec import check_values


def main(rounds: int = 50) -> None:
    rng = np.random.default_rng(0)
    feeds = {"src": rng.random((1, 3, 1080, 1920), dtype=np.float32),
             "bgr": rng.random((1, 3, 1080, 1920), dtype=np.float32)}
    checked, nothing = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        check_values(feeds)
        checked.append(time.perf_counter() - start)
        start = time.perf_counter()
        nothing.append(time.perf_counter() - start)
    machine = describe_machine()
    print(f"{machine['cpu']} ({' + '.join(machine['instruction_sets'])}): check of src+bgr, HD float32: "
          f"{1000 * statistics.median(checked):.2f} ms per frame (nothing: {1000 * statistics.median(nothing):.4f} ms)")


if __name__ == "__main__":
    main()
