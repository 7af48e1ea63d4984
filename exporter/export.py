"""Trace MattingRefine to one ONNX graph that ONNX Runtime runs and TensorRT builds."""

from __future__ import annotations

import collections
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
import torch
from torch import nn

import mattex
from mattex.calibration.int8 import (
    CalibrationSettings,
    QuantizationResult,
    check_calibration_data,
    default_cache_path,
)
from mattex.contract import INPUTS, MODEL_OUTPUTS, SIZE_MULTIPLE
from mattex.errors import ConfigError, ExportCheckError
from mattex.files import atomic_paths, check_writable
from mattex.metadata import ExportMetadata
from mattex.model.sources import WeightsSource, build_model, resolve_weights
from mattex.plugins import TOPK_LAST_DIM

from .config import DYNAMIC_AXES, FP16_KEEP_FP32, FRAME_INPUT_AXES, ExportConfig
from .lint import CheckReport, check_model
from .mixed_precision import convert_to_fp16, kept_in_fp32
from .passes import PASSES
from .quantize import quantize_int8
from .topk_select import INDICES, SCORES

# Order matters: fold first so TopK's K and shapes are constants the rewrite can match.
EXPORT_PASSES = ["fold_constants", "replace_unordered_topk", "cleanup", "toposort"]
# --topk plugin: TopK stays standard through the precision step (ONNX Runtime calibrates int8
# on it) and becomes the plugin last.
PLUGIN_EXPORT_PASSES = ["fold_constants", "cleanup", "toposort"]
PLUGIN_PASSES = ["replace_unordered_topk_with_plugin"]


@dataclass
class ExportResult:
    path: Path
    size_bytes: int
    nodes: int
    op_histogram: dict[str, int]
    metadata: ExportMetadata
    passes: dict[str, int]
    check: CheckReport
    quantization: QuantizationResult | None = None


