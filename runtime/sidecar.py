"""The JSON sidecar beside an engine: what it was built from, for and with.

The engine itself stays a raw TensorRT plan (trtexec --loadEngine and C++
deserializeCudaEngine load it); everything mattex needs to know travels in `<engine>.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mattex.contract import RTX_ANY_FROM_MAJOR, RTX_DEFAULT_TARGETS, RTX_DEFAULT_TARGETS_TEXT, TENSORRT, TENSORRT_RTX
from mattex.errors import CorruptEngineError, EngineMismatchError
from mattex.facts import FACTS, message
from mattex.files import atomic_path, sha256_file

from .backends import BACKENDS  # the engine backends: the registry's list
from .io_spec import Profile

# The format, rules and messages the C++ runtime shares: mattex/shared_facts.json.
_FACTS = FACTS["sidecar"]
FORMAT = _FACTS["format"]
# /1: TensorRT engines only (no backend field); still read.
READABLE_FORMATS = tuple(_FACTS["readable_formats"])
HARDWARE_COMPAT = tuple(_FACTS["hardware_compatibility"])
WANTS = _FACTS["wants"]  # what each field must be, as both runtimes say it


def _message(name: str, /, **values: object) -> str:
    return message("sidecar", name, **values)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_int_list(v, length: int) -> bool:
    return isinstance(v, list) and len(v) == length and all(_is_int(x) for x in v)


def _check_fields(d: dict) -> None:
    """ValueError naming the first field whose type or form is not what `mattex build` writes,
    so that a damaged sidecar is refused when read rather than failing later in a check."""

    def need(ok: bool, key: str, want: str) -> None:
        if not ok:
            raise ValueError(_message("field", key=key, want=want, got=f"{d.get(key)!r:.60}"))

    backend = d.get("backend", TENSORRT)
    need(backend in BACKENDS.engine_backends(), "backend", " or ".join(BACKENDS.engine_backends()))
    for key in _FACTS["string_fields"]:
        need(isinstance(d.get(key), str), key, WANTS["string"])
    need(d.get("gpu_name") is None or isinstance(d["gpu_name"], str), "gpu_name", WANTS["string_or_null"])
    BACKENDS[backend].check_sidecar(d, need)  # what its backend alone requires (TensorRT: the GPU built for)
    cc = d.get("compute_capability")
    need(cc is None or _is_int_list(cc, 2), "compute_capability", WANTS["cc_or_null"])
    profiles = d.get("profiles")
    need(
        isinstance(profiles, list)
        and len(profiles) > 0
        and all(
            isinstance(p, dict) and all(_is_int_list(p.get(k), 3) for k in ("min", "opt", "max")) for p in profiles
        ),
        "profiles",
        WANTS["profiles"],
    )
    for i, profile in enumerate(profiles):
        problem = _profile_problem(profile)
        need(problem is None, "profiles", _message("profile_sensible", problem=problem, index=i))
    need(isinstance(d.get("io"), list), "io", WANTS["list"])
    need(isinstance(d.get("version_compatible", False), bool), "version_compatible", WANTS["bool"])
    need(
        d.get("hardware_compatibility", "none") in HARDWARE_COMPAT,
        "hardware_compatibility",
        " or ".join(HARDWARE_COMPAT),
    )
    need(isinstance(d.get("export_metadata", {}), dict), "export_metadata", WANTS["object"])
    need(d.get("onnx_file") is None or isinstance(d["onnx_file"], str), "onnx_file", WANTS["string_or_null"])
    targets = d.get("target_compute_capabilities")
    need(
        targets is None or (isinstance(targets, list) and all(_is_int_list(t, 2) for t in targets)),
        "target_compute_capabilities",
        WANTS["targets"],
    )


# No batch, height or width of a profile exceeds this: TensorRT's own limits are far higher, but
# a value above it is a damaged or hand-edited sidecar, never a plan mattex built.
MAX_PROFILE_VALUE = _FACTS["max_profile_value"]


def _profile_problem(profile: dict) -> str | None:
    """What makes a profile impossible (typed already): a value not positive or above the bound,
    or min <= opt <= max broken in batch, height or width; None for a sensible one."""
    values = [v for key in ("min", "opt", "max") for v in profile[key]]
    if not all(1 <= v <= MAX_PROFILE_VALUE for v in values):
        return _message("profile_out_of_range", max=MAX_PROFILE_VALUE)
    for axis, name in enumerate(("batch", "height", "width")):
        low, opt, high = (profile[key][axis] for key in ("min", "opt", "max"))
        if not low <= opt <= high:
            return _message("profile_order", axis=name, low=low, opt=opt, high=high)
    return None


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


@dataclass(frozen=True)
class Environment:
    """The TensorRT version and GPU an engine meets at run time."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]


