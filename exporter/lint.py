"""`mattex check`: a static linter of the rules TensorRT's ONNX parser and builder impose.

Each rule is a small function over the model that yields findings; `RULES` is their registry
(unknown or duplicate names fail loudly). Every rule declares what TensorRT for RTX, the real
parser and builder on every machine, does with the graph the rule exists to catch (`rtx`:
"rejects", "builds" or "never finishes"); tests/exporter/test_lint_oracle.py builds each rule's breaking
graph with it and holds the declaration to the verdict. A rule TensorRT for RTX does not confirm
says what it rests on (`basis`): TensorRT 10/11's parser table, or what mattex's runtime needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from mattex.contract import TENSORRT_MAX_TOPK, TENSORRT_TARGETS
from mattex.errors import ConfigError, ModelFileError
from mattex.plugins import PLUGIN_ATTRIBUTES, PLUGIN_DOMAIN, PLUGINS
from mattex.registry import Registry

from .dataflow import SHAPE_ONLY_OPS

UNSUPPORTED_OPS = {
    "Unique": "no TensorRT implementation",
    "RoiAlign": "needs a plugin; crop patches with Gather instead",
    "Col2Im": "no TensorRT implementation (unfold/fold)",
    "SequenceConstruct": "sequences",
    "SequenceAt": "sequences",
    "SequenceInsert": "sequences",
    "SequenceEmpty": "sequences",
    "SplitToSequence": "sequences",
    "ConcatFromSequence": "sequences",
    "StringNormalizer": "strings",
    "Optional": "optionals",
    "OptionalGetElement": "optionals",
}
CONTROL_FLOW_OPS = {"If", "Loop", "Scan"}
DATA_DEPENDENT_OPS = {"NonZero", "Unique", "Compress", "NonMaxSuppression"}
# Chained Where nodes the builder handles in reasonable time. TensorRT for RTX 1.7 (Myelin) took
# time exponential in the chain's length: a bisection whose steps each select between two
# coupled states built in 1 s at 8 steps, 14 s at 10 and did not finish in 100 s at 12; with one
# state, 0.3 s at 12, 2.5 s at 16, 36 s at 20.
WHERE_CHAIN_LIMIT = 12
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn"}
# Inputs (by position) that set an output's shape: they must not depend on tensor values.
SHAPE_INPUTS = {
    "Reshape": (1,),
    "Expand": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Resize": (2, 3),
    "Upsample": (1,),
    "Pad": (1,),
    "TopK": (1,),
    "OneHot": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
}
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16}


@dataclass
class Finding:
    rule: str
    node: str
    message: str
    severity: str = "error"
    basis: str = ""  # what the rule rests on, where TensorRT for RTX does not reject the graph itself


@dataclass
class CheckReport:
    target: str
    findings: list[Finding] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "passed": self.passed,
            "rules": self.rules,
            "findings": [asdict(f) for f in self.findings],
        }


class ModelView:
    """What rules need to know about a model, computed once: producers, constants, dtypes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except onnx.shape_inference.InferenceError:
            pass  # rules then see fewer dtypes; the checker reports the inconsistency itself
        self.model = model
        self.graph = model.graph
        self.nodes = list(model.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.dtypes: dict[str, int] = {}
        self.shapes: dict[str, list[int | str | None]] = {}
        for info in [*self.graph.input, *self.graph.output, *self.graph.value_info]:
            self.dtypes[info.name] = info.type.tensor_type.elem_type
            if info.type.tensor_type.HasField("shape"):
                self.shapes[info.name] = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in info.type.tensor_type.shape.dim
                ]
        for t in self.graph.initializer:
            self.dtypes[t.name] = t.data_type
            self.shapes[t.name] = list(t.dims)
        self.inputs = [i for i in self.graph.input if i.name not in self.initializers]
        self._value_sources = self._trace_value_sources()

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_int", "value_float", "value_ints", "value_floats"):
                    return np.asarray(onnx.helper.get_attribute_value(a))
        return None

    def _trace_value_sources(self) -> dict[str, frozenset[str]]:
        """For each tensor, the graph inputs whose *values* (not just shapes) flow into it."""
        sources: dict[str, frozenset[str]] = {i.name: frozenset([i.name]) for i in self.inputs}
        for node in self.nodes:  # ONNX requires topological order
            if node.op_type in SHAPE_ONLY_OPS:
                found: frozenset[str] = frozenset()
            else:
                found = frozenset().union(*(sources.get(i, frozenset()) for i in node.input if i))
                if node.op_type in DATA_DEPENDENT_OPS:
                    found = found | {f"<{node.op_type}>"}
            for out in node.output:
                sources[out] = found
        return sources

    def value_sources(self, name: str) -> frozenset[str]:
        return self._value_sources.get(name, frozenset())


