"""`mattex doctor`: one command that proves a machine end to end, step by step, and writes one
report: the machine and its packages; exports (the small demo file, the HD and 4K presets);
for every backend present, a build where it builds, a load, a run held to PyTorch with
`mattex verify`'s budgets; timings side by side with PyTorch eager through `mattex bench`'s
machinery; TensorRT for RTX's runtime cache. A step that fails is recorded with its error, and
the steps that do not depend on it go on.

What runs is declared data (`Plan`): `quick_plan()` for a short lease or CI, `full_plan()` for
the rest (resnet50, int8 with synthetic calibration data, verification at larger sizes).
"""

from __future__ import annotations

import importlib.metadata
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mattex.contract import SIZES, TENSORRT_RTX
from mattex.exporter.config import ExportConfig
from mattex.files import atomic_paths, output_folder

STATUSES = ("passed", "failed", "skipped")
PACKAGES = (
    "torch",
    "onnxruntime",
    "openvino",
    "tensorrt",
    "tensorrt-rtx-cu13",
    "tensorrt-rtx-cu12",
    "av",
    "nvidia-pytriton",
)


@dataclass
class Row:
    step: str  # machine | export | build | verify | time | cache
    subject: str  # what the step was about: a variant, a file
    backend: str = ""
    status: str = "passed"  # passed | failed | skipped
    detail: str = ""
    error: str | None = None  # the error's type, where a step failed or was skipped by one
    seconds: float = 0.0
    numbers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    label: str
    config: ExportConfig
    time_at: str | None = None  # the named size it is timed at (hd, 4k), if any


@dataclass(frozen=True)
class Plan:
    name: str
    variants: tuple[Variant, ...]
    verify_size: tuple[int, int] | None = (256, 256)  # None: each file's trace size
    verify_samples: int = 1
    rounds: int = 1  # timed rounds per runner (the median counts)
    calibration_samples: int = 2  # synthetic composites, for int8 variants


def _variant(
    label: str,
    preset: str | None,
    precision: str = "fp32",
    io: str = "float",
    backbone="mobilenetv2",
    time_at: str | None = None,
    **overrides,
) -> Variant:
    if preset is None:  # the small file: shipped demo weights, k = 1,000 at 240x320
        config = ExportConfig(
            backbone=backbone, height=240, width=320, sample_pixels=16_000, precision=precision, io=io, **overrides
        )
    else:
        config = ExportConfig.from_preset(preset, backbone=backbone, precision=precision, io=io, **overrides)
    return Variant(label, config, time_at)


def quick_plan() -> Plan:
    """The small file (fp32, uint8 frames) and mobilenetv2's HD and 4K presets in fp32 and fp16,
    verified at 256x256 and built; timed once at their own size: fp32 and fp16 at HD, fp32 at 4K
    (a 4K frame on a CPU costs seconds per runner; the full plan times every file)."""
    return Plan(
        "quick",
        (
            _variant("small fp32", None),
            _variant("small fp32 uint8", None, io="uint8"),
            _variant("mobilenetv2 hd fp32", "hd", time_at="hd"),
            _variant("mobilenetv2 hd fp16", "hd", "fp16", time_at="hd"),
            _variant("mobilenetv2 4k fp32", "4k", time_at="4k"),
            _variant("mobilenetv2 4k fp16", "4k", "fp16"),
        ),
    )


def full_plan() -> Plan:
    """The quick plan, and int8 (synthetic calibration data), resnet50 and uint8 frames at both
    presets, verified at 544x960 and timed over three rounds."""
    timed_4k_fp16 = _variant("mobilenetv2 4k fp16", "4k", "fp16", time_at="4k")
    quick = tuple(timed_4k_fp16 if v.label == timed_4k_fp16.label else v for v in quick_plan().variants)
    extra = (
        _variant("small fp16", None, "fp16"),
        _variant("small int8", None, "int8"),
        _variant("mobilenetv2 hd int8", "hd", "int8", time_at="hd"),
        _variant("mobilenetv2 hd fp32 uint8", "hd", io="uint8", time_at="hd"),
        _variant("resnet50 hd fp32", "hd", backbone="resnet50", time_at="hd"),
        _variant("resnet50 hd fp16", "hd", "fp16", backbone="resnet50", time_at="hd"),
        _variant("resnet50 4k fp32", "4k", backbone="resnet50", time_at="4k"),
        _variant("resnet50 4k fp16", "4k", "fp16", backbone="resnet50", time_at="4k"),
    )
    return Plan("full", quick + extra, verify_size=(544, 960), verify_samples=2, rounds=3, calibration_samples=8)


