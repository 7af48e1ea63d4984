"""Where a frame's time goes, node by node, on ONNX Runtime and OpenVINO (CPU): the table every
change to the refiner's graph is judged by.

    python benchmarks/refiner_profile.py --backbones resnet50 --resolutions 4k --json profile.json
    python benchmarks/refiner_profile.py --file bgm_mobilenetv2_hd_fp32.onnx --top 15
    python benchmarks/refiner_profile.py --baseline before/resnet50_4k.onnx --file resnet50_4k.onnx

For each backbone and resolution it exports the fp32 file from seeded random weights with every
patch eligible (so exactly k patches are refined, as cpu_backends.py), or takes `--file`, runs it
`--runs` times with each runtime's profiler on (after one warm-up run), and reports:
- the top nodes by time: name, operator, the kernel that ran it (ONNX Runtime: the op after its
  graph fusions, e.g. FusedConv, and the NCHWc domain where it chose blocked layouts; OpenVINO:
  its exec type, e.g. jit_avx512_f32 or ref_f32 for a reference kernel), ms per frame;
- the time per stage (base network, selection, crop, refine, paste: cpu_backends.stage_of) and
  the refiner's share, with GFLOP/s of the base network and of the refiner (FLOPs counted by
  PyTorch's counter at the trace size, mattex.measure.flops) where the file is an export;
- the refiner's nodes that ran OpenVINO reference kernels for 0.5 ms or more, and the time in
  layout reorders.
With `--baseline` (a file of the same model exported by an earlier mattex: for example from a
`git worktree` of that revision, `pip install --no-deps -t DIR` of it, `PYTHONPATH=DIR python
benchmarks/export_speed.py`'s eligible_fp32_export) both files are profiled in one process,
round by round (baseline, file, baseline, ...), and the refiner's node time is compared: the
baseline on OpenVINO with dynamic shapes, as mattex compiled files until the OpenVINO backend
compiled one model per input shape, the file as the backend compiles it now.
The CPU's model and instruction sets are printed beside every figure.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_backends import (  # noqa: E402
    STAGES,
    Node,
    OnnxRuntimeProfiler,
    OpenVinoProfiler,
    onnxruntime_nodes,
    openvino_nodes,
    stage_ms,
    stages_in_order,
)
from export_speed import eligible_fp32_export  # noqa: E402
from timing import bench_frame, cpu_benchmark_arguments, parse_and_prepare  # noqa: E402

from mattex.measure.flops import count_flops  # noqa: E402
from mattex.measure.machine import describe_machine  # noqa: E402


def summarise(nodes: list[Node], top: int, flops) -> dict:
    by_stage = stage_ms(nodes)
    total = sum(by_stage.values()) or 1.0
    refiner_ms = total - by_stage["base"]
    summary = {
        "node_ms": round(total, 1),
        "stage_ms": {s: round(by_stage[s], 1) for s in STAGES},
        "refiner_share": round(refiner_ms / total, 3),
        "top": [n._replace(ms=round(n.ms, 2))._asdict() for n in sorted(nodes, key=lambda n: -n.ms)[:top]],
        # OpenVINO's reference kernels in the refiner that cost something (shape arithmetic on a
        # few integers also runs them, harmlessly)
        "reference_kernels": [
            {"name": n.name, "op": n.op, "ms": round(n.ms, 2)}
            for n, stage in sorted(zip(nodes, stages_in_order(nodes)), key=lambda pair: -pair[0].ms)
            if n.kernel.lower().startswith("ref") and stage != "base" and n.ms >= 0.5
        ],
        "reorder_ms": round(sum(n.ms for n in nodes if "reorder" in (n.op + n.name).lower()), 1),
    }
    if flops is not None:
        summary["gflops_per_s"] = {
            "base": round(flops.base / (by_stage["base"] / 1000), 1) if by_stage["base"] else None,
            "refiner": round(flops.refiner / (refiner_ms / 1000), 1) if refiner_ms else None,
        }
    return summary


def profile(path: Path, height: int, width: int, args, flops) -> dict:
    src, bgr = bench_frame(height, width)
    result = {"file": path.name, "size": f"{height}x{width}"}
    for runtime, nodes in (
        ("onnxruntime", onnxruntime_nodes(path, src, bgr, args.threads, args.runs)),
        ("openvino f32", openvino_nodes(path, src, bgr, "f32", args.threads, args.runs)),
    ):
        result[runtime] = summarise(nodes, args.top, flops)
        print_table(runtime, result[runtime], path.name)
    return result


RUNTIMES = ("onnxruntime", "openvino f32")


def profile_nodes(runtime: str, path: Path, static: bool, runs: int, threads: int) -> list[Node]:
    """One file's nodes on one runtime (OpenVINO with static or dynamic shapes), `runs` frames."""
    height, width = _trace_size(path)
    src, bgr = bench_frame(height, width)
    if runtime == "onnxruntime":
        profiler = OnnxRuntimeProfiler(path, src, bgr, threads)
    else:
        profiler = OpenVinoProfiler(path, src, bgr, "f32", threads, static=static)
    for _ in range(runs):
        profiler.run()
    return profiler.nodes()


