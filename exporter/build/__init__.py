"""`mattex build`: an engine (a raw plan) and its JSON sidecar from an exported ONNX, with
TensorRT 10/11 (on the GPU it will run on) or TensorRT for RTX (ahead of time, no GPU needed).

Strongly typed on every backend: precision comes from the ONNX itself (fp16 tensors, Q/DQ
nodes), never from builder flags (TensorRT 11 removed them; TensorRT for RTX never had them).

The package by idea: `options` (what is asked for), `plugins` (what the file needs), `backends`
(the build each engine backend's registry entry names, and the automatic choice among them),
`tensorrt` (TensorRT's and TensorRT for RTX's builds), `core` (TensorRT's parser and builder),
`products` (engines with sidecars, checks, export's own build).
"""

from mattex.errors import EngineBuildError  # its old home, kept importable

from .backends import BuiltEngine, EngineBuild, build_backends, choose_build_backend, engine_build
from .core import BuiltPlan, input_shapes, mattex_shapes, parse_and_build
from .options import BuildOptions, parse_compute_capabilities, parse_profile
from .plugins import OnnxFacts, check_plugin_requirements, check_plugin_versions, plugins_in_graph
from .products import BuildCheck, BuildPlan, automatic_build, build_engine, check_build, plan_build

__all__ = [
    "BuildCheck",
    "BuildOptions",
    "BuildPlan",
    "BuiltEngine",
    "BuiltPlan",
    "EngineBuild",
    "EngineBuildError",
    "OnnxFacts",
    "automatic_build",
    "build_backends",
    "build_engine",
    "check_build",
    "check_plugin_requirements",
    "check_plugin_versions",
    "choose_build_backend",
    "engine_build",
    "input_shapes",
    "mattex_shapes",
    "parse_and_build",
    "parse_compute_capabilities",
    "parse_profile",
    "plan_build",
    "plugins_in_graph",
]
