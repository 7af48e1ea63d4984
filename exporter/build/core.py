"""TensorRT itself: parse an ONNX file into a strongly typed network, configure the builder,
build a plan; and the profile shapes of the network's inputs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mattex.contract import (
    INPUTS,
    TENSORRT,
    TENSORRT_RTX,
)
from mattex.errors import ConfigError, EngineBuildError
from mattex.runtime.backends.tensorrt import FLAVORS, LABELS
from mattex.runtime.io_spec import Profile

from .options import BuildOptions


@dataclass
class BuiltPlan:
    """A plan and what the network it came from looks like."""

    plan: bytes
    io: list[dict]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    timing_cache: bytes | None = None


def _recording_logger(trt):
    """A TensorRT logger that keeps the errors (for the exception) and passes warnings on."""

    class Recorder(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity, message) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(message))
            elif severity == trt.ILogger.Severity.WARNING:
                self.warnings.append(str(message))

    return Recorder()


def parse_and_build(
    trt, onnx_path: Path, shapes: dict[str, list[tuple]], configure=lambda config: None, keep_timing_cache: bool = False
) -> BuiltPlan:
    """Parse `onnx_path` with `trt`'s ONNX parser into a strongly typed network and build a
    serialized plan with one optimization profile per entry of each input's `shapes` list
    ((min, opt, max) tuples), after `configure(builder_config)`. Raises EngineBuildError with
    the parser's or builder's own messages."""
    label = LABELS[TENSORRT_RTX if trt.__name__ == FLAVORS[TENSORRT_RTX] else TENSORRT]
    logger = _recording_logger(trt)
    if hasattr(trt, "init_libnvinfer_plugins") and trt.__name__ == FLAVORS[TENSORRT]:
        trt.init_libnvinfer_plugins(logger, "")  # --topk plugin files call libnvinfer_plugin
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # 10.x opt-in, else implied
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    started = time.perf_counter()
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"{label}'s ONNX parser rejected {onnx_path.name}:\n  " + "\n  ".join(errors))
    config = builder.create_builder_config()
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    missing = [t.name for t in inputs if t.name not in shapes]
    if missing:
        raise ConfigError(f"no profile shapes for the network inputs {missing}")
    for index in range(len(next(iter(shapes.values()), []))):
        profile = builder.create_optimization_profile()
        for tensor in inputs:
            profile.set_shape(tensor.name, *shapes[tensor.name][index])
        config.add_optimization_profile(profile)
    configure(config)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(
            f"{label} {trt.__version__} could not build {onnx_path.name}:\n  "
            + "\n  ".join(logger.errors or ["(no error message)"])
        )

    def io(tensor, mode):
        import numpy as np

        return {
            "name": tensor.name,
            "mode": mode,
            "dtype": np.dtype(trt.nptype(tensor.dtype)).name,
            "shape": list(tensor.shape),
        }

    return BuiltPlan(
        bytes(plan),
        [io(t, "input") for t in inputs] + [io(network.get_output(i), "output") for i in range(network.num_outputs)],
        time.perf_counter() - started,
        logger.warnings,
        bytes(config.get_timing_cache().serialize()) if keep_timing_cache else None,
    )


def mattex_shapes(profiles: list[Profile], frames: bool = False) -> dict[str, list[tuple]]:
    """The (min, opt, max) shapes of src and bgr for each profile: (B, 3, H, W), or (B, H, W, 3)
    for uint8-frame inputs."""
    shape = _nhwc if frames else _nchw
    return {name: [(shape(p.min), shape(p.opt), shape(p.max)) for p in profiles] for name in INPUTS}


def input_shapes(onnx_path: Path, profiles: list[Profile], frames: bool = False) -> dict[str, list[tuple]]:
    """Profile shapes for every graph input: src and bgr from `profiles`; any other input (a
    graph not exported by mattex) at its static size, a free batch at 1 and other free sizes
    at 64."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    shapes = mattex_shapes(profiles, frames)
    for inp in model.graph.input:
        if inp.name in shapes or inp.name in initializers:
            continue
        dims = [
            d.dim_value if d.HasField("dim_value") else (1 if i == 0 else 64)
            for i, d in enumerate(inp.type.tensor_type.shape.dim)
        ]
        shapes[inp.name] = [(tuple(dims),) * 3] * len(profiles)
    return {name: value for name, value in shapes.items() if name in {i.name for i in model.graph.input}}


def _rtx_targets(trt, values: list[str] | None) -> list[tuple[int, int]] | None:
    """--compute-capability values as (major, minor), each one TensorRT for RTX can target;
    `current` resolves to this machine's GPU."""
    if values is None:
        return None
    if values == ["current"]:
        from mattex.runtime.cuda import device_properties

        values = ["{}.{}".format(*device_properties(0)[1])]
    known = sorted((int(n[2:-1]), int(n[-1])) for n in dir(trt.ComputeCapability) if n.startswith("SM"))
    targets = [tuple(int(part) for part in value.split(".")) for value in values]
    for major, minor in targets:
        if (major, minor) not in known:
            raise ConfigError(
                f"TensorRT for RTX {trt.__version__} cannot target compute capability {major}.{minor} "
                f"(it targets {', '.join(f'{a}.{b}' for a, b in known)}: RTX GPUs, not data-center "
                "GPUs such as the H100, 9.0)"
            )
    return targets


def _configure(trt, config, backend: str, options: BuildOptions, targets) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    if backend == TENSORRT_RTX:
        if targets is not None:
            config.num_compute_capabilities = len(targets)
            for index, (major, minor) in enumerate(targets):
                config.set_compute_capability(getattr(trt.ComputeCapability, f"SM{major}{minor}"), index)
        return
    if options.timing_cache:
        cache_bytes = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    levels = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}
    level = getattr(trt.HardwareCompatibilityLevel, levels[options.hardware_compat], None)
    if level is None:
        raise ConfigError(f"TensorRT {trt.__version__} has no hardware compatibility level {options.hardware_compat}")
    config.hardware_compatibility_level = level


def _nchw(bhw: tuple[int, int, int]) -> tuple[int, int, int, int]:
    b, h, w = bhw
    return (b, 3, h, w)


def _nhwc(bhw: tuple[int, int, int]) -> tuple[int, int, int, int]:
    b, h, w = bhw
    return (b, h, w, 3)
