"""mattex.plugins: the TensorRT plugins an exported graph may call, declared as data.

By default no plugin is needed: the exporter rewrites the refiner's top-k selection into
standard ONNX ops that TensorRT builds natively (mattex.exporter.topk_select) and ONNX Runtime
runs. `mattex export --topk plugin` instead hands the selection to TensorRT's `TopkLastDim`
plugin; such a file runs on TensorRT only.

An ONNX node calls a plugin by its op_type (the plugin's name) in the `PLUGIN_DOMAIN` domain;
TensorRT's ONNX parser finds it in the plugin registry (filled by
`trt.init_libnvinfer_plugins`), with `plugin_version`/`plugin_namespace` attributes choosing
the creator and the other attributes passed as plugin fields. `PLUGINS` is the registry
`mattex check` validates such nodes against: an unknown plugin, or a node with unknown or
missing fields, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mattex.errors import ConfigError
from mattex.registry import Registry

# A domain of its own: onnx.checker knows no schema for plugin ops, and ops outside the default
# domain are not checked against one.
PLUGIN_DOMAIN = "trt.plugins"
PLUGIN_ATTRIBUTES = ("plugin_version", "plugin_namespace")  # read by the parser, not the plugin


@dataclass(frozen=True)
class TensorRTPlugin:
    """One plugin of TensorRT's plugin library, as an ONNX node calls it."""

    name: str
    version: str
    min_tensorrt: str
    fields: dict[str, type] = field(default_factory=dict)  # plugin field -> ONNX attribute type
    summary: str = ""
    namespace: str = ""
    # The field the input's size along the plugin's axis must reach at run time (k of a top-k).
    min_axis_size_field: str | None = None

    def attributes(self, **values) -> dict:
        """The node attributes calling this plugin with `values` as its fields."""
        unknown = sorted(set(values) - set(self.fields))
        missing = sorted(set(self.fields) - set(values))
        if unknown or missing:
            raise ConfigError(f"plugin {self.name}: unknown fields {unknown}, missing fields {missing}")
        for key, value in values.items():
            if not isinstance(value, self.fields[key]) or isinstance(value, bool):
                raise ConfigError(
                    f"plugin {self.name}: field {key!r} must be {self.fields[key].__name__}, got {value!r}"
                )
        return {**values, "plugin_version": self.version, "plugin_namespace": self.namespace}


class PluginRegistry(Registry[TensorRTPlugin]):
    """Known plugins by name; unknown or duplicate names fail loudly."""

    kind = "TensorRT plugin"

    def register(self, plugin: TensorRTPlugin) -> TensorRTPlugin:
        return self.add(plugin.name, plugin)


PLUGINS = PluginRegistry()

# TensorRT 11.0's "Air Top-K" plugin (IPluginV3, in libnvinfer_plugin; not in 10.x): top-k along
# `axis` for any k (TopK layers stop below 3840). Input of dtype `type_id`; outputs the values,
# sorted, and their int32 indices. Its README requires k <= N along the axis and the code does
# not check it, so `mattex build` refuses profiles with fewer than k patches.
TOPK_LAST_DIM = PLUGINS.register(
    TensorRTPlugin(
        name="TopkLastDim",
        version="1",
        min_tensorrt="11.0",
        fields={"type_id": int, "k": int, "is_largest": int, "axis": int},
        summary="top-k along one axis for any k; outputs sorted values and int32 indices",
        min_axis_size_field="k",
    )
)
# The plugin's `type_id` field: TensorRT DataType values of the input types it accepts.
TENSORRT_TYPE_IDS = {"float32": 0, "float16": 1, "int32": 3, "bfloat16": 7}
