"""Ops outside ONNX's domain: TensorRT plugins, none for TensorRT for RTX, ONNX Runtime's domains."""

from __future__ import annotations

from collections.abc import Iterator

import onnx

from mattex.contract import TENSORRT, TENSORRT_RTX
from mattex.plugins import PLUGIN_ATTRIBUTES, PLUGIN_DOMAIN, PLUGINS

from ..registry import RULES, Finding
from ..view import (
    ModelView,
    node_attrs,
    node_label,
)

STANDARD_DOMAINS = {"", "ai.onnx"}


@RULES.register(
    "tensorrt-plugin",
    catches="ops outside ONNX's domain that are not plugins `mattex.plugins` knows, or calls with wrong "
    "fields, version or namespace (a note says which TensorRT a known plugin needs)",
    rtx="rejects",
    targets=(TENSORRT,),
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
        yield Finding(label, f"plugin {plugin.name} fields: missing {missing}, unknown {unknown}")
    not_int = sorted(a.name for a in node.attribute if a.name in plugin.fields and a.type != onnx.AttributeProto.INT)
    if not_int:
        yield Finding(
            label,
            f"plugin {plugin.name} fields {not_int} must be INT attributes (the parser passes kINT32)",
        )
    for attr, want in (("plugin_version", plugin.version), ("plugin_namespace", plugin.namespace)):
        got = attrs.get(attr, "1" if attr == "plugin_version" else "")
        if got != want:
            yield Finding(label, f"plugin {plugin.name} {attr} {got!r}; TensorRT registers {want!r}")
    yield Finding(
        label,
        f"TensorRT plugin {plugin.name} v{plugin.version}: needs TensorRT >= "
        f"{plugin.min_tensorrt}; not runnable on ONNX Runtime",
        severity="info",
    )


@RULES.register(
    "no-plugins",
    catches="any op outside ONNX's domain (TensorRT for RTX ships no plugins)",
    rtx="rejects",
    targets=(TENSORRT_RTX,),
)
def no_plugins(view: ModelView) -> Iterator[Finding]:
    """TensorRT for RTX ships no plugin library: every op must be a standard ONNX op."""
    for node in view.nodes:
        if node.domain not in STANDARD_DOMAINS:
            yield Finding(
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
                node_label(node),
                f"{node.domain}::{node.op_type} is not an op ONNX Runtime implements"
                + (" (a TensorRT plugin: export with `topk` onnx)" if node.domain == PLUGIN_DOMAIN else ""),
            )