@dataclass
class DoctorReport:
    plan: str
    machine: dict
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(r.status == "failed" for r in self.rows)

    def to_dict(self) -> dict:
        return {
            "plan": self.plan,
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "machine": self.machine,
            "rows": [asdict(r) for r in self.rows],
        }

    def markdown(self) -> str:
        m = self.machine
        gpu = m.get("gpu") or {}
        lines = [
            f"# mattex doctor ({self.plan}): {'passed' if self.passed else 'FAILED'}",
            "",
            f"{m['cpu']}, {m['cores']} cores, {', '.join(m['instruction_sets']) or 'no AVX'}, "
            f"{m.get('memory_gib')} GiB; GPU: {gpu.get('name', 'none')}"
            + (f" (compute capability {gpu['compute_capability']}, CUDA {gpu.get('cuda')})" if gpu else "")
            + f"; {self.seconds:.0f} s",
            "",
            "| step | subject | backend | status | detail |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows:
            detail = r.detail.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r.step} | {r.subject} | {r.backend or '-'} | {r.status} | {detail} |")
        return "\n".join(lines) + "\n"


def verify_size(plan: Plan, config: ExportConfig) -> tuple[int, int]:
    """The plan's verification size, or the file's trace size where that is smaller: a file's k
    is sized for its trace size (the small file's 1,000 patches at 240x320), and at a larger
    size more of the frame comes from the coarse output, beyond what int8's budget was set on."""
    traced = (config.height, config.width)
    if plan.verify_size is None or traced[0] * traced[1] < plan.verify_size[0] * plan.verify_size[1]:
        return traced
    return plan.verify_size


