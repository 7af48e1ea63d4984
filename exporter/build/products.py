"""The builds mattex makes: an engine and its sidecar (`build_engine`, after `plan_build` has
read and checked the file), the real builder's check (`check_build`), and what `mattex export`
builds itself (`automatic_build`). What differs by backend is its build's (`backends`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import mattex
from mattex.contract import TENSORRT, TENSORRT_RTX
from mattex.errors import BackendUnavailableError, ConfigError, MattexError, ModelFileError
from mattex.files import atomic_paths, check_not_input, check_writable, output_file, sha256_file
from mattex.runtime.io_spec import Profile
from mattex.runtime.sidecar import Sidecar, sidecar_path

from .backends import EngineBuild, choose_build_backend, engine_build
from .options import BuildOptions, parse_profile
from .plugins import OnnxFacts, _read_onnx


@dataclass
class BuildPlan:
    """What a build decides before the builder parses the file: the backend, its build and the
    toolkit that build loaded, and the file's facts, read once and checked by the build."""

    backend: str
    toolkit: object
    facts: OnnxFacts

    @property
    def build(self) -> EngineBuild:
        return engine_build(self.backend)


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
    return BuildPlan(backend, engine_build(backend).prepare(facts, profiles, options), facts)


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    profiles: list[Profile],
    backend: str = "auto",
    options: BuildOptions | None = None,
    log=lambda message: None,
    plan: BuildPlan | None = None,
) -> Sidecar:
    """Build `output` (a raw plan) and `output`.json with `backend` (auto, or one of
    `build_backends()`: tensorrt, tensorrt-rtx); returns the sidecar. Nothing is written unless
    the build succeeds. `plan`: what `plan_build` decided already (the file read and checked
    once: `mattex export`)."""
    onnx_path, output = Path(onnx_path), output_file(output)
    for written in (output, sidecar_path(output)):  # refused before a build of minutes, not after
        check_not_input(written, {"ONNX file": onnx_path})
        check_writable(written)
    options = options or BuildOptions()
    plan = plan or plan_build(onnx_path, profiles, backend, options)
    built = plan.build.build(plan.toolkit, onnx_path, plan.facts, profiles, options, log)
    sidecar = Sidecar(
        profiles=profiles,
        io=built.io,
        precision=plan.facts.metadata.precision,
        onnx_sha256=sha256_file(onnx_path),
        plan_sha256=hashlib.sha256(built.plan).hexdigest(),
        mattex_version=mattex.__version__,
        export_metadata=plan.facts.metadata.to_props(),
        backend=plan.backend,
        onnx_file=onnx_path.name if onnx_path.resolve().parent == output.resolve().parent else str(onnx_path),
        **built.sidecar_fields,
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


def check_build(
    onnx_path: str | Path, backend: str = "auto", profiles: list[Profile] | None = None, batch: int = 1
) -> BuildCheck:
    """Parse and build `onnx_path` with the real TensorRT (for RTX: on any machine, no GPU),
    for `profiles` (default: the file's trace size, batch 1 to `batch`), and report; nothing is
    written."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelFileError(f"no such ONNX file: {onnx_path}")
    backend = choose_build_backend(backend)
    facts = _read_onnx(onnx_path)
    trace = "{}x{}".format(*facts.metadata.trace_size) if facts.metadata else "hd"
    profiles = profiles or [parse_profile(trace, batch)]
    return engine_build(backend).check(onnx_path, facts, profiles)


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
    elif (problem := engine_build(backend).not_here()) is not None:
        return None, problem
    try:
        return plan_build(Path(onnx_path), profiles, backend), None
    except MattexError as e:
        return None, str(e)