def node_attrs(node: onnx.NodeProto) -> dict:
    """A node's attributes as Python values, strings decoded."""
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} '{node.name or node.output[0]}'"


Rule = Callable[[ModelView], Iterator[Finding]]


RTX_VERDICTS = ("rejects", "builds", "never finishes")


@dataclass(frozen=True)
class RuleInfo:
    """Which targets a rule checks, what TensorRT for RTX does with its breaking graph, and,
    where that is not a rejection, what the rule rests on."""

    targets: tuple[str, ...]
    rtx: str
    basis: str = ""
    catches: str = ""  # what the rule catches, for the docs' rule table


class RuleRegistry(Registry[Rule]):
    """Named rules, each for one or more check targets."""

    kind = "lint rule"

    def __init__(self) -> None:
        super().__init__()
        self.info: dict[str, RuleInfo] = {}

    def register(
        self, name: str, rtx: str, catches: str = "", targets: tuple[str, ...] = TENSORRT_TARGETS, basis: str = ""
    ):
        if rtx not in RTX_VERDICTS:
            raise ValueError(f"rule {name}: rtx must be one of {RTX_VERDICTS}")
        if rtx != "rejects" and not basis:
            raise ValueError(f"rule {name}: TensorRT for RTX does not reject its graph; say what it rests on")

        def add(fn: Rule) -> Rule:
            self.add(name, fn)
            self.info[name] = RuleInfo(targets, rtx, basis, catches)
            return fn

        return add

    def for_target(self, target: str) -> dict[str, Rule]:
        known = {t for info in self.info.values() for t in info.targets} | {"onnxruntime"}
        if target not in known:
            raise ConfigError(f"unknown check target {target!r}; choose one of {', '.join(sorted(known))}")
        return {name: self[name] for name, info in self.info.items() if target in info.targets}

    def targets_of(self, name: str) -> tuple[str, ...]:
        self[name]  # unknown names fail like everywhere else
        return self.info[name].targets


RULES = RuleRegistry()


