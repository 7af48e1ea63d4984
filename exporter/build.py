"""`mattex build`: a TensorRT engine (a raw plan) and its JSON sidecar from an exported ONNX.

Strongly typed on TensorRT 10 and 11: precision comes from the ONNX itself (fp16 tensors,
Q/DQ nodes), never from builder flags (TensorRT 11 removed them).
"""

from __future__ import annotations

import re
from pathlib import Path

import mattex
from mattex.errors import ConfigError, MattexError
from mattex.files import atomic_write_bytes, sha256_file
from mattex.plugins import PLUGIN_DOMAIN, PLUGINS
from mattex.runtime.io_spec import INPUTS, Profile
from mattex.runtime.sidecar import HARDWARE_COMPAT, Sidecar
from mattex.runtime.tensorrt_backend import current_environment, import_tensorrt

PROFILE_PRESETS = {"hd": (1080, 1920), "4k": (2160, 3840)}


class EngineBuildError(MattexError):
    """TensorRT could not parse or build the model."""


def parse_profile(text: str, max_batch: int = 1) -> Profile:
    """`hd`, `4k`, `HxW` (one size) or `HxW-HxW` (a range; opt = the larger) -> a Profile with
    batch 1..max_batch (opt max_batch)."""
    if max_batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {max_batch}")
    sizes = []
    for part in text.lower().split("-"):
        if part in PROFILE_PRESETS:
            sizes.append(PROFILE_PRESETS[part])
            continue
        match = re.fullmatch(r"(\d+)x(\d+)", part)
        if not match:
            raise ConfigError(f"profile {text!r}: expected hd, 4k, HxW or HxW-HxW")
        sizes.append((int(match[1]), int(match[2])))
    if len(sizes) not in (1, 2):
        raise ConfigError(f"profile {text!r}: expected one size or a min-max range")
    low, high = sizes[0], sizes[-1]
    for h, w in sizes:
        if h % 4 or w % 4 or h <= 0 or w <= 0:
            raise ConfigError(f"profile {text!r}: height and width must be positive multiples of 4")
    if low[0] > high[0] or low[1] > high[1]:
        raise ConfigError(f"profile {text!r}: the minimum exceeds the maximum")
    return Profile((1, *low), (max_batch, *high), (max_batch, *high))


