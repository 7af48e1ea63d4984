"""The builds mattex makes: an engine and its sidecar (`build_engine`, after `plan_build` has
read and checked the file), the real builder's check (`check_build`), and what `mattex export`
builds itself (`automatic_build`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import mattex
from mattex.contract import (
    RTX_DEFAULT_TARGETS_TEXT,
    TENSORRT,
    TENSORRT_RTX,
)
from mattex.errors import BackendUnavailableError, ConfigError, EngineBuildError, MattexError, ModelFileError
from mattex.files import atomic_paths, atomic_write_bytes, check_not_input, check_writable, output_file, sha256_file
from mattex.runtime.backends.tensorrt import LABELS, current_environment, import_tensorrt
from mattex.runtime.io_spec import Profile
from mattex.runtime.sidecar import Sidecar, sidecar_path

from .core import _configure, _rtx_targets, input_shapes, mattex_shapes, parse_and_build
from .options import BuildOptions, _gpu_visible, choose_build_backend, parse_profile
from .plugins import OnnxFacts, _read_onnx, check_plugin_requirements, check_plugin_versions


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
    onnx_path, output = Path(onnx_path), output_file(output)
    for written in (output, sidecar_path(output)):  # refused before a build of minutes, not after
        check_not_input(written, {"ONNX file": onnx_path})
        check_writable(written)
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