@RULES.register(
    "unsupported-op",
    catches="ops TensorRT has no importer for: Unique, Col2Im, sequences, strings, optionals; RoiAlign (a plugin)",
    rtx="rejects",
)
def unsupported_ops(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type in UNSUPPORTED_OPS:
            yield Finding(
                "unsupported-op",
                node_label(node),
                f"TensorRT cannot build {node.op_type}: {UNSUPPORTED_OPS[node.op_type]}",
            )


@RULES.register(
    "control-flow",
    catches="If, Loop, Scan",
    rtx="builds",
    basis="mattex's own: TensorRT builds If and Loop, but a mattex graph is straight-line "
    "(static shapes, an exact static selection); control flow means a data-dependent "
    "path slipped into the export",
)
def control_flow(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type in CONTROL_FLOW_OPS:
            yield Finding(
                "control-flow",
                node_label(node),
                f"{node.op_type}: a mattex graph has no control flow; unroll it or bake the branch",
            )


@RULES.register(
    "scatter-extent",
    catches="ScatterElements whose indices may be longer than the data along the scatter axis "
    "(ONNX allows it, TensorRT does not)",
    rtx="rejects",
)
def scatter_extent(view: ModelView) -> Iterator[Finding]:
    """ScatterElements whose indices may be longer than its data along `axis`: ONNX allows it
    (only the other axes must fit), TensorRT's builder does not and fails at build time ("The
    extent of dimension i ... of indices"). Flagged where the data's extent along the axis is a
    constant that the indices' extent exceeds or, being unknown until run time, may exceed."""
    for node in view.nodes:
        if node.op_type != "ScatterElements":
            continue
        data, indices = view.shapes.get(node.input[0]), view.shapes.get(node.input[1])
        if not data or not indices or len(data) != len(indices):
            continue
        axis = node_attrs(node).get("axis", 0) % len(data)
        d, i = data[axis], indices[axis]
        if isinstance(d, int) and (not isinstance(i, int) or i > d):
            yield Finding(
                "scatter-extent",
                node_label(node),
                f"indices extent {i if i is not None else '?'} along axis {axis} may exceed the "
                f"data's {d}: TensorRT requires it not to (size the data at least as long "
                "as the indices)",
            )


@RULES.register(
    "where-chain",
    catches="chains of more than 12 `Where` nodes, each feeding the next (an unrolled select bisection)",
    rtx="never finishes",
    basis="TensorRT for RTX 1.7's builder: build time exponential in the chain's length (it builds short chains)",
)
def where_chain(view: ModelView) -> Iterator[Finding]:
    """Chains of more than WHERE_CHAIN_LIMIT Where nodes, each feeding the next (an unrolled
    bisection built from selects): TensorRT's builder takes time exponential in their length.
    Update such loops by arithmetic (t += step * condition) instead."""
    depth: dict[str, int] = {}
    deepest, at = 0, None
    for node in view.nodes:  # ONNX requires topological order
        level = max((depth.get(i, 0) for i in node.input if i), default=0) + (node.op_type == "Where")
        for out in node.output:
            depth[out] = level
        if node.op_type == "Where" and level > deepest:
            deepest, at = level, node
    if deepest > WHERE_CHAIN_LIMIT:
        yield Finding(
            "where-chain",
            node_label(at),
            f"a chain of {deepest} Where nodes, each feeding the next: TensorRT's builder takes "
            f"time exponential in its length (more than {WHERE_CHAIN_LIMIT} did not build in "
            "100 s); update the state by arithmetic instead of selecting",
        )


@RULES.register("topk-limits", catches="TopK with K >= 3840, a non-constant K, or sorted = 0", rtx="rejects")
def topk_limits(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type != "TopK":
            continue
        if node_attrs(node).get("sorted", 1) != 1:
            yield Finding("topk-limits", node_label(node), "TopK must have sorted=1 for TensorRT")
        k = view.constant(node.input[1]) if len(node.input) > 1 else None
        if k is None:
            yield Finding("topk-limits", node_label(node), "TopK K must be a build-time constant")
        elif int(np.asarray(k).reshape(-1)[0]) >= TENSORRT_MAX_TOPK:
            yield Finding(
                "topk-limits",
                node_label(node),
                f"TopK K = {int(np.asarray(k).reshape(-1)[0])} but TensorRT requires "
                f"K < {TENSORRT_MAX_TOPK} (mattex rewrites unordered TopK exactly)",
            )


@RULES.register("scatternd-reduction", catches="ScatterND with a reduction", rtx="rejects")
def scatternd_reduction(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type == "ScatterND":
            reduction = node_attrs(node).get("reduction", "none")
            if reduction != "none":
                yield Finding(
                    "scatternd-reduction", node_label(node), f"ScatterND reduction must be 'none', got {reduction!r}"
                )


@RULES.register("qdq-zero-point", catches="Q/DQ with a non-zero zero point", rtx="rejects")
def qdq_zero_point(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if not node.input[2]:
            continue
        zero_point = view.constant(node.input[2])
        if zero_point is None:
            yield Finding("qdq-zero-point", node_label(node), "zero point must be a constant 0")
        elif np.any(zero_point != 0):
            yield Finding(
                "qdq-zero-point",
                node_label(node),
                f"zero point must be 0 (symmetric int8), got {np.unique(zero_point)[:4]}",
            )


# TensorRT quantizes to and dequantizes from INT8 (and FP8/INT4, which mattex does not emit);
# ONNX Runtime's defaults (uint8 activations, int32 biases) do not build.
@RULES.register("qdq-int8", catches="Q/DQ on uint8 activations or int32 biases", rtx="rejects")
def qdq_int8(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type == "QuantizeLinear" and len(node.input) >= 3 and node.input[2]:
            quantized = view.constant(node.input[2])
        elif node.op_type == "DequantizeLinear":
            quantized = view.constant(node.input[0])
            if quantized is None and len(node.input) >= 3 and node.input[2]:
                quantized = view.constant(node.input[2])
        else:
            continue
        if quantized is not None and quantized.dtype != np.int8:
            yield Finding(
                "qdq-int8",
                node_label(node),
                f"{node.op_type} on {quantized.dtype} values; TensorRT needs int8 "
                "(keep biases float: QuantizeBias=False)",
            )


@RULES.register(
    "resize-mode",
    catches="Resize modes other than nearest/linear, unsupported coordinate modes, antialias",
    rtx="builds",
    targets=("tensorrt",),
    basis="TensorRT 10/11's ONNX parser table (nearest and linear; TensorRT for RTX 1.7 builds cubic)",
)
def resize_mode(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type != "Resize":
            continue
        text = node_attrs(node)
        mode = text.get("mode", "nearest")
        coords = text.get("coordinate_transformation_mode", "half_pixel")
        if mode not in RESIZE_MODES:
            yield Finding("resize-mode", node_label(node), f"Resize mode {mode!r} is not nearest/linear")
        if coords not in RESIZE_COORDINATES:
            yield Finding(
                "resize-mode", node_label(node), f"Resize coordinate_transformation_mode {coords!r} is unsupported"
            )
        if text.get("antialias", 0):
            yield Finding("resize-mode", node_label(node), "Resize antialias is unsupported")


@RULES.register(
    "float64",
    catches="float64 tensors or casts",
    rtx="builds",
    basis="TensorRT's parser casts float64 down to float32: the engine would compute in "
    "another precision than the file says",
)
def float64(view: ModelView) -> Iterator[Finding]:
    for name, dtype in view.dtypes.items():
        if dtype == TensorProto.DOUBLE:
            yield Finding("float64", f"tensor '{name}'", "float64 tensors are not supported")
    for node in view.nodes:
        if node.op_type == "Cast" and node_attrs(node).get("to") == TensorProto.DOUBLE:
            yield Finding("float64", node_label(node), "Cast to float64 is not supported")


@RULES.register(
    "data-dependent-shape",
    catches="NonZero and friends, shapes computed from pixel values",
    rtx="builds",
    basis="mattex's runtimes: TensorRT builds data-dependent shapes, but running them needs "
    "an output allocator, and mattex engines preallocate static outputs",
)
def data_dependent_shape(view: ModelView) -> Iterator[Finding]:
    image_inputs = {i.name for i in view.inputs if _rank(i) > 1}
    for node in view.nodes:
        if node.op_type in DATA_DEPENDENT_OPS:
            yield Finding(
                "data-dependent-shape",
                node_label(node),
                f"{node.op_type} has a data-dependent output shape (no static engine)",
            )
        for pos in SHAPE_INPUTS.get(node.op_type, ()):
            if pos < len(node.input) and node.input[pos]:
                sources = view.value_sources(node.input[pos])
                bad = sorted((sources & image_inputs) | {s for s in sources if s.startswith("<")})
                if bad:
                    yield Finding(
                        "data-dependent-shape",
                        node_label(node),
                        f"input {pos} sets a shape from tensor values of {', '.join(bad)}",
                    )


@RULES.register(
    "shape-tensor-input", catches="integer or parameter inputs that set shapes (bake them in)", rtx="rejects"
)
def shape_tensor_input(view: ModelView) -> Iterator[Finding]:
    """Parameter inputs (integers, or any input of rank <= 1 whose value sets a shape): TensorRT
    treats them as shape tensors. Image-like inputs, float or uint8 frames (--io uint8), are not."""
    for inp in view.inputs:
        dtype = inp.type.tensor_type.elem_type
        if dtype not in FLOAT_TYPES and (dtype != TensorProto.UINT8 or _rank(inp) <= 1):
            yield Finding(
                "shape-tensor-input",
                f"input '{inp.name}'",
                f"{TensorProto.DataType.Name(dtype)} network input of rank {_rank(inp)}: "
                "TensorRT treats it as a shape tensor; bake the parameter into the graph",
            )
            continue
        if _rank(inp) > 1:
            continue
        for node in view.nodes:
            for pos in SHAPE_INPUTS.get(node.op_type, ()):
                if pos < len(node.input) and inp.name in view.value_sources(node.input[pos]):
                    yield Finding(
                        "shape-tensor-input",
                        f"input '{inp.name}'",
                        f"its value sets a shape ({node_label(node)} input {pos}); bake "
                        "the parameter into the graph at export",
                    )


@RULES.register(
    "uint8-cast",
    catches="a uint8 tensor read by anything but a Cast (TensorRT has uint8 only as network I/O)",
    rtx="rejects",
)
def uint8_cast(view: ModelView) -> Iterator[Finding]:
    """TensorRT has uint8 tensors only as network inputs and outputs: a uint8 tensor may only be
    Cast (a Transpose of uint8 frames fails to parse: "has type UInt8 but must have type Float")."""
    for node in view.nodes:
        if node.op_type == "Cast":
            continue
        uint8 = [name for name in node.input if name and view.dtypes.get(name) == TensorProto.UINT8]
        if uint8:
            yield Finding(
                "uint8-cast",
                node_label(node),
                f"{node.op_type} reads uint8 {uint8[0]!r}: TensorRT takes uint8 only as a "
                "network input, so Cast it to float first",
            )


@RULES.register(
    "cumsum-float",
    catches="CumSum on integers, or with a non-constant axis",
    rtx="builds",
    targets=("tensorrt",),
    basis="TensorRT 10/11's ONNX parser table (CumSum FP32/FP16/BF16; TensorRT for RTX 1.7 builds integer CumSum)",
)
def cumsum_float(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type != "CumSum":
            continue
        dtype = view.dtypes.get(node.input[0])
        if dtype is not None and dtype not in FLOAT_TYPES:
            yield Finding(
                "cumsum-float",
                node_label(node),
                f"CumSum on {TensorProto.DataType.Name(dtype)}: TensorRT has float CumSum only",
            )
        if view.constant(node.input[1]) is None:
            yield Finding("cumsum-float", node_label(node), "CumSum axis must be a constant")


@RULES.register("reduce-axes-constant", catches="Reduce* with non-constant axes", rtx="rejects")
def reduce_axes_constant(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type.startswith("Reduce") and len(node.input) > 1 and node.input[1]:
            if view.constant(node.input[1]) is None:
                yield Finding("reduce-axes-constant", node_label(node), f"{node.op_type} axes must be a constant")


STANDARD_DOMAINS = {"", "ai.onnx"}


@RULES.register(
    "tensorrt-plugin",
    catches="ops outside ONNX's domain that are not plugins `mattex.plugins` knows, or calls with wrong "
    "fields, version or namespace (a note says which TensorRT a known plugin needs)",
    rtx="rejects",
    targets=("tensorrt",),
)
def tensorrt_plugin(view: ModelView) -> Iterator[Finding]:
    """Ops outside ONNX's domain must be TensorRT plugins mattex knows, called as TensorRT's
    parser reads them: exactly their fields, as INT attributes, their version and namespace.
    A note says which TensorRT they need."""
    for node in view.nodes:
        if node.domain in STANDARD_DOMAINS:
            continue
        label = node_label(node)
        if node.domain != PLUGIN_DOMAIN or node.op_type not in PLUGINS:
            yield Finding(
                "tensorrt-plugin",
                label,
                f"{node.domain}::{node.op_type} is neither an ONNX op nor a known TensorRT "
                f"plugin ({', '.join(f'{PLUGIN_DOMAIN}::{n}' for n in PLUGINS.names())})",
            )
            continue
        yield from _plugin_call_findings(node, PLUGINS[node.op_type], label)


def _plugin_call_findings(node: onnx.NodeProto, plugin, label: str) -> Iterator[Finding]:
    attrs = node_attrs(node)
    fields = set(attrs) - set(PLUGIN_ATTRIBUTES)
    missing, unknown = sorted(set(plugin.fields) - fields), sorted(fields - set(plugin.fields))
    if missing or unknown:
        yield Finding("tensorrt-plugin", label, f"plugin {plugin.name} fields: missing {missing}, unknown {unknown}")
    not_int = sorted(a.name for a in node.attribute if a.name in plugin.fields and a.type != onnx.AttributeProto.INT)
    if not_int:
        yield Finding(
            "tensorrt-plugin",
            label,
            f"plugin {plugin.name} fields {not_int} must be INT attributes (the parser passes kINT32)",
        )
    for attr, want in (("plugin_version", plugin.version), ("plugin_namespace", plugin.namespace)):
        got = attrs.get(attr, "1" if attr == "plugin_version" else "")
        if got != want:
            yield Finding("tensorrt-plugin", label, f"plugin {plugin.name} {attr} {got!r}; TensorRT registers {want!r}")
    yield Finding(
        "tensorrt-plugin",
        label,
        f"TensorRT plugin {plugin.name} v{plugin.version}: needs TensorRT >= "
        f"{plugin.min_tensorrt}; not runnable on ONNX Runtime",
        severity="info",
    )


@RULES.register(
    "no-plugins",
    catches="any op outside ONNX's domain (TensorRT for RTX ships no plugins)",
    rtx="rejects",
    targets=("tensorrt-rtx",),
)
def no_plugins(view: ModelView) -> Iterator[Finding]:
    """TensorRT for RTX ships no plugin library: every op must be a standard ONNX op."""
    for node in view.nodes:
        if node.domain not in STANDARD_DOMAINS:
            yield Finding(
                "no-plugins",
                node_label(node),
                f"{node.domain}::{node.op_type}: TensorRT for RTX has no plugins"
                + (" (`topk` plugin: export with `topk` onnx)" if node.domain == PLUGIN_DOMAIN else ""),
            )


# Domains whose ops ONNX Runtime's CPU build implements.
ONNXRUNTIME_DOMAINS = STANDARD_DOMAINS | {"ai.onnx.ml", "com.microsoft"}


@RULES.register(
    "onnxruntime-domain",
    catches="ops ONNX Runtime does not implement (a `topk` plugin file)",
    rtx="rejects",
    targets=("onnxruntime",),
)
def onnxruntime_domain(view: ModelView) -> Iterator[Finding]:
    """ONNX Runtime cannot run TensorRT plugins (--topk plugin) or other foreign ops."""
    for node in view.nodes:
        if node.domain not in ONNXRUNTIME_DOMAINS:
            yield Finding(
                "onnxruntime-domain",
                node_label(node),
                f"{node.domain}::{node.op_type} is not an op ONNX Runtime implements"
                + (" (a TensorRT plugin: export with `topk` onnx)" if node.domain == PLUGIN_DOMAIN else ""),
            )


def _rank(info: onnx.ValueInfoProto) -> int:
    return len(info.type.tensor_type.shape.dim)


def check_model(model: onnx.ModelProto, target: str = "tensorrt") -> CheckReport:
    """Run every rule of `target` ('tensorrt'; 'tensorrt-rtx', the same rules without plugins;
    or 'onnxruntime', whose only rule beyond the ONNX checker the exporter runs is that every op
    is one ONNX Runtime implements) and collect the findings."""
    rules = RULES.for_target(target)
    view = ModelView(model)
    report = CheckReport(target=target, rules=list(rules))
    for name, fn in rules.items():
        for finding in fn(view):
            finding.basis = RULES.info[name].basis
            report.findings.append(finding)
    return report


def check_file(
    path: str | Path, target: str = "tensorrt", build: bool = False, backend: str = "auto", profiles: list | None = None
) -> tuple[CheckReport, object | None]:
    """`mattex check`: the ONNX checker and the static rules of `target` on the file at `path`
    (any ONNX graph, not only mattex's), and with `build` TensorRT's own parser and builder
    (`build.check_build`; TensorRT for RTX needs no GPU). Returns (report, build check or None)."""
    from .onnx_file import load_onnx

    if not build and (profiles or backend != "auto"):
        raise ConfigError("`backend` and `profile` go with `build`")
    model = load_onnx(path)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ModelFileError(f"{path} is not a valid ONNX model: {e}") from None
    report = check_model(model, target)
    if not build:
        return report, None
    from .build import check_build

    if backend == "auto" and target == "tensorrt-rtx":
        backend = "tensorrt-rtx"
    return report, check_build(path, backend, profiles or None)


RULES_TABLE_MARKERS = ("<!-- rules:start -->", "<!-- rules:end -->")


def rules_markdown() -> str:
    """The rule table of docs/commands/check.md, generated from `RULES` (a test holds the page to
    it: `python -m mattex.exporter.lint` prints it)."""
    rows = ["| rule | what it catches | TensorRT for RTX on the breaking graph | targets |", "|---|---|---|---|"]
    for name, info in RULES.info.items():
        verdict = info.rtx + (f": {info.basis}" if info.basis else "")
        rows.append(f"| `{name}` | {info.catches} | {verdict} | {', '.join(info.targets)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(rules_markdown())