class Doctor:
    """Runs a plan's steps, recording each as a Row; `run` never raises for a step's failure."""

    def __init__(self, out: Path, plan: Plan, progress: Callable[[str, int, int], None] = lambda s, i, n: None):
        from .machine import describe_machine

        self.out, self.plan, self.progress = Path(out), plan, progress
        self.report = DoctorReport(plan.name, {**describe_machine(), "packages": package_versions()})
        self.files: dict[str, Path] = {}  # variant label -> exported file
        self.engines: dict[str, Path] = {}

    def step(self, step: str, subject: str, backend: str = ""):
        """A context that records one row: passed, or failed with the error (any exception, so
        that one broken backend cannot stop the rest); `row.status = "skipped"` inside it marks
        what could not run here and why."""
        doctor = self

        class Recording:
            def __enter__(self):
                self.row = Row(step, subject, backend)
                self.started = time.perf_counter()
                return self.row

            def __exit__(self, kind, error, tb):
                self.row.seconds = round(time.perf_counter() - self.started, 2)
                if error is not None and not isinstance(error, KeyboardInterrupt):
                    from mattex.errors import BackendUnavailableError

                    skipped = isinstance(error, BackendUnavailableError)
                    self.row.status = "skipped" if skipped else "failed"
                    self.row.error = type(error).__name__
                    self.row.detail = (
                        str(error).strip().splitlines()[0][:300]
                        if str(error).strip()
                        else (traceback.format_exception_only(kind, error)[-1].strip())
                    )
                doctor.report.rows.append(self.row)
                return error is not None and not isinstance(error, KeyboardInterrupt)

        return Recording()

    def run(self) -> DoctorReport:
        started = time.perf_counter()
        with output_folder(self.out):
            (self.out / "files").mkdir(exist_ok=True)
            self._machine()
            self._exports()
            self._verify_files()
            self._engines()
            self._timings()
            self.report.seconds = time.perf_counter() - started
            with atomic_paths(self.out / "doctor.json", self.out / "doctor.md") as (as_json, as_markdown):
                as_json.write_text(json.dumps(self.report.to_dict(), indent=2, default=str))
                as_markdown.write_text(self.report.markdown())
        return self.report

    # -- steps ------------------------------------------------------------------------------------
    def _machine(self) -> None:
        with self.step("machine", "packages") as row:
            row.detail = ", ".join(f"{k} {v}" for k, v in self.report.machine["packages"].items() if v)
            try:
                import onnxruntime

                row.numbers["onnxruntime_providers"] = onnxruntime.get_available_providers()
            except ImportError:
                pass

    def _calibration(self):
        from mattex.calibration.int8 import CalibrationSettings
        from mattex.calibration.synthetic import write_synthetic_photomatte

        folder = self.out / "calibration"
        if not folder.is_dir():
            write_synthetic_photomatte(folder, self.plan.calibration_samples, seed=5, height=320, width=256)
        return CalibrationSettings(folder, None, samples=self.plan.calibration_samples)

    def _exports(self) -> None:
        import warnings

        from mattex.exporter.export import export_onnx

        for index, variant in enumerate(self.plan.variants):
            self.progress(f"exporting {variant.label}", index, len(self.plan.variants))
            with self.step("export", variant.label) as row:
                path = self.out / "files" / (variant.label.replace(" ", "_") + ".onnx")
                calibration = self._calibration() if variant.config.precision == "int8" else None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # random resnet50 weights: said in the detail
                    result = export_onnx(variant.config, path, calibration=calibration)
                self.files[variant.label] = path
                row.detail = (
                    f"{result.metadata.weights.split(' ')[0]} weights, k = {variant.config.k}, traced at "
                    f"{variant.config.height}x{variant.config.width}, {result.size_bytes / 2**20:.1f} MiB"
                )

    def _verify_files(self) -> None:
        from mattex.runtime.backends import BACKENDS

        from .verify import Verifier

        entries = BACKENDS.for_suffix(".onnx")
        jobs = [(label, path, entry) for label, path in self.files.items() for entry in entries]
        for index, (label, path, entry) in enumerate(jobs):
            self.progress(f"verifying {label} on {entry.name}", index, len(jobs))
            with self.step("verify", label, entry.name) as row:
                config = next(v.config for v in self.plan.variants if v.label == label)
                refusal = entry.refuses(config.precision)
                if refusal is not None:
                    # Matter.open refuses it (what a user's run does); `mattex verify --backend
                    # NAME` is where a new release of that backend is measured.
                    row.status, row.detail = "skipped", refusal
                    continue
                opened = time.perf_counter()
                with Verifier(path, backend=entry.name) as verifier:
                    row.numbers["load_s"] = round(time.perf_counter() - opened, 2)
                    size = verify_size(self.plan, config)
                    report = verifier.verify(samples=self.plan.verify_samples, height=size[0], width=size[1])
                row.numbers.update({"pha_mean": report.outputs["pha"].mean_abs, "patches": report.patch_mismatch})
                row.detail = (
                    f"{report.precision} budget at {size[0]}x{size[1]}: pha mean "
                    f"{report.outputs['pha'].mean_abs:.2g}, patches {report.patch_mismatch:.2%}"
                )
                if not report.passed:
                    row.status = "failed"
                    row.detail += "; over budget: " + "; ".join(report.failures)

    def _engines(self) -> None:
        from mattex.exporter.build import build_backends, build_engine, engine_build, parse_profile

        # Every engine backend that can build here (the registry's builds), in the order registered.
        flavors = [name for name in build_backends() if engine_build(name).rank() is not None]
        if not flavors:
            with self.step("build", "engines") as row:
                row.status, row.detail = "skipped", f"no engine build is installed here ({', '.join(build_backends())})"
        jobs = [(f, label, path) for f in flavors for label, path in self.files.items()]
        gpu = self.report.machine.get("gpu")
        for index, (flavor, label, path) in enumerate(jobs):
            self.progress(f"building {label} with {flavor}", index, len(jobs))
            config = next(v.config for v in self.plan.variants if v.label == label)
            engine = path.with_name(f"{path.stem}.{flavor}.engine")
            with self.step("build", label, flavor) as row:
                sidecar = build_engine(path, engine, [parse_profile(f"{config.height}x{config.width}")], flavor)
                self.engines[f"{label} ({flavor})"] = engine
                row.detail = f"{flavor} {sidecar.tensorrt_version}, {engine.stat().st_size / 2**20:.1f} MiB plan"
            if flavor == TENSORRT_RTX and gpu:  # also for this GPU alone: what it says of it is the finding
                from mattex.exporter.build import BuildOptions

                current = path.with_name(f"{path.stem}.{flavor}-current.engine")
                with self.step("build", f"{label} for this GPU", flavor) as row:
                    build_engine(
                        path,
                        current,
                        [parse_profile(f"{config.height}x{config.width}")],
                        flavor,
                        BuildOptions(compute_capabilities=["current"]),
                    )
                    row.detail = f"built for {gpu['name']} (compute capability {gpu['compute_capability']})"
        from .verify import Verifier

        for name, engine in self.engines.items():
            label = name.rsplit(" (", 1)[0]
            config = next(v.config for v in self.plan.variants if v.label == label)
            flavor = name.rsplit(" (", 1)[1].rstrip(")")
            with self.step("verify", label, flavor) as row:
                with Verifier(engine) as verifier:  # BackendUnavailableError (skipped) without a GPU
                    report = verifier.verify(samples=self.plan.verify_samples, height=config.height, width=config.width)
                row.detail = f"{report.precision} budget: pha mean {report.outputs['pha'].mean_abs:.2g}"
                if not report.passed:
                    row.status, row.detail = "failed", "over budget: " + "; ".join(report.failures)
        rtx = [e for n, e in self.engines.items() if n.endswith("(tensorrt-rtx)")]
        if rtx:
            self._runtime_cache(rtx[0])

    def _runtime_cache(self, engine: Path) -> None:
        from mattex.runtime import Matter

        cache = self.out / "rtx.runtime-cache"
        with self.step("cache", engine.name, TENSORRT_RTX) as row:
            times = []
            for _ in range(2):  # the second load reads the kernels the first compiled
                started = time.perf_counter()
                Matter.open(engine, runtime_cache=cache)
                times.append(round(time.perf_counter() - started, 2))
            row.numbers.update({"first_load_s": times[0], "second_load_s": times[1]})
            row.detail = f"load {times[0]} s, then {times[1]} s with the runtime cache"

    def _timings(self) -> None:
        from .bench import bench

        for size_name in ("hd", "4k"):
            files = [
                self.files[v.label] for v in self.plan.variants if v.time_at == size_name and v.label in self.files
            ]
            files += [
                e
                for n, e in self.engines.items()
                if any(n.startswith(v.label) and v.time_at == size_name for v in self.plan.variants)
            ]
            if not files:
                continue
            self.progress(f"timing at {size_name}", 0, 1)
            with self.step("time", size_name) as row:
                report = bench(files, [SIZES[size_name]], [1], reference=True, rounds=self.plan.rounds, warmup=1)
                row.detail = f"{len(report.rows)} runners timed, {len(report.skipped)} could not run here"
            for timed in report.rows if row.status == "passed" else ():
                with self.step(
                    "time", f"{Path(timed.file).name if timed.file else '-'} at {size_name}", timed.runner
                ) as r:
                    r.numbers.update({"ms_per_frame": timed.ms_per_frame, "fps": timed.fps})
                    r.detail = f"{timed.ms_per_frame:.0f} ms/frame, {timed.fps:.2f} frames/s"
            seen = set()
            for skip in report.skipped if row.status == "passed" else ():
                key = (skip["runner"], skip["why"])
                if key in seen:
                    continue
                seen.add(key)
                with self.step("time", size_name, skip["runner"]) as r:
                    r.status, r.detail = "skipped", skip["why"][:300]


def package_versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def doctor(
    out: str | Path, plan: Plan | None = None, progress: Callable[[str, int, int], None] = lambda s, i, n: None
) -> DoctorReport:
    """Run `plan` (default: the full one) and write `out`/doctor.json and doctor.md atomically."""
    return Doctor(Path(out), plan or full_plan(), progress).run()
