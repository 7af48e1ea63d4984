"""The C++ runtime against the Python runtime on the same backend (OpenVINO, CPU), same file,
same frame, in one process.

    python benchmarks/cpp_runtime.py --json benchmarks/results_cpp_runtime_cpu.json
    python benchmarks/cpp_runtime.py --backbones mobilenetv2 --rounds 5

Builds runtime/cpp in Release (CMake, against the installed `openvino` wheel), then for each
backbone at HD (k = 5,000, seeded random weights with every patch eligible, as cpu_backends.py)
exports the fp32 file and times, round by round on one 1080x1920 frame:
- Python's `Matter.open(path, backend="openvino")` - baseline;
- the C++ `mattex::Matter::run`, through the C API (`mattex_run`, called with ctypes: the C++
  runtime in the same process, so both share the machine's state round by round).
Then, in a C++ process of its own (`mattex_overhead`), `Matter::run` against the bare OpenVINO
infer call on the same compiled settings: the C++ runtime's own cost per frame (checks, value
scan, tensor wrapping), and `Matter::run` without the value scan. Both runtimes compile with
the same settings (f32, LATENCY, the same threads). The CPU's model and instruction sets are
printed beside every figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import eligible_fp32_export  # noqa: E402
from timing import alone_and_interleaved, bench_frame, cpu_benchmark_arguments, parse_and_prepare  # noqa: E402

from mattex.measure.machine import describe_machine  # noqa: E402
from mattex.runtime import Matter  # noqa: E402

CPP = Path(__file__).resolve().parents[1] / "runtime" / "cpp"


def build_release(folder: Path) -> Path:
    """runtime/cpp in Release with mattex_overhead, no examples."""
    for command in (
        ["cmake", "-S", CPP, "-B", folder, "-DCMAKE_BUILD_TYPE=Release", "-DMATTEX_BUILD_EXAMPLES=OFF",
         "-DMATTEX_BUILD_BENCHMARKS=ON",
         f"-DPython3_EXECUTABLE={sys.executable}"],
        ["cmake", "--build", folder, "-j", str(os.cpu_count() or 2)],
    ):  # fmt: skip
        subprocess.run(list(map(str, command)), check=True, capture_output=True)
    return folder


def cpp_runner(library: Path, model: Path, threads: int, cache_dir: Path, src, bgr):
    """The C++ runtime's Matter::run through its C API (runtime/cpp/examples/mattex_ctypes.py),
    in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mattex_ctypes", CPP / "examples" / "mattex_ctypes.py")
    binding = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(binding)
    lib = binding.MattexLibrary(library)
    status, handle = lib.open(model, threads=threads, cache_dir=cache_dir)
    if status != 0:
        raise RuntimeError(lib.error(status))

    def run():
        status, _, _ = lib.matte(handle, src, bgr)
        if status != 0:
            raise RuntimeError(lib.error(status))

    return run


def cpp_overhead(build: Path, model: Path, threads: int, rounds: int, cache_dir: Path) -> dict:
    """Matter::run against the bare infer call, medians in ms, from a C++ process."""
    env = {**os.environ, "MATTEX_THREADS": str(threads), "MATTEX_CACHE": str(cache_dir.parent)}
    out = subprocess.run(
        [build / "tests" / "mattex_overhead", model, "1080", "1920", str(rounds)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    label, *values = out.stdout.split()
    assert label == "ms" and len(values) == 5
    names = ("matter_run_ms", "bare_infer_ms", "matter_run_without_value_scan_ms", "overhead_ms",
             "overhead_without_value_scan_ms")  # fmt: skip
    return {name: round(float(value), 2) for name, value in zip(names, values)}


def bench(backbone: str, args, build: Path, folder: Path) -> list[dict]:
    model, config, _ = eligible_fp32_export(backbone, "hd", folder)
    src, bgr = bench_frame(config.height, config.width)
    cache = folder / "openvino"
    python = Matter.open(model, backend="openvino", threads=args.threads, cache_dir=cache)
    library = next(build.glob("libmattex.so.*.*.*"))
    runners = {
        "python Matter, openvino (baseline)": lambda: python(src, bgr),
        "c++ Matter::run, openvino (C API)": cpp_runner(library, model, args.threads, cache, src, bgr),
    }
    times = alone_and_interleaved(runners, args.rounds)
    baseline = times[next(iter(runners))]["interleaved"]
    overhead = cpp_overhead(build, model, args.threads, args.rounds, cache)
    rows = []
    for name, t in times.items():
        median = t["interleaved"]
        rows.append(
            {
                "backbone": backbone,
                "resolution": "hd",
                "runner": name,
                "ms_per_frame": round(1000 * median, 1),
                "min_ms": round(1000 * min(t["samples"]), 1),
                "ms_alone": round(1000 * t["alone"], 1),
                "vs_python": round(median / baseline, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    overhead_row = {
        "backbone": backbone,
        "resolution": "hd",
        "runner": "c++ process: Matter::run vs bare OpenVINO infer",
        **overhead,  # overheads: medians of the per-round differences from the bare infer
    }
    print(json.dumps(overhead_row), flush=True)
    return rows + [overhead_row]


def main() -> None:
    parser = cpu_benchmark_arguments(__doc__)
    parser.set_defaults(resolutions=["hd"], rounds=10)
    args = parse_and_prepare(parser)
    machine = describe_machine()
    print(f"CPU: {machine['cpu']}, {args.threads} threads, {' + '.join(machine['instruction_sets'])}")
    result = {"machine": machine, "threads": args.threads, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build = build_release(folder / "build")
        for backbone in args.backbones:
            result["rows"] += bench(backbone, args, build, folder)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
