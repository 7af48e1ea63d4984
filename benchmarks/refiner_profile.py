"""Where a frame's time goes, node by node, on ONNX Runtime and OpenVINO (CPU): the table every
change to the refiner's graph is judged by.

    python benchmarks/refiner_profile.py --backbones resnet50 --resolutions 4k --json profile.json
    python benchmarks/refiner_profile.py --file bgm_mobilenetv2_hd.onnx --top 15

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
The CPU's model and instruction sets are printed beside every figure.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_backends import STAGES, Node, onnxruntime_nodes, openvino_nodes, stage_ms, stage_of  # noqa: E402
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
            for n in sorted(nodes, key=lambda n: -n.ms)
            if n.kernel.lower().startswith("ref") and stage_of(n.name, n.op) != "base" and n.ms >= 0.5
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
    parser.add_argument("--runs", type=int, default=3, help="Profiled runs per runtime (after a warm-up).")
    parser.add_argument("--top", type=int, default=12, help="How many nodes each table lists.")
    args = parse_and_prepare(parser)
    machine = describe_machine()
    print(f"CPU: {machine['cpu']}, {args.threads} threads, {' + '.join(machine['instruction_sets'])}")
    result = {"machine": machine, "threads": args.threads, "profiles": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.file:
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
