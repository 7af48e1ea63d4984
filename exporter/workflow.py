"""`mattex export` as one library call: export the ONNX graph, then build an engine for its trace
size wherever one can be built here, and say what to do next."""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from mattex.calibration.int8 import CalibrationSettings
from mattex.contract import TENSORRT_TARGETS
from mattex.errors import ConfigError, ModelFileError, OutputPathError
from mattex.files import check_distinct_outputs, check_not_input, output_file

from .build import automatic_build, build_engine, parse_profile
from .config import ExportConfig
from .export import ExportResult, export_onnx
from .onnx_file import read_export_metadata


@dataclass
class ExportOutcome:
    result: ExportResult
    config: ExportConfig
    engine: Path | None = None
    engine_backend: str | None = None
    note: str | None = None  # why no engine was built, where that is worth saying
    next_steps: list[str] = field(default_factory=list)  # the commands that come next
    warnings: list[str] = field(default_factory=list)  # e.g. random weights

    def to_dict(self) -> dict:
        r = self.result
        return {
            "file": str(r.path),
            "engine": str(self.engine) if self.engine else None,
            "engine_backend": self.engine_backend,
            "size_bytes": r.size_bytes,
            "nodes": r.nodes,
            "op_histogram": r.op_histogram,
            "passes": r.passes,
            "check": r.check.to_dict(),
            "metadata": r.metadata.to_props(),
            "left_in_float": self.left_in_float,
            "note": self.note,
            "warnings": self.warnings,
            "next": self.next_steps,
        }

    @property
    def left_in_float(self) -> dict[str, int]:
        """What the precision pass left in float32, by reason (empty for fp32 files)."""
        meta = self.result.metadata
        if meta.fp16:
            return meta.fp16.get("left_fp32", {})
        if meta.int8_calibration:
            return meta.int8_calibration.get("left_float", {})
        return {}


def export_and_build(
    config: ExportConfig,
    output: str | Path | None = None,
    checkpoint: str | Path | None = None,
    calibration: CalibrationSettings | None = None,
    calibration_cache: Path | None = None,
    build: bool = True,
    progress: Callable[[str], None] = lambda step: None,
    calibration_progress: Callable[[int, int], None] = lambda i, n: None,
    build_log: Callable[[str], None] = lambda message: None,
    replace: bool = False,
) -> ExportOutcome:
    """Export `config` to `output` (default: `config.default_filename()`, in the working folder);
    with `build`, also build `output`.engine for the trace size where this machine can: with
    TensorRT where it and a GPU are here, else with TensorRT for RTX (no GPU needed). A file that
    cannot be built here is written all the same, with a note. A file of another model at
    `output` is replaced only with `replace` (check_replaceable)."""
    config.validate()
    check_calibration_applies(config, calibration, calibration_cache)
    output = output_file(output) if output is not None else Path(config.default_filename())
    # What export reads is never what it writes, `replace` or not (the checkpoint became the
    # ONNX file, and the next step printed then failed).
    inputs = {"checkpoint": checkpoint}
    for written in (output, output.with_suffix(".engine"), calibration_cache):
        if written is not None:
            check_not_input(output_file(written), inputs)
    check_distinct_outputs({"ONNX file": output, "calibration cache": calibration_cache})
    check_distinct_outputs({"engine": output.with_suffix(".engine"), "calibration cache": calibration_cache})
    check_replaceable(output, config, replace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = export_onnx(
            config,
            output,
            checkpoint,
            progress=progress,
            calibration=calibration,
            calibration_cache=calibration_cache,
            calibration_progress=calibration_progress,
        )
    outcome = ExportOutcome(result, config, warnings=[str(w.message) for w in caught])
    trace = f"{config.height}x{config.width}"
    profiles = [parse_profile(trace)]
    if build and config.target in TENSORRT_TARGETS:
        plan, problem = automatic_build(result.path, profiles, config.target)
        if plan is not None:
            progress(f"building the engine ({plan.backend})")
            outcome.engine, outcome.engine_backend = result.path.with_suffix(".engine"), plan.backend
            build_engine(result.path, outcome.engine, profiles, log=build_log, plan=plan)
        elif problem is not None:
            outcome.note = f"engine not built here: {problem}"
    outcome.next_steps = _next_steps(outcome, checkpoint, trace)
    return outcome


def check_calibration_applies(
    config: ExportConfig, calibration: CalibrationSettings | None, calibration_cache: Path | None
) -> None:
    """ConfigError naming the calibration settings given for an export that is not int8: they
    would be ignored, and the file the user gets is not the one they asked for."""
    if config.precision == "int8":
        return
    given = []
    if calibration is not None:
        defaults = CalibrationSettings(None)
        changed = [f.name for f in fields(calibration) if getattr(calibration, f.name) != getattr(defaults, f.name)]
        given += [f"`{name}`" for name in changed] or ["`calibration`"]
    if calibration_cache is not None:
        given.append("`calibration_cache`")
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to `int8` exports (this one is {config.precision})")


def check_replaceable(output: Path, config: ExportConfig, replace: bool = False) -> None:
    """OutputPathError when `output` holds another model than `config` would write (another
    export configuration, or a file mattex did not export) and `replace` is not given. Exporting
    the same configuration again (other weights, a newer mattex) replaces the file: that is
    how a model is updated."""
    if replace or not output.is_file():
        return
    try:
        existing = ExportConfig.from_metadata(read_export_metadata(output))
    except ModelFileError as e:
        held = f"a file mattex cannot read as one of its exports ({e})"
    else:
        if existing == config:
            return
        differences = [
            f"{f.name} {getattr(existing, f.name)} (this export: {getattr(config, f.name)})"
            for f in fields(config)
            if getattr(existing, f.name) != getattr(config, f.name)
        ]
        held = f"another model: {', '.join(differences)}"
    raise OutputPathError(f"{output} holds {held}; pass `replace` to replace it, or write elsewhere with `output`")


def _next_steps(outcome: ExportOutcome, checkpoint, trace: str) -> list[str]:
    """The commands that can run next on the file just written, quoted for a shell (a path with
    spaces pastes as one argument). A build is offered only for a file checked against a
    TensorRT target's rules: an onnxruntime file (thresholding's NonZero above all) may not build."""
    path, config = shlex.quote(str(outcome.result.path)), outcome.config
    steps = [f"mattex check {path} --target {config.target}"]
    if config.topk != "plugin":  # ONNX Runtime cannot run a TensorRT plugin
        steps.append(f"mattex verify {path}" + (f" --checkpoint {shlex.quote(str(checkpoint))}" if checkpoint else ""))
    if outcome.engine is None and config.target in TENSORRT_TARGETS:
        where = (
            "on the machine with TensorRT 11 and the GPU"
            if config.topk == "plugin"
            else "with TensorRT for RTX (any machine) or TensorRT (on the GPU machine)"
        )
        steps.append(f"mattex build {path} --profile {trace}  # {where}")
    return steps
