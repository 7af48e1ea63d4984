"""`mattex build`: an engine (a raw plan) and its JSON sidecar from an exported ONNX, with
TensorRT 10/11 (on the GPU it will run on) or TensorRT for RTX (ahead of time, no GPU needed).

Strongly typed on every backend: precision comes from the ONNX itself (fp16 tensors, Q/DQ
nodes), never from builder flags (TensorRT 11 removed them; TensorRT for RTX never had them).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import mattex
from mattex.contract import (
    INPUTS,
    PATCH,
    RTX_DEFAULT_TARGETS_TEXT,
    TENSORRT,
    TENSORRT_RTX,
    TENSORRT_TARGETS,
    parse_size,
)
from mattex.errors import BackendUnavailableError, ConfigError, MattexError, ModelFileError
from mattex.files import atomic_paths, atomic_write_bytes, sha256_file
from mattex.metadata import ExportMetadata
from mattex.plugins import PLUGIN_DOMAIN, PLUGINS
from mattex.runtime.backends.tensorrt import FLAVORS, LABELS, current_environment, import_tensorrt, tensorrt_installed
from mattex.runtime.io_spec import Profile
from mattex.runtime.sidecar import HARDWARE_COMPAT, Sidecar, sidecar_path

BUILD_BACKENDS = ("auto", *TENSORRT_TARGETS)


class EngineBuildError(MattexError):
    """TensorRT could not parse or build the model."""


def parse_profile(text: str, max_batch: int = 1) -> Profile:
    """`hd`, `4k`, `HxW` (one size) or `HxW-HxW` (a range; opt = the larger) -> a Profile with
    batch 1..max_batch (opt max_batch)."""
    if max_batch < 1:
        raise ConfigError(f"the largest batch (`batch`) must be at least 1, got {max_batch}")
    parts = text.lower().split("-")
    if len(parts) not in (1, 2):
        raise ConfigError(f"`profile` {text!r}: expected one size or a min-max range (hd, 4k, HxW, HxW-HxW)")
    sizes = [parse_size(part, "profile") for part in parts]
    low, high = sizes[0], sizes[-1]
    if low[0] > high[0] or low[1] > high[1]:
        raise ConfigError(f"`profile` {text!r}: the minimum exceeds the maximum")
    return Profile((1, *low), (max_batch, *high), (max_batch, *high))


def parse_compute_capabilities(text: str | None) -> list[str] | None:
    """`8.6,8.9,12.0` (or `current`: the GPU of this machine) -> ['8.6', '8.9', '12.0'];
    None or empty: TensorRT for RTX's default targets."""
    if not text:
        return None
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    for value in values:
        if value != "current" and not re.fullmatch(r"\d+\.\d+", value):
            raise ConfigError(f"`compute_capabilities` {value!r}: expected MAJOR.MINOR (e.g. 8.6) or current")
    if "current" in values and len(values) > 1:
        raise ConfigError(
            "`compute_capabilities` current targets this machine's GPU alone; do not combine it with others"
        )
    if len(set(values)) != len(values):
        raise ConfigError(f"`compute_capabilities` {text!r} names a compute capability twice")
    return values


def choose_build_backend(requested: str = "auto") -> str:
    """`tensorrt` or `tensorrt-rtx`. auto: TensorRT where it is installed and a GPU is visible
    (it builds for that GPU), else TensorRT for RTX where installed (no GPU needed)."""
    if requested not in BUILD_BACKENDS:
        raise ConfigError(f"unknown build `backend` {requested!r}; choose one of {', '.join(BUILD_BACKENDS)}")
    if requested != "auto":
        return requested
    if tensorrt_installed("tensorrt") and _gpu_visible():
        return TENSORRT
    if tensorrt_installed(TENSORRT_RTX):
        return TENSORRT_RTX
    if tensorrt_installed("tensorrt"):
        return TENSORRT  # its build then says that it needs a GPU
    from mattex.runtime.backends import BACKENDS

    raise BackendUnavailableError(
        "no TensorRT here to build with: TensorRT for RTX builds on any machine, GPU or not ("
        f"{BACKENDS['tensorrt-rtx'].install}); TensorRT 10/11 on the GPU machine ("
        f"{BACKENDS['tensorrt'].install})"
    )


def _gpu_visible() -> bool:
    from mattex.runtime.cuda import device_count

    try:
        return device_count() > 0
    except BackendUnavailableError:
        return False