class _Outputs(nn.Module):
    """Returns the contract's outputs (pha, fgr and, with debug outputs, the rest); with uint8
    frames in, converts them to the model's (B, 3, H, W) floats in [0, 1] first."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], frames: bool = False) -> None:
        super().__init__()
        self.model = model
        self.keep = [MODEL_OUTPUTS.index(n) for n in names]
        self.frames = frames

    def forward(self, src: torch.Tensor, bgr: torch.Tensor):
        if self.frames:  # (B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1], as u / 255 exactly
            # Cast first: TensorRT takes uint8 only as a network input, straight into a Cast.
            src, bgr = (x.float().permute(0, 3, 1, 2) / 255 for x in (src, bgr))
        outputs = self.model(src, bgr)
        return tuple(outputs[i] for i in self.keep)


def export_onnx(
    config: ExportConfig,
    output: str | Path,
    checkpoint: str | Path | None = None,
    weights: WeightsSource | None = None,
    progress: Callable[[str], None] = lambda step: None,
    calibration: CalibrationSettings | None = None,
    calibration_cache: Path | None = None,
    calibration_progress: Callable[[int, int], None] = lambda i, n: None,
) -> ExportResult:
    """Export, rewrite, check and write `output` atomically. Raises before writing anything
    when the configuration, the checkpoint, the calibration data or the target check is wrong.
    int8 needs `calibration` (its ranges are cached at `calibration_cache`, by default beside
    the output)."""
    config.validate()
    output = Path(output)
    if config.precision == "int8" and calibration is None:
        raise ConfigError(
            "an int8 export needs calibration data: `calibration` (a PhotoMatte85-layout "
            "folder; `mattex data synth` writes a stand-in)"
        )
    check_writable(output)
    if config.precision == "int8":
        progress("checking calibration data")
        check_calibration_data(calibration, (config.height, config.width))  # before minutes of tracing
    progress("resolving weights")
    weights = weights or resolve_weights(config.backbone, Path(checkpoint) if checkpoint else None)
    if weights.kind == "random":
        warnings.warn(
            f"no checkpoint or demo weights for {config.backbone}: exporting RANDOM weights "
            f"(seed {weights.seed}); fine for speed tests, meaningless mattes",
            stacklevel=2,
        )
    exported, pass_counts = _float_graph(config, weights, progress)
    precision_info: dict = {}
    quantization = None
    if config.precision == "fp16":
        progress("converting to fp16")
        exported, fp16_info = _to_fp16(exported, config)
        precision_info = {"fp16": fp16_info}
    elif config.precision == "int8":
        progress("calibrating int8")
        quantization = quantize_int8(
            exported,
            calibration,
            (config.height, config.width),
            calibration_cache or default_cache_path(output),
            calibration_progress,
            write_cache=False,
        )
        exported, precision_info = _checked(quantization.model), {"int8_calibration": quantization.info}
    if config.topk == "plugin":
        progress("handing top-k to the TensorRT plugin")
        exported, plugin_counts = _with_plugins(exported)
        pass_counts.update(plugin_counts)

    progress(f"checking for {config.target}")
    report = check_model(exported, config.target)
    if not report.passed:
        raise ExportCheckError(report)

    metadata = export_metadata(config, weights, selection=selection_entries(exported), **precision_info)
    del exported.metadata_props[:]
    onnx.helper.set_model_props(exported, metadata.to_props())
    progress("writing")
    # The calibration cache only with the file: a refused or failed export leaves no cache behind.
    write_atomically(exported, output, quantization.take_pending_cache() if quantization is not None else None)
    histogram = collections.Counter(n.op_type for n in exported.graph.node)
    return ExportResult(
        output,
        output.stat().st_size,
        len(exported.graph.node),
        dict(histogram.most_common()),
        metadata,
        pass_counts,
        report,
        quantization,
    )


# The traced and rewritten float graphs of the last models exported in this process. The fp16
# and int8 files of a model exported after its fp32 file (as `mattex doctor` and the suite do)
# reuse its graph instead of tracing again: a trace costs 1-5 s on a CPU (4K: the model runs at
# 2160x3840 while traced). The key holds all the graph depends on: the configuration but the
# settings applied after it (precision, I/O dtype, target), the weights' content (sha256 or
# seed) and the passes; tracing is deterministic (seeded inputs), so a reused graph equals a new one.
TRACE_CACHE_SIZE = 4
_float_graphs: collections.OrderedDict[tuple, tuple[onnx.ModelProto, dict[str, int]]] = collections.OrderedDict()


def _float_graph(
    config: ExportConfig, weights: WeightsSource, progress: Callable[[str], None]
) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The traced fp32 graph after the export passes, and each pass's count of changes."""
    passes = PLUGIN_EXPORT_PASSES if config.topk == "plugin" else EXPORT_PASSES
    key = _graph_key(config, weights, passes)
    if key is not None and key in _float_graphs:
        progress("reusing this process's trace of the model")
        _float_graphs.move_to_end(key)
        graph, counts = _float_graphs[key]
        return _copy(graph), dict(counts)
    model = build_model(weights, **config.model_kwargs())
    progress("tracing")
    traced = _trace(model, config)
    progress("rewriting graph")
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(traced))
    counts = PASSES.run(graph, passes)
    exported = _checked(gs.export_onnx(graph))
    if key is not None:
        _float_graphs[key] = (_copy(exported), dict(counts))
        while len(_float_graphs) > TRACE_CACHE_SIZE:
            _float_graphs.popitem(last=False)
    return exported, counts


def _graph_key(config: ExportConfig, weights: WeightsSource, passes: list[str]) -> tuple | None:
    if weights.kind != "random" and weights.sha256 is None:
        return None  # weights known by path alone: their content could change
    traced = {**asdict(config), "precision": None, "io_dtype": None, "target": None}
    return tuple(sorted(traced.items())), weights.describe(), tuple(passes)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def clear_trace_cache() -> None:
    """Forget the traces kept for reuse (`TRACE_CACHE_SIZE` models at most; a resnet50 graph
    holds about 100 MB)."""
    _float_graphs.clear()


