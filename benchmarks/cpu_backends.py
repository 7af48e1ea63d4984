"""mattex on the CPU, every backend and precision side by side in one process, against the
reference PyTorch eager code with the same weights.

    python benchmarks/cpu_backends.py --json benchmarks/results_cpu_backends.json
    python benchmarks/cpu_backends.py --backbones mobilenetv2 --resolutions hd --rounds 3

For each backbone and resolution (HD: k = 5,000 at 1/4; 4K: k = 20,000 at 1/8) it exports, from
seeded random weights with every patch eligible (so every runner refines exactly k patches; the
published checkpoints are not downloadable here), an fp32 file and int8 files with 7-bit weights
(`--weight-bits 7`, the default: exact on CPUs without VNNI) and 8-bit weights (`--weight-bits
8`, for VNNI/AMX CPUs and TensorRT), calibrated on two synthetic composites. It then times, round
by round on the same frame:
- the reference method in PyTorch eager (the public package's refiner formulation) - baseline;
- each file through `Matter` on ONNX Runtime (CPU) and OpenVINO (f32; bf16 where the CPU has
  AMX or AVX-512 BF16; int8 files are refused by the OpenVINO backend, see INT8_REFUSAL);
and reports ms per frame, the ratio to the baseline, and per-stage shares of the graph's node
time from ONNX Runtime's profiler and OpenVINO's performance counters: base network, selection
(the top-k), crop (gathers and per-patch upsampling), refine (the refiner's convolutions), paste.
The CPU's model and instruction sets are printed beside every figure.
"""

from __future__ import annotations

import collections
import copy
import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import eligible_fp32_export  # noqa: E402
from timing import alone_and_interleaved, bench_frame, cpu_benchmark_arguments, eager, parse_and_prepare  # noqa: E402

from mattex.calibration.int8 import CalibrationSettings  # noqa: E402
from mattex.calibration.synthetic import write_synthetic_photomatte  # noqa: E402
from mattex.errors import MattexError  # noqa: E402
from mattex.exporter.config import ExportConfig  # noqa: E402
from mattex.exporter.export import export_onnx  # noqa: E402
from mattex.measure.machine import describe_machine  # noqa: E402
from mattex.model.reference_method import as_reference_formulation  # noqa: E402
from mattex.model.sources import build_model  # noqa: E402
from mattex.runtime import Matter  # noqa: E402

STAGES = ("base", "selection", "crop", "refine", "paste")


def stage_of(node: str, op: str) -> str:
    """The stage a graph node belongs to, by the name the exporter's trace gave it."""
    if "TopK_select" in node or "_select/" in node:
        return "selection"
    if "/refiner/" not in node:
        return "base"
    if op in ("Conv", "Convolution", "FusedConv", "QLinearConv", "BatchNormalization", "Relu"):
        return "refine"
    if "Scatter" in op or "Scatter" in node:
        return "paste"
    return "crop"


Node = collections.namedtuple("Node", "name op kernel ms")


class OnnxRuntimeProfiler:
    """Per-node kernel time from ONNX Runtime's profiler, the session made as Matter makes it (the
    same disabled optimizers for the file's precision). run() once per profiled frame (several
    profilers can be run round by round, interleaved); nodes() then gives ms per frame with the
    session's warm-up run left out. The kernel is the op after ONNX Runtime's fusions."""

    def __init__(self, path: Path, src, bgr, threads: int) -> None:
        import onnxruntime as ort

        from mattex.runtime.backends.onnxruntime import disabled_optimizers_for

        probe = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        disabled = disabled_optimizers_for(probe.get_modelmeta().custom_metadata_map.get("precision"))
        options = ort.SessionOptions()
        options.log_severity_level, options.intra_op_num_threads = 3, threads
        options.enable_profiling, options.profile_file_prefix = True, str(path.with_suffix(""))
        # idle threads sleep: spinning ones would run into the next profiler's frame
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
        )
        self.feeds, self.runs = {"src": src, "bgr": bgr}, 0
        self.session.run(None, self.feeds)  # warm-up

    def run(self) -> None:
        self.session.run(None, self.feeds)
        self.runs += 1

    def nodes(self) -> list[Node]:
        durations, ops = collections.defaultdict(list), {}
        for e in json.loads(Path(self.session.end_profiling()).read_text()):  # in the order they ran
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                name = e["name"][: -len("_kernel_time")]
                durations[name].append(e["dur"])
                ops[name] = e["args"].get("op_name", "")
        return [Node(n, ops[n], ops[n], sum(d[1:]) / 1000 / self.runs) for n, d in durations.items()]


class OpenVinoProfiler:
    """Per-node real time from OpenVINO's performance counters (LATENCY, the given arithmetic and
    threads), compiled as the OpenVINO backend compiles (static shapes: the frame's), or with
    dynamic shapes as mattex did before (`static=False`, for comparisons). run() / nodes() as
    OnnxRuntimeProfiler; the kernel is OpenVINO's exec type."""

    def __init__(self, path: Path, src, bgr, precision: str = "f32", threads: int | None = None, static=True):
        import openvino as ov

        config = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        model = core.read_model(str(path))
        if static:
            model.reshape({"src": list(src.shape), "bgr": list(bgr.shape)})
        self.request = core.compile_model(model, "CPU", config).create_infer_request()
        self.feeds, self.runs = {"src": src, "bgr": bgr}, 0
        self.totals, self.kinds = collections.Counter(), {}
        self.request.infer(self.feeds)  # warm-up

    def run(self) -> None:
        self.request.infer(self.feeds)
        self.runs += 1
        for p in self.request.profiling_info:
            self.totals[p.node_name] += p.real_time.total_seconds() * 1000
            self.kinds[p.node_name] = (p.node_type, p.exec_type)

    def nodes(self) -> list[Node]:
        return [Node(n, self.kinds[n][0], self.kinds[n][1], ms / self.runs) for n, ms in self.totals.items()]


