"""Test helpers: the golden weight rule, manifests and parsing of golden file names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tomllib
import torch

ROOT = Path(__file__).resolve().parents[1]
# The component folders, each a mattex.* subpackage: read from pyproject.toml, which maps them
# (tests/test_packaging.py checks that every package folder is listed there).
SUBPACKAGES = tuple(
    name.removeprefix("mattex.")
    for name in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    if name != "mattex"
)

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


def manifest(backbone: str) -> dict:
    """The published checkpoint's state_dict manifest: keys (in file order) and shapes."""
    return json.loads((DATA / f"state_dict_{backbone}.json").read_text())


def golden_state_dict(backbone: str, seed: int = 1234) -> dict[str, torch.Tensor]:
    """Rebuild the golden weights: one default_rng(seed), keys in manifest order (golden README)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in manifest(backbone)["keys"].items():
        kind = key.rsplit(".", 1)[-1]
        if kind == "num_batches_tracked":
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        if kind == "running_mean":
            value = rng.normal(0.0, 0.1, shape)
        elif kind == "running_var":
            value = rng.uniform(0.5, 1.5, shape)
        elif kind == "weight" and len(shape) == 1:
            value = rng.uniform(0.5, 1.5, shape)
        elif kind == "bias":
            value = rng.normal(0.0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        state[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return state


# Constructor arguments that golden file names spell after the mode.
_GOLDEN_ARGS = {
    "sample_pixels": ("refine_sample_pixels", int),
    "threshold": ("refine_threshold", float),
    "backbone_scale": ("backbone_scale", float),
}


def golden_config(path: Path) -> tuple[str, dict]:
    """`resnet50_mode-sampling_sample_pixels-16000` -> ("resnet50", {refine_mode: ..., ...})."""
    backbone, rest = path.stem.split("_mode-", 1)
    kwargs: dict = {"refine_mode": rest.split("_", 1)[0]}
    for name, (arg, cast) in _GOLDEN_ARGS.items():
        if f"{name}-" in rest:
            kwargs[arg] = cast(rest.split(f"{name}-", 1)[1].split("_", 1)[0])
    return backbone, kwargs


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("*.npz"))


PRECISION_SIZE = 256  # k = 500 of 4,096 patches: selection matters at this size


def resnet50_config(precision: str):
    """The headline model (`mattex export --backbone resnet50 --fp16`), small: resnet50 with
    seeded random weights (no demo weights exist for it), traced at 256x256 with k = 500, debug
    outputs. conftest.py's resnet50_fp16_file; its fp32 file reuses the same trace."""
    from mattex.exporter.config import ExportConfig

    return ExportConfig(
        backbone="resnet50", height=256, width=256, sample_pixels=8000, precision=precision, debug_outputs=True
    )


def precision_export(data: Path, precision: str, io_dtype: str = "float32", io: str = "float", **calibration) -> Path:
    """mobilenetv2 (demo weights) exported at PRECISION_SIZE with debug outputs; int8 calibrated
    on data/calib (precision_data in conftest.py)."""
    from mattex.calibration.int8 import CalibrationSettings
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    config = ExportConfig(
        backbone="mobilenetv2",
        height=PRECISION_SIZE,
        width=PRECISION_SIZE,
        sample_pixels=8000,
        precision=precision,
        io_dtype=io_dtype,
        io=io,
        debug_outputs=True,
    )
    settings = None
    if precision == "int8":
        settings = CalibrationSettings(data / "calib", data / "calib_bg", samples=4, **calibration)
    path = data / f"mobilenetv2_{precision}_{io_dtype}{'_frames' if io == 'uint8' else ''}.onnx"
    export_onnx(config, path, calibration=settings)
    return path


def metadata_props(model) -> dict[str, str]:
    """The raw `metadata_props` of an ONNX model (a ModelProto or a path): what other tools see."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def plan_with_sidecar(engine: Path, plan: bytes = b"a raw TensorRT plan", **fields) -> Path:
    """`plan` written to `engine` and the sidecar `mattex build` writes beside it (the plan's sha256
    recorded): a TensorRT 10.13 fp32 build for an NVIDIA L4 at 64x64, `fields` changed. Only the
    sidecar is read by what uses it: no TensorRT runs, and a test with it says nothing about
    TensorRT loading the plan."""
    from mattex.files import sha256_file
    from mattex.runtime import Profile
    from mattex.runtime.sidecar import Sidecar

    engine.write_bytes(plan)
    defaults = dict(
        tensorrt_version="10.13.0",
        gpu_name="NVIDIA L4",
        compute_capability=(8, 9),
        profiles=[Profile((1, 64, 64), (1, 64, 64), (1, 64, 64))],
        io=[],
        precision="fp32",
        onnx_sha256="0" * 64,
        plan_sha256=sha256_file(engine),
        mattex_version="0.1.0",
    )
    Sidecar(**{**defaults, **fields}).save(engine)
    return engine


def engine_with_sidecar(tmp_path, backend="tensorrt", min_batch=1, frames=False):
    """An fp16 engine for HD and 4K (two profiles) with the io of a float or a frames file."""
    from mattex.runtime import Profile

    src = [-1, -1, -1, 3] if frames else [-1, 3, -1, -1]
    io = [{"name": n, "mode": "input", "dtype": "uint8" if frames else "float32", "shape": src} for n in ("src", "bgr")]
    io += [
        {"name": "pha", "mode": "output", "dtype": "float32", "shape": [-1, 1, -1, -1]},
        {"name": "fgr", "mode": "output", "dtype": "float32", "shape": [-1, 3, -1, -1]},
    ]
    profiles = [
        Profile((min_batch, 720, 1280), (4, 1080, 1920), (4, 1080, 1920)),
        Profile((1, 2160, 3840), (2, 2160, 3840), (2, 2160, 3840)),
    ]
    return plan_with_sidecar(
        tmp_path / "m.engine", b"a TensorRT plan", profiles=profiles, io=io, precision="fp16", backend=backend
    )


def python_open(path, env: dict, **options) -> str:
    """What Python's Matter.open on OpenVINO says, with `env` set for the call: "ok" or
    "<ErrorClass>: <message>" (what the C++ runtime's refusals are compared with)."""
    from mattex.runtime import Matter

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        Matter.open(path, backend="openvino", **options)
        return "ok"
    except Exception as e:  # the class name and the message are what is compared
        return f"{type(e).__name__}: {e}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