def _checked(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _to_fp16(model: onnx.ModelProto, config: ExportConfig) -> tuple[onnx.ModelProto, dict]:
    graph = gs.import_onnx(model)
    left = kept_in_fp32(graph, FP16_KEEP_FP32)
    converted = convert_to_fp16(graph, config.io_dtype, keep_fp32=FP16_KEEP_FP32)
    selection = "top-k input (TopkLastDim plugin)" if config.topk == "plugin" else "exact top-k selection"
    info = {
        "fp16_nodes": converted,
        "kept_fp32": [selection, "shape arithmetic", *FP16_KEEP_FP32],
        "left_fp32": left,
        "io_dtype": config.io_dtype,
    }
    return _checked(gs.export_onnx(graph)), info


def _with_plugins(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    graph = gs.import_onnx(model)
    counts = PASSES.run(graph, PLUGIN_PASSES)
    if not any(counts.values()):
        raise ConfigError("`topk` plugin: the traced graph has no unordered TopK to hand over")
    return _checked(gs.export_onnx(graph)), counts


def _trace(model: nn.Module, config: ExportConfig) -> onnx.ModelProto:
    frames = config.io == "uint8"
    wrapper = _Outputs(model, config.output_names, frames).eval()
    g = torch.Generator().manual_seed(0)
    src = torch.rand(1, 3, config.height, config.width, generator=g)
    bgr = torch.rand(1, 3, config.height, config.width, generator=g)
    if frames:
        src, bgr = ((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous() for x in (src, bgr))
    axes = {**DYNAMIC_AXES, **({n: FRAME_INPUT_AXES for n in INPUTS} if frames else {})}
    names = config.output_names
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.no_grad():
        # Shape checks in forward() become trace-time constants; that is intended.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        path = Path(tmp) / "traced.onnx"
        torch.onnx.export(
            wrapper,
            (src, bgr),
            str(path),
            dynamo=False,
            opset_version=config.opset,
            input_names=list(INPUTS),
            output_names=list(names),
            dynamic_axes={n: axes[n] for n in (*INPUTS, *names)},
            do_constant_folding=True,
        )
        return onnx.load(str(path))


def export_metadata(
    config: ExportConfig,
    weights: WeightsSource,
    selection: list | None = None,
    fp16: dict | None = None,
    int8_calibration: dict | None = None,
) -> ExportMetadata:
    """Everything needed to rebuild the PyTorch side for verification, and what the precision
    passes did."""
    frames = config.io == "uint8"
    contract = {
        "inputs": {
            n: {"dtype": "uint8", "shape": ["batch", "height", "width", 3], "range": [0, 255]}
            if frames
            else {"dtype": config.io_dtype, "shape": ["batch", 3, "height", "width"], "range": [0.0, 1.0]}
            for n in INPUTS
        },
        "outputs": list(config.output_names),
        "height_width_multiple": SIZE_MULTIPLE,
    }
    return ExportMetadata(
        mattex_version=mattex.__version__,
        torch_version=torch.__version__,
        weights=weights.describe(),
        io_contract=contract,
        export_config=asdict(config),
        selection=selection or [],
        tensorrt_plugins=plugin_entries(config),
        fp16=fp16,
        int8_calibration=int8_calibration,
    )


def selection_entries(model: onnx.ModelProto) -> list[dict]:
    """The scores and indices tensors of each exact top-k selection in the graph, by name, so
    that `mattex verify` can read which patches the file selected (none for full refinement,
    thresholding and `topk` plugin)."""
    produced = {out for node in model.graph.node for out in node.output}
    scopes = sorted(name[: -len(SCORES) - 1] for name in produced if name.endswith(f"/{SCORES}"))
    found = [{"scores": f"{scope}/{SCORES}", "indices": f"{scope}/{INDICES}"} for scope in scopes]
    assert all(entry["indices"] in produced for entry in found), "a selection lost its indices"
    return found


def plugin_entries(config: ExportConfig) -> list[dict]:
    """What a TensorRT build and runtime must provide (none unless `topk` plugin)."""
    if config.topk != "plugin":
        return []
    plugin = TOPK_LAST_DIM
    return [
        {
            "name": plugin.name,
            "version": plugin.version,
            "namespace": plugin.namespace,
            "min_tensorrt": plugin.min_tensorrt,
            "min_patches": config.k,
        }
    ]


def write_atomically(model: onnx.ModelProto, output: Path, cache: tuple[Path, bytes] | None = None) -> None:
    """Write to a temporary name beside `output` and rename, with the calibration cache (path,
    bytes) where one is new: a failure leaves neither, nor anything half-written."""
    paths = (output,) if cache is None else (output, cache[0])
    with atomic_paths(*paths) as temporaries:
        onnx.save(model, str(temporaries[0]))
        if cache is not None:
            temporaries[1].write_bytes(cache[1])