def _read_onnx(path: Path) -> tuple[dict, list[dict]]:
    """The file's metadata, and the TensorRT plugins its graph calls (from the nodes themselves,
    so a file whose metadata was stripped or rewritten is still checked)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}, plugins_in_graph(model.graph)


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
        found.append({"name": plugin.name, "node": node.name, "min_tensorrt": plugin.min_tensorrt,
                      "min_axis_size": int(attrs.get(plugin.min_axis_size_field, 0))
                      if plugin.min_axis_size_field else 0})
    return found


def build_engine(onnx_path: str | Path, output: str | Path, profiles: list[Profile],
                 workspace_gib: float = 4.0, timing_cache: str | Path | None = None,
                 version_compatible: bool = False, hardware_compat: str = "none",
                 log=lambda message: None) -> Sidecar:
    """Build `output` (a raw plan) and `output`.json; returns the sidecar."""
    onnx_path, output = Path(onnx_path), Path(output)
    if not onnx_path.is_file():
        raise ConfigError(f"no such ONNX file: {onnx_path}")
    if hardware_compat not in HARDWARE_COMPAT:
        raise ConfigError(f"--hardware-compat must be one of {', '.join(HARDWARE_COMPAT)}")
    if not profiles:
        raise ConfigError("at least one --profile is needed")
    meta, plugins = _read_onnx(onnx_path)
    check_plugin_requirements(plugins, profiles, version_compatible)
    trt = import_tensorrt()
    check_plugin_requirements(plugins, profiles, version_compatible, tensorrt_version=trt.__version__)
    env = current_environment(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    # The ONNX parser finds plugin nodes (--topk plugin) in the registry this fills.
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # 10.x opt-in, 11.x implied
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    log(f"parsing {onnx_path.name} with TensorRT {trt.__version__}"
        + (f" (plugins: {', '.join(sorted({p['name'] for p in plugins}))})" if plugins else ""))
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path.name}:\n  " + "\n  ".join(errors))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    for profile in profiles:
        optimization = builder.create_optimization_profile()
        for name in INPUTS:
            optimization.set_shape(name, _nchw(profile.min), _nchw(profile.opt), _nchw(profile.max))
        config.add_optimization_profile(optimization)
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    levels = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}
    level = getattr(trt.HardwareCompatibilityLevel, levels[hardware_compat], None)
    if level is None:
        raise ConfigError(f"TensorRT {trt.__version__} has no hardware compatibility level {hardware_compat}")
    config.hardware_compatibility_level = level

    log(f"building for {env.gpu_name} (compute capability {env.compute_capability[0]}.{env.compute_capability[1]})")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT could not build {onnx_path.name} (see its log above)")
    atomic_write_bytes(output, bytes(plan))
    if cache_path:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))

    def io(tensor, mode):
        import numpy as np

        return {"name": tensor.name, "mode": mode, "dtype": np.dtype(trt.nptype(tensor.dtype)).name,
                "shape": list(tensor.shape)}

    sidecar = Sidecar(
        tensorrt_version=trt.__version__, gpu_name=env.gpu_name,
        compute_capability=env.compute_capability, profiles=profiles,
        io=[io(network.get_input(i), "input") for i in range(network.num_inputs)]
        + [io(network.get_output(i), "output") for i in range(network.num_outputs)],
        precision=meta.get("precision", "fp32"), onnx_sha256=sha256_file(onnx_path),
        plan_sha256=sha256_file(output), mattex_version=mattex.__version__,
        version_compatible=version_compatible, hardware_compatibility=hardware_compat,
        export_metadata=meta)
    sidecar.save(output)
    return sidecar


def check_plugin_requirements(plugins: list[dict], profiles: list[Profile], version_compatible: bool = False,
                              tensorrt_version: str | None = None) -> None:
    """Refuse a build the graph's TensorRT plugins (`plugins_in_graph`) cannot serve: frames
    with fewer patches than a top-k plugin's k, a TensorRT older than the plugin, or a
    version-compatible plan (its lean runtime does not carry libnvinfer_plugin)."""
    for plugin in plugins:
        name, needed = plugin["name"], plugin["min_axis_size"]
        for profile in profiles:
            _, h, w = profile.min
            if (h // 4) * (w // 4) < needed:
                raise ConfigError(
                    f"profile minimum {h}x{w} has {(h // 4) * (w // 4)} patches but the {name} plugin "
                    f"selects k = {needed}: use a larger minimum, or export with --topk onnx (any size)")
        if tensorrt_version is not None and _major(tensorrt_version) < _major(plugin["min_tensorrt"]):
            raise EngineBuildError(
                f"the {name} plugin needs TensorRT >= {plugin['min_tensorrt']}, this is "
                f"{tensorrt_version}: export with --topk onnx, or build with TensorRT {plugin['min_tensorrt']}")
    if plugins and version_compatible:
        raise ConfigError("--version-compatible plans cannot call libnvinfer_plugin's plugins here: "
                          "build without it, or export with --topk onnx")


def automatic_build_problem(onnx_path: str | Path, profiles: list[Profile]) -> str | None:
    """Why `mattex export` should not build the engine itself on this machine; None to build."""
    if not tensorrt_ready():
        return "no TensorRT or GPU here"
    import onnx

    plugins = plugins_in_graph(onnx.load(str(onnx_path), load_external_data=False).graph)
    try:
        check_plugin_requirements(plugins, profiles, tensorrt_version=import_tensorrt().__version__)
    except MattexError as e:
        return str(e)
    return None


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _nchw(bhw: tuple[int, int, int]) -> tuple[int, int, int, int]:
    b, h, w = bhw
    return (b, 3, h, w)


def tensorrt_ready() -> bool:
    """True when TensorRT imports and a CUDA GPU is visible (export then builds the engine)."""
    try:
        current_environment(import_tensorrt())
        return True
    except MattexError:
        return False