@dataclass
class BuildOptions:
    """How to build, per backend. TensorRT only: timing cache, version-compatible and
    hardware-compatible plans. TensorRT for RTX only: the target compute capabilities."""

    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    version_compatible: bool = False
    hardware_compat: str = "none"
    compute_capabilities: list[str] | None = None

    def validate(self, backend: str) -> None:
        if self.workspace_gib <= 0:
            raise ConfigError(f"`workspace_gib` must be positive, got {self.workspace_gib} GiB")
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise ConfigError(f"`hardware_compat` must be one of {', '.join(HARDWARE_COMPAT)}")
        if backend == TENSORRT_RTX:
            refused = {
                "`timing_cache`": self.timing_cache is not None,
                "`version_compatible`": self.version_compatible,
                "`hardware_compat`": self.hardware_compat != "none",
            }
            given = [name for name, set_ in refused.items() if set_]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} {'is a TensorRT option' if len(given) == 1 else 'are TensorRT options'}"
                    ": TensorRT for RTX builds without a GPU "
                    "and compiles kernels for the GPU when the engine loads (target GPUs: "
                    "`compute_capabilities`; reuse compiled kernels: Matter.open(engine, runtime_cache=PATH))"
                )
        elif self.compute_capabilities is not None:
            raise ConfigError(
                "`compute_capabilities` is TensorRT for RTX's (`backend` tensorrt-rtx); a "
                "TensorRT plan is built for the GPU it is built on (see `hardware_compat`)"
            )


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

    from .onnx_file import load_onnx, props_of

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


def mattex_shapes(profiles: list[Profile], frames: bool = False) -> dict[str, list[tuple]]:
    """The (min, opt, max) shapes of src and bgr for each profile: (B, 3, H, W), or (B, H, W, 3)
    for uint8-frame inputs."""
    shape = _nhwc if frames else _nchw
    return {name: [(shape(p.min), shape(p.opt), shape(p.max)) for p in profiles] for name in INPUTS}


@dataclass
class BuildPlan:
    """What a build decides before TensorRT parses the file: the backend and its TensorRT
    module, and the file's facts, read once and checked against its plugins' requirements."""

    backend: str
    trt: object
    facts: OnnxFacts


def plan_build(
    onnx_path: Path, profiles: list[Profile], backend: str = "auto", options: BuildOptions | None = None
) -> BuildPlan:
    """Choose the backend, read the file and refuse what its plugins cannot be built into;
    import TensorRT last, so a refusal comes before the wait."""
    options = options or BuildOptions()
    if not onnx_path.is_file():
        raise ModelFileError(f"no such ONNX file: {onnx_path}")
    if not profiles:
        raise ConfigError("at least one `profile` is needed")
    backend = choose_build_backend(backend)
    options.validate(backend)
    facts = _read_onnx(onnx_path)
    if facts.metadata is None:
        raise ModelFileError(
            f"{onnx_path} is a valid ONNX model but not a mattex export (no "
            "export_config metadata): export it with `mattex export`"
        )
    check_plugin_requirements(facts.plugins, profiles, options.version_compatible, backend=backend)
    trt = import_tensorrt(backend)
    if backend == TENSORRT:
        check_plugin_versions(facts.plugins, trt.__version__)
    return BuildPlan(backend, trt, facts)


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    profiles: list[Profile],
    backend: str = "auto",
    options: BuildOptions | None = None,
    log=lambda message: None,
    plan: BuildPlan | None = None,
) -> Sidecar:
    """Build `output` (a raw plan) and `output`.json with `backend` (auto, tensorrt,
    tensorrt-rtx); returns the sidecar. Nothing is written unless the build succeeds. `plan`:
    what `plan_build` decided already (the file read and checked once: `mattex export`)."""
    onnx_path, output = Path(onnx_path), Path(output)
    options = options or BuildOptions()
    plan = plan or plan_build(onnx_path, profiles, backend, options)
    backend, trt, meta, plugins = plan.backend, plan.trt, plan.facts.metadata, plan.facts.plugins
    if backend == TENSORRT:
        env = current_environment(trt)
        gpu, cc, targets = env.gpu_name, env.compute_capability, None
        where = f"for {env.gpu_name} (compute capability {cc[0]}.{cc[1]})"
    else:
        gpu, cc = None, None
        targets = _rtx_targets(trt, options.compute_capabilities)
        where = "ahead of time for " + (
            ", ".join(f"{a}.{b}" for a, b in targets) if targets else f"its default GPUs ({RTX_DEFAULT_TARGETS_TEXT})"
        )
    log(
        f"building {onnx_path.name} with {LABELS[backend]} {trt.__version__} {where}"
        + (f" (plugins: {', '.join(sorted({p['name'] for p in plugins}))})" if plugins else "")
    )
    built = parse_and_build(
        trt,
        onnx_path,
        mattex_shapes(profiles, plan.facts.frames),
        lambda config: _configure(trt, config, backend, options, targets),
        keep_timing_cache=options.timing_cache is not None,
    )
    if built.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, built.timing_cache)
    sidecar = Sidecar(
        tensorrt_version=trt.__version__,
        gpu_name=gpu,
        compute_capability=cc,
        profiles=profiles,
        io=built.io,
        precision=meta.precision,
        onnx_sha256=sha256_file(onnx_path),
        plan_sha256=hashlib.sha256(built.plan).hexdigest(),
        mattex_version=mattex.__version__,
        version_compatible=options.version_compatible,
        hardware_compatibility=options.hardware_compat,
        export_metadata=meta.to_props(),
        backend=backend,
        target_compute_capabilities=targets,
        onnx_file=onnx_path.name if onnx_path.resolve().parent == output.resolve().parent else str(onnx_path),
    )
    # The plan and its sidecar appear together or not at all (a full disk, Ctrl-C): a plan
    # without its sidecar cannot be run, a sidecar beside another plan would describe it wrongly.
    with atomic_paths(output, sidecar_path(output)) as (plan_tmp, sidecar_tmp):
        plan_tmp.write_bytes(built.plan)
        sidecar_tmp.write_text(sidecar.to_json())
    log(f"built in {built.seconds:.1f} s")
    return sidecar


