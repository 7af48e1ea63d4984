"""What a build must know of the file: its metadata, the TensorRT plugins its graph calls,
and whether they can be served."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mattex.contract import (
    INPUTS,
    PATCH,
    TENSORRT,
    TENSORRT_RTX,
)
from mattex.errors import ConfigError, EngineBuildError
from mattex.metadata import ExportMetadata
from mattex.plugins import PLUGIN_DOMAIN, PLUGINS
from mattex.runtime.io_spec import Profile


@dataclass
class OnnxFacts:
    """What a build needs to know of an ONNX file: its metadata, the TensorRT plugins its graph
    calls (read from the nodes, so a file whose metadata was stripped is still checked), and
    whether its inputs are uint8 frames (B, H, W, 3)."""

    metadata: ExportMetadata | None  # None: a graph mattex did not export
    plugins: list[dict]
    frames: bool


def _read_onnx(path: Path) -> OnnxFacts:
    import onnx

    from ..onnx_file import load_onnx, props_of

    model = load_onnx(path, load_external_data=False)
    frames = any(i.name in INPUTS and i.type.tensor_type.elem_type == onnx.TensorProto.UINT8 for i in model.graph.input)
    return OnnxFacts(ExportMetadata.of_file(props_of(model, path), path), plugins_in_graph(model.graph), frames)


def plugins_in_graph(graph) -> list[dict]:
    """One entry per plugin node: name, version, namespace, the TensorRT it needs and the
    input size its axis must reach (`min_axis_size`, 0 when the plugin has no such field)."""
    import onnx

    found = []
    for node in graph.node:
        if node.domain != PLUGIN_DOMAIN or node.op_type not in PLUGINS:
            continue
        plugin = PLUGINS[node.op_type]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        found.append(
            {
                "name": plugin.name,
                "node": node.name,
                "min_tensorrt": plugin.min_tensorrt,
                "min_axis_size": int(attrs.get(plugin.min_axis_size_field, 0)) if plugin.min_axis_size_field else 0,
            }
        )
    return found


def check_plugin_requirements(
    plugins: list[dict],
    profiles: list[Profile],
    version_compatible: bool = False,
    tensorrt_version: str | None = None,
    backend: str = TENSORRT,
) -> None:
    """Refuse a build the graph's TensorRT plugins (`plugins_in_graph`) cannot serve: frames
    with fewer patches than a top-k plugin's k, a TensorRT older than the plugin, a
    version-compatible plan (its lean runtime does not carry libnvinfer_plugin), or TensorRT
    for RTX (it ships no plugin library)."""
    if plugins and backend == TENSORRT_RTX:
        names = ", ".join(sorted({p["name"] for p in plugins}))
        raise ConfigError(
            f"the file calls the TensorRT plugin {names} (exported with `topk` plugin); "
            "TensorRT for RTX ships no such plugin: export with `topk` onnx (the "
            "default) for TensorRT for RTX"
        )
    for plugin in plugins:
        name, needed = plugin["name"], plugin["min_axis_size"]
        for profile in profiles:
            _, h, w = profile.min
            if (h // PATCH) * (w // PATCH) < needed:
                raise ConfigError(
                    f"profile minimum {h}x{w} has {(h // PATCH) * (w // PATCH)} patches but the {name} plugin "
                    f"selects k = {needed}: use a larger minimum, or export with `topk` onnx (any size)"
                )
    if tensorrt_version is not None:
        check_plugin_versions(plugins, tensorrt_version)
    if plugins and version_compatible:
        raise ConfigError(
            "`version_compatible` plans cannot call libnvinfer_plugin's plugins here: "
            "build without it, or export with `topk` onnx"
        )


def check_plugin_versions(plugins: list[dict], tensorrt_version: str) -> None:
    """EngineBuildError for a plugin newer than the TensorRT that would build it."""
    for plugin in plugins:
        if _major(tensorrt_version) < _major(plugin["min_tensorrt"]):
            raise EngineBuildError(
                f"the {plugin['name']} plugin needs TensorRT >= {plugin['min_tensorrt']}, this is "
                f"{tensorrt_version}: export with `topk` onnx, or build with TensorRT {plugin['min_tensorrt']}"
            )


def _major(version: str) -> int:
    return int(version.split(".")[0])