@dataclass
class Sidecar:
    tensorrt_version: str  # of the library that built it: TensorRT, or TensorRT for RTX
    gpu_name: str | None  # the GPU it was built on; None when built ahead of time without one
    compute_capability: tuple[int, int] | None
    profiles: list[Profile]
    io: list[dict]
    precision: str
    onnx_sha256: str
    plan_sha256: str
    mattex_version: str
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    export_metadata: dict = field(default_factory=dict)
    backend: str = TENSORRT
    # TensorRT for RTX: the compute capabilities the plan targets; None for its default set.
    target_compute_capabilities: list[tuple[int, int]] | None = None
    # The ONNX file it was built from: its name when beside the engine, else its path as given.
    onnx_file: str | None = None
    format: str = FORMAT

    def to_dict(self) -> dict:
        d = asdict(self)
        d["compute_capability"] = list(self.compute_capability) if self.compute_capability else None
        d["profiles"] = [p.to_dict() for p in self.profiles]
        if self.target_compute_capabilities is not None:
            d["target_compute_capabilities"] = [list(cc) for cc in self.target_compute_capabilities]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Sidecar:
        _check_fields(d)
        d = dict(d)
        d["format"] = FORMAT  # read /1 and /2 alike; saved again as /2
        d["compute_capability"] = tuple(d["compute_capability"]) if d.get("compute_capability") else None
        d["profiles"] = [Profile.from_dict(p) for p in d["profiles"]]
        if d.get("target_compute_capabilities") is not None:
            d["target_compute_capabilities"] = [tuple(cc) for cc in d["target_compute_capabilities"]]
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, engine: str | Path) -> Path:
        path = sidecar_path(engine)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return path


def load_sidecar(engine: str | Path) -> Sidecar:
    path = sidecar_path(engine)
    if not path.is_file():
        raise CorruptEngineError(_message("missing", sidecar=path.name, engine=Path(engine).name))
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CorruptEngineError(_message("foreign", path=path, found=repr(found)))
        return Sidecar.from_dict(data)
    except (KeyError, TypeError, ValueError, RecursionError, OSError) as e:  # JSONDecodeError, bad UTF-8: ValueError
        raise CorruptEngineError(_message("unreadable", path=path, why=e)) from None


def check_plan(engine: str | Path, sidecar: Sidecar) -> None:
    """The plan must be the very file the sidecar describes."""
    digest = sha256_file(engine)
    if digest != sidecar.plan_sha256:
        raise CorruptEngineError(
            _message("plan_changed", engine=Path(engine).name, digest=digest[:12], recorded=sidecar.plan_sha256[:12])
        )


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


def check_environment(sidecar: Sidecar, env: Environment) -> None:
    """Raise EngineMismatchError unless `env` can run the engine the sidecar describes."""
    if sidecar.backend == TENSORRT_RTX:
        _check_rtx_environment(sidecar, env)
        return
    built, running = _version_tuple(sidecar.tensorrt_version), _version_tuple(env.tensorrt_version)
    if sidecar.version_compatible:
        ok = running[:1] == built[:1] and running >= built
        rule = _message("version_rule_compatible")
    else:
        ok = running[:3] == built[:3]
        rule = _message("version_rule_exact")
    if not ok:
        raise EngineMismatchError(
            _message("version", built=sidecar.tensorrt_version, running=env.tensorrt_version, rule=rule)
        )
    built_cc, cc = tuple(sidecar.compute_capability), tuple(env.compute_capability)
    compat = sidecar.hardware_compatibility
    if compat == "ampere+":
        ok = cc >= (8, 0)
        rule = _message("gpu_rule_ampere")
    else:
        ok = cc == built_cc
        rule = _message("gpu_rule_same_cc")
    if not ok:
        raise EngineMismatchError(
            _message(
                "gpu",
                built_gpu=sidecar.gpu_name,
                built_cc=f"{built_cc[0]}.{built_cc[1]}",
                gpu=env.gpu_name,
                cc=f"{cc[0]}.{cc[1]}",
                rule=rule,
            )
        )
    if compat == "none" and sidecar.gpu_name != env.gpu_name:
        # Same architecture, other model: TensorRT's tactics were timed on the other GPU.
        raise EngineMismatchError(_message("gpu_model", built_gpu=sidecar.gpu_name, gpu=env.gpu_name))


def rtx_runs_on(targets: list[tuple[int, int]] | None, cc: tuple[int, int]) -> bool:
    """Whether a TensorRT for RTX plan targeting `targets` (None: its default) runs on `cc`."""
    if targets is None:
        return cc in RTX_DEFAULT_TARGETS or cc >= (RTX_ANY_FROM_MAJOR, 0)
    return cc in targets


def describe_targets(targets: list[tuple[int, int]] | None) -> str:
    if targets is None:
        return _message("rtx_default_targets", targets=RTX_DEFAULT_TARGETS_TEXT)
    return ", ".join(f"{major}.{minor}" for major, minor in targets)


def _check_rtx_environment(sidecar: Sidecar, env: Environment) -> None:
    # "TensorRT-RTX engines are not compatible between different releases" (NVIDIA's Engine
    # Compatibility page).
    if _version_tuple(sidecar.tensorrt_version)[:3] != _version_tuple(env.tensorrt_version)[:3]:
        raise EngineMismatchError(_message("rtx_version", built=sidecar.tensorrt_version, running=env.tensorrt_version))
    cc = tuple(env.compute_capability)
    if not rtx_runs_on(sidecar.target_compute_capabilities, cc):
        documented = rtx_runs_on(None, cc) or cc == (7, 5)
        raise EngineMismatchError(
            _message(
                "rtx_target",
                gpu=env.gpu_name,
                cc=f"{cc[0]}.{cc[1]}",
                targets=describe_targets(sidecar.target_compute_capabilities),
            )
            + ("" if documented else _message("rtx_undocumented"))
        )
