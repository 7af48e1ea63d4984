"""The builds of the two TensorRT engine backends (named by their registry entries): TensorRT
10/11 builds for the GPU it runs on; TensorRT for RTX builds ahead of time on any machine for
target compute capabilities. Both parse with TensorRT's ONNX parser (`core`)."""

from __future__ import annotations

from pathlib import Path

from mattex.contract import RTX_DEFAULT_TARGETS_TEXT, TENSORRT, TENSORRT_RTX
from mattex.errors import ConfigError, EngineBuildError
from mattex.runtime.backends.tensorrt import LABELS, current_environment, import_tensorrt, tensorrt_installed
from mattex.runtime.io_spec import Profile

from .backends import BuiltEngine, EngineBuild
from .core import _configure, _rtx_targets, input_shapes, mattex_shapes, parse_and_build
from .options import BuildOptions, _gpu_visible
from .plugins import OnnxFacts, check_plugin_requirements, check_plugin_versions


class TensorRTBuild(EngineBuild):
    """TensorRT 10/11: a plan for this machine's GPU (or, with `hardware_compat`, its kind)."""

    takes = ("timing_cache", "version_compatible", "hardware_compat")

    def rank(self) -> int | None:
        if not tensorrt_installed(TENSORRT):
            return None
        return 0 if _gpu_visible() else 2  # without a GPU its build then says that it needs one

    def where_it_builds(self) -> str:
        return "TensorRT 10/11 builds on the GPU machine"

    def not_here(self) -> str | None:
        return None if _gpu_visible() else "TensorRT is installed but no GPU is visible"

    def validate(self, options: BuildOptions) -> None:
        if options.compute_capabilities is not None:
            raise ConfigError(
                "`compute_capabilities` is TensorRT for RTX's (`backend` tensorrt-rtx); a "
                "TensorRT plan is built for the GPU it is built on (see `hardware_compat`)"
            )

    def prepare(self, facts: OnnxFacts, profiles: list[Profile], options: BuildOptions):
        check_plugin_requirements(facts.plugins, profiles, options.version_compatible, backend=self.name)
        trt = import_tensorrt(self.name)
        check_plugin_versions(facts.plugins, trt.__version__)
        return trt

    def build(self, trt, onnx_path: Path, facts: OnnxFacts, profiles, options: BuildOptions, log) -> BuiltEngine:
        env = current_environment(trt)
        cc = env.compute_capability
        fields = {"gpu_name": env.gpu_name, "compute_capability": cc}
        where = f"for {env.gpu_name} (compute capability {cc[0]}.{cc[1]})"
        return self._build(trt, onnx_path, facts, profiles, options, log, None, where, fields)

    def _build(self, trt, onnx_path, facts, profiles, options, log, targets, where: str, fields: dict) -> BuiltEngine:
        plugins = facts.plugins
        log(
            f"building {onnx_path.name} with {LABELS[self.name]} {trt.__version__} {where}"
            + (f" (plugins: {', '.join(sorted({p['name'] for p in plugins}))})" if plugins else "")
        )
        built = parse_and_build(
            trt,
            onnx_path,
            mattex_shapes(profiles, facts.frames),
            lambda config: _configure(trt, config, self.name, options, targets),
            keep_timing_cache=options.timing_cache is not None,
        )
        if built.timing_cache is not None:
            from mattex.files import atomic_write_bytes

            atomic_write_bytes(options.timing_cache, built.timing_cache)
        fields = {
            "tensorrt_version": trt.__version__,
            "version_compatible": options.version_compatible,
            "hardware_compatibility": options.hardware_compat,
            "target_compute_capabilities": targets,
            **fields,
        }
        return BuiltEngine(built.plan, built.io, built.seconds, fields)

    def check(self, onnx_path: Path, facts: OnnxFacts, profiles: list[Profile]):
        from .products import BuildCheck

        check_plugin_requirements(facts.plugins, profiles, backend=self.name)
        trt = import_tensorrt(self.name)
        if self.name == TENSORRT:
            current_environment(trt)  # TensorRT builds for a GPU: it needs one
        try:
            built = parse_and_build(
                trt,
                onnx_path,
                input_shapes(onnx_path, profiles, facts.frames),
                lambda config: _configure(trt, config, self.name, BuildOptions(), None),
            )
        except EngineBuildError as e:
            return BuildCheck(self.name, trt.__version__, False, 0.0, str(e), profiles)
        return BuildCheck(
            self.name,
            trt.__version__,
            True,
            built.seconds,
            f"{LABELS[self.name]} {trt.__version__} parsed and built {onnx_path.name} in "
            f"{built.seconds:.1f} s ({len(built.plan) / 2**20:.1f} MiB plan, not kept)",
            profiles,
        )

    def summary(self, sidecar) -> str:
        return f"with {LABELS[self.name]} {sidecar.tensorrt_version} for {sidecar.gpu_name}"


class TensorRTRtxBuild(TensorRTBuild):
    """TensorRT for RTX: ahead of time, no GPU needed; the kernels compile when the engine loads."""

    takes = ("compute_capabilities",)

    def rank(self) -> int | None:
        return 1 if tensorrt_installed(TENSORRT_RTX) else None

    def where_it_builds(self) -> str:
        return "TensorRT for RTX builds on any machine, GPU or not"

    def not_here(self) -> str | None:
        return None

    def validate(self, options: BuildOptions) -> None:
        refused = {
            "`timing_cache`": options.timing_cache is not None,
            "`version_compatible`": options.version_compatible,
            "`hardware_compat`": options.hardware_compat != "none",
        }
        given = [name for name, set_ in refused.items() if set_]
        if given:
            raise ConfigError(
                f"{', '.join(given)} {'is a TensorRT option' if len(given) == 1 else 'are TensorRT options'}"
                ": TensorRT for RTX builds without a GPU "
                "and compiles kernels for the GPU when the engine loads (target GPUs: "
                "`compute_capabilities`; reuse compiled kernels: Matter.open(engine, runtime_cache=PATH))"
            )

    def prepare(self, facts: OnnxFacts, profiles: list[Profile], options: BuildOptions):
        check_plugin_requirements(facts.plugins, profiles, options.version_compatible, backend=self.name)
        return import_tensorrt(self.name)

    def build(self, trt, onnx_path: Path, facts: OnnxFacts, profiles, options: BuildOptions, log) -> BuiltEngine:
        targets = _rtx_targets(trt, options.compute_capabilities)
        where = "ahead of time for " + (
            ", ".join(f"{a}.{b}" for a, b in targets) if targets else f"its default GPUs ({RTX_DEFAULT_TARGETS_TEXT})"
        )
        fields = {"gpu_name": None, "compute_capability": None}
        return self._build(trt, onnx_path, facts, profiles, options, log, targets, where, fields)

    def summary(self, sidecar) -> str:
        from mattex.runtime.sidecar import describe_targets

        return (
            f"with {LABELS[self.name]} {sidecar.tensorrt_version} "
            f"for {describe_targets(sidecar.target_compute_capabilities)}"
        )