def _profile_in_a_process(runtime: str, path: Path, static: bool, args) -> list[Node]:
    """profile_nodes in a fresh process: a second ONNX Runtime session in one process ran the
    refiner's gathers 1.7x slower than the first (the same file), and idle OpenVINO models
    slowed the next one, which would favour whichever file went first."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
        "from refiner_profile import profile_nodes; "
        "print(json.dumps(profile_nodes(sys.argv[2], Path(sys.argv[3]), sys.argv[4] == 'static', "
        "int(sys.argv[5]), int(sys.argv[6]))))"
    )
    here = str(Path(__file__).resolve().parent)
    argv = [here, runtime, str(path), "static" if static else "dynamic", str(args.runs), str(args.threads)]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return [Node(*fields) for fields in json.loads(done.stdout.splitlines()[-1])]


def _trace_size(path: Path) -> tuple[int, int]:
    from mattex.exporter.onnx_file import read_export_metadata

    return read_export_metadata(path).trace_size


def compare(baseline: Path, path: Path, args) -> dict:
    """Both files profiled on each runtime, each profile in its own process, `--rounds` rounds
    alternating baseline and file; the refiner's node time side by side."""
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.onnx_file import read_export_metadata

    config = ExportConfig.from_metadata(read_export_metadata(path))
    flops = count_flops(config)
    result = {"baseline": baseline.name, "file": path.name, "size": f"{config.height}x{config.width}"}
    for runtime in RUNTIMES:
        totals = [collections.defaultdict(float), collections.defaultdict(float)]
        kinds = {}
        for _ in range(args.rounds):
            for i, (f, static) in enumerate(((baseline, False), (path, True))):
                for node in _profile_in_a_process(runtime, f, static, args):
                    totals[i][node.name] += node.ms / args.rounds
                    kinds[node.name] = node
        nodes = [[kinds[n]._replace(ms=ms) for n, ms in t.items()] for t in totals]
        summaries = [summarise(n, args.top, flops) for n in nodes]
        refiner = [s["node_ms"] - s["stage_ms"]["base"] for s in summaries]
        ratio = round(refiner[1] / refiner[0], 3)
        result[runtime] = {"baseline": summaries[0], "file": summaries[1], "refiner_ratio": ratio}
        print_table(f"{runtime} (baseline)", summaries[0], baseline.name)
        print_table(runtime, summaries[1], path.name)
        print(
            f"\n{runtime}: refiner node time {refiner[0]:.0f} -> {refiner[1]:.0f} ms "
            f"({ratio}x), frame node time {summaries[0]['node_ms']} -> {summaries[1]['node_ms']} ms"
        )
    return result


def print_table(runtime: str, summary: dict, name: str) -> None:
    stages = ", ".join(f"{s} {ms}" for s, ms in summary["stage_ms"].items())
    print(
        f"\n{name} on {runtime}: {summary['node_ms']} ms of node time ({stages}); refiner share "
        f"{summary['refiner_share']}; GFLOP/s {summary.get('gflops_per_s')}; reorders {summary['reorder_ms']} ms"
    )
    print("| node | operator | kernel | ms |\n|---|---|---|---:|")
    for node in summary["top"]:
        print(f"| `{node['name']}` | {node['op']} | {node['kernel']} | {node['ms']} |")
    if summary["reference_kernels"]:
        slow = ", ".join(f"{n['name']} ({n['op']}, {n['ms']} ms)" for n in summary["reference_kernels"])
        print(f"refiner nodes on reference kernels: {slow}")


def main() -> None:
    parser = cpu_benchmark_arguments(__doc__)
    parser.set_defaults(backbones=["resnet50"], resolutions=["4k"])
    parser.add_argument("--file", type=Path, help="Profile this file instead of exporting (its trace size).")
    parser.add_argument("--baseline", type=Path, help="Compare --file with this file, interleaved (above).")
    parser.add_argument("--runs", type=int, default=3, help="Profiled runs per runtime (after a warm-up).")
    parser.add_argument("--top", type=int, default=12, help="How many nodes each table lists.")
    args = parse_and_prepare(parser)
    machine = describe_machine()
    print(f"CPU: {machine['cpu']}, {args.threads} threads, {' + '.join(machine['instruction_sets'])}")
    result = {"machine": machine, "threads": args.threads, "profiles": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            result["comparisons"] = [compare(args.baseline, args.file, args)]
        elif args.file:
            from mattex.exporter.onnx_file import read_export_metadata

            height, width = read_export_metadata(args.file).trace_size
            result["profiles"].append(profile(args.file, height, width, args, None))
        for backbone in [] if args.file else args.backbones:
            for resolution in args.resolutions:
                path, config, _ = eligible_fp32_export(backbone, resolution, Path(tmp))
                result["profiles"].append(profile(path, config.height, config.width, args, count_flops(config)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