@dataclass
class BuildCheck:
    """What TensorRT's own parser and builder said of a file (no engine written)."""

    backend: str
    version: str
    passed: bool
    seconds: float
    message: str
    profiles: list[Profile]

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "version": self.version,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "message": self.message,
            "profiles": [p.to_dict() for p in self.profiles],
        }


def check_build(onnx_path: str | Path, backend: str = "auto", profiles: list[Profile] | None = None) -> BuildCheck:
    """Parse and build `onnx_path` with the real TensorRT (for RTX: on any machine, no GPU),
    for `profiles` (default: the file's trace size, batch 1), and report; nothing is written."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelFileError(f"no such ONNX file: {onnx_path}")
    backend = choose_build_backend(backend)
    facts = _read_onnx(onnx_path)
    trace = "{}x{}".format(*facts.metadata.trace_size) if facts.metadata else "hd"
    profiles = profiles or [parse_profile(trace)]
    check_plugin_requirements(facts.plugins, profiles, backend=backend)
    trt = import_tensorrt(backend)
    if backend == TENSORRT:
        current_environment(trt)  # TensorRT builds for a GPU: it needs one
    try:
        built = parse_and_build(
            trt,
            onnx_path,
            input_shapes(onnx_path, profiles, facts.frames),
            lambda config: _configure(trt, config, backend, BuildOptions(), None),
        )
    except EngineBuildError as e:
        return BuildCheck(backend, trt.__version__, False, 0.0, str(e), profiles)
    return BuildCheck(
        backend,
        trt.__version__,
        True,
        built.seconds,
        f"{LABELS[backend]} {trt.__version__} parsed and built {onnx_path.name} in "
        f"{built.seconds:.1f} s ({len(built.plan) / 2**20:.1f} MiB plan, not kept)",
        profiles,
    )


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


def automatic_build(
    onnx_path: str | Path, profiles: list[Profile], target: str = TENSORRT
) -> tuple[BuildPlan | None, str | None]:
    """What `mattex export` builds itself: (plan, None) to build, the file read and checked once;
    (None, why not) where this file cannot be built here; (None, None) on a machine with no
    TensorRT at all (nothing worth saying). A file for TensorRT for RTX is built with it."""
    try:
        backend = choose_build_backend("auto")
    except BackendUnavailableError:
        return None, None
    if target == TENSORRT_RTX:
        backend = TENSORRT_RTX
    elif backend == TENSORRT and not _gpu_visible():
        return None, "TensorRT is installed but no GPU is visible"
    try:
        return plan_build(Path(onnx_path), profiles, backend), None
    except MattexError as e:
        return None, str(e)


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _nchw(bhw: tuple[int, int, int]) -> tuple[int, int, int, int]:
    b, h, w = bhw
    return (b, 3, h, w)


def _nhwc(bhw: tuple[int, int, int]) -> tuple[int, int, int, int]:
    b, h, w = bhw
    return (b, h, w, 3)