def onnxruntime_nodes(path: Path, src, bgr, threads: int, runs: int = 2) -> list[Node]:
    """OnnxRuntimeProfiler's nodes over `runs` frames."""
    return _profiled(OnnxRuntimeProfiler(path, src, bgr, threads), runs)


def openvino_nodes(path: Path, src, bgr, precision: str = "f32", threads: int | None = None, runs: int = 2):
    """OpenVinoProfiler's nodes over `runs` frames."""
    return _profiled(OpenVinoProfiler(path, src, bgr, precision, threads), runs)


def _profiled(profiler, runs: int) -> list[Node]:
    for _ in range(runs):
        profiler.run()
    return profiler.nodes()


def stage_ms(nodes: list[Node]) -> collections.Counter:
    """ms per stage; `nodes` in the order they ran (as the profilers give them)."""
    times = collections.Counter()
    for node, stage in zip(nodes, stages_in_order(nodes)):
        times[stage] += node.ms
    return times


def stages_in_order(nodes: list[Node]) -> list[str]:
    """Each node's stage. A node the runtime inserted (no name scope: ONNX Runtime's
    ReorderInput_token_7, OpenVINO's VariadicSplit_16433) belongs to the next traced node it
    runs before, the one it prepares the layout for; the trailing ones to the base network."""
    stages, following = [], "base"
    for node in reversed(nodes):
        if "/" in node.name:
            following = stage_of(node.name, node.op)
        stages.append(following)
    return stages[::-1]


def onnxruntime_stages(path: Path, src, bgr, threads: int, runs: int = 2) -> dict[str, float]:
    return _shares(stage_ms(onnxruntime_nodes(path, src, bgr, threads, runs)))


def openvino_stages(path: Path, src, bgr, precision: str) -> dict[str, float]:
    return _shares(stage_ms(openvino_nodes(path, src, bgr, precision)))


def _shares(times: collections.Counter) -> dict[str, float]:
    total = sum(times.values()) or 1.0
    return {s: times[s] / total for s in STAGES}


def export_files(backbone: str, resolution: str, folder: Path, calibration: Path) -> dict[str, Path]:
    fp32, _, weights = eligible_fp32_export(backbone, resolution, folder)
    files = {"fp32": fp32}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for bits in (7, 8):
            name = f"int8 w{bits}"
            files[name] = folder / f"{backbone}_{resolution}_int8_w{bits}.onnx"
            export_onnx(
                ExportConfig.from_preset(resolution, backbone=backbone, precision="int8"),
                files[name],
                weights=weights,
                calibration=CalibrationSettings(calibration, samples=2, weight_bits=bits),
            )
    files["weights"] = weights
    return files


def bench(backbone: str, resolution: str, args, folder: Path, calibration: Path) -> dict:
    files = export_files(backbone, resolution, folder, calibration)
    config = ExportConfig.from_preset(resolution, backbone=backbone)
    model = build_model(files["weights"], **config.model_kwargs())
    reference = as_reference_formulation(copy.deepcopy(model)).eval()
    src, bgr = bench_frame(config.height, config.width)
    runners, skipped, stages = {"pytorch eager, reference method (baseline)": eager(reference, src, bgr)}, [], {}
    for precision in ("fp32", "int8 w7", "int8 w8"):
        path = files[precision]
        ort_matter = Matter.open(path, backend="onnxruntime", threads=args.threads, spinning=False)
        runners[f"onnxruntime {precision}"] = lambda m=ort_matter: m(src, bgr)
        stages[f"onnxruntime {precision}"] = onnxruntime_stages(path, src, bgr, args.threads)
        for hint in ("f32", "bf16"):
            label = f"openvino {precision} {hint}"
            try:
                ov_matter = Matter.open(
                    path,
                    backend="openvino",
                    inference_precision=hint,
                    threads=args.threads,
                    cache_dir=folder / "ov_cache",
                )
            except MattexError as e:
                skipped.append({"runner": label, "why": str(e)})
                continue
            runners[label] = lambda m=ov_matter: m(src, bgr)
            stages[label] = openvino_stages(path, src, bgr, hint)
    times = alone_and_interleaved(runners, args.rounds)
    baseline = times[next(iter(runners))]["interleaved"]
    rows = []
    for name, t in times.items():
        median, samples = t["interleaved"], t["samples"]
        share = stages.get(name)
        rows.append(
            {
                "backbone": backbone,
                "resolution": resolution,
                "runner": name,
                "ms_per_frame": round(1000 * median, 1),
                "min_ms": round(1000 * min(samples), 1),
                "ms_alone": round(1000 * t["alone"], 1),
                "interleaved_vs_alone": round(median / t["alone"], 3),
                "speedup_vs_reference": round(baseline / median, 3),
                "stage_shares": {k: round(v, 3) for k, v in share.items()} if share else None,
                "refiner_and_selection_share": round(1 - share["base"], 3) if share else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "skipped": skipped}


def main() -> None:
    parser = cpu_benchmark_arguments(__doc__)
    args = parse_and_prepare(parser)
    machine = describe_machine()
    print(f"CPU: {machine['cpu']}, {args.threads} threads, {' + '.join(machine['instruction_sets'])}")
    result = {"machine": machine, "threads": args.threads, "rows": [], "skipped": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_synthetic_photomatte(folder / "calibration", 2, seed=7)
        for backbone in args.backbones:
            for resolution in args.resolutions:
                out = bench(backbone, resolution, args, folder, folder / "calibration")
                result["rows"] += out["rows"]
                result["skipped"] += out["skipped"]
                for f in folder.glob("*.onnx"):
                    f.unlink()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
