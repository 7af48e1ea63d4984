"""The bad inputs of the library's own calls, as a table (the CLI's: tests/cli/test_bad_inputs.py):
engines without or with a damaged sidecar, a changed plan, another TensorRT or GPU, frames with
NaN, Inf, 0-255 values, wrong ranks, sizes, dtypes or batch, counts below one. Each row: the
typed error, a message naming what is wrong, and no file left behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import plan_with_sidecar
from mattex import errors


@pytest.fixture(scope="module")
def world(tmp_path_factory, small_file):
    """A good export and an output folder: what the rows open and write into."""
    root = tmp_path_factory.mktemp("bad_api")
    shutil.copy(small_file, root / "good.onnx")
    (root / "out").mkdir()
    return root


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _engine_with_sidecar(root: Path, **changes) -> Path:
    fields = dict(
        gpu_name="NVIDIA GeForce RTX 4090",
        io=[{"name": "src", "mode": "input", "dtype": "float32", "shape": [-1, 3, -1, -1]}],
    )
    return plan_with_sidecar(root / "m.engine", b"plan bytes as TensorRT wrote them", **{**fields, **changes})


def _check_env(root, engine_changes=None, **env):
    from mattex.runtime.sidecar import Environment, check_environment, load_sidecar

    here = {"tensorrt_version": "10.13.0", "gpu_name": "NVIDIA GeForce RTX 4090", "compute_capability": (8, 9)}
    here.update(env)
    check_environment(load_sidecar(_engine_with_sidecar(root, **(engine_changes or {}))), Environment(**here))


def _matter(root, name="good.onnx"):
    from mattex.runtime import Matter

    return Matter.open(root / name, backend="onnxruntime")


def _frames(shape=(1, 3, 64, 64), dtype=np.float32, fill=None):
    x = np.random.default_rng(0).random(shape).astype(dtype)
    if fill is not None:
        x.flat[:: max(1, x.size // 7)] = fill
    return x


def _no_sidecar(root):
    from mattex.runtime import Matter

    (root / "lone.engine").write_bytes(b"plan")
    Matter.open(root / "lone.engine")


def _corrupt_sidecar(root):
    from mattex.runtime import Matter

    engine = _engine_with_sidecar(root)
    Path(f"{engine}.json").write_text("{ torn")
    Matter.open(engine)


def _changed_plan(root):
    from mattex.runtime.sidecar import check_plan, load_sidecar

    engine = _engine_with_sidecar(root)
    sidecar = load_sidecar(engine)
    engine.write_bytes(b"another plan")
    check_plan(engine, sidecar)


BAD_API = [
    ("engine-without-sidecar", _no_sidecar, errors.CorruptEngineError, "no sidecar"),
    ("engine-corrupt-sidecar", _corrupt_sidecar, errors.CorruptEngineError, "not a readable mattex sidecar"),
    ("engine-plan-changed", _changed_plan, errors.CorruptEngineError, "changed since it was built"),
    (
        "engine-other-tensorrt",
        lambda r: _check_env(r, tensorrt_version="11.4.0"),
        errors.EngineMismatchError,
        "built with TensorRT 10.13.0, running TensorRT 11.4.0",
    ),
    (
        "engine-other-gpu",
        lambda r: _check_env(r, gpu_name="NVIDIA A100", compute_capability=(8, 0)),
        errors.EngineMismatchError,
        "running on NVIDIA A100",
    ),
    ("matter-nan-frames", lambda r: _matter(r)(_frames(fill=np.nan), _frames()), errors.MattexError, "NaN"),
    ("matter-inf-frames", lambda r: _matter(r)(_frames(), _frames(fill=np.inf)), errors.MattexError, "Inf|finite"),
    ("matter-frames-in-0-255", lambda r: _matter(r)(_frames() * 255, _frames()), errors.MattexError, r"\[0, 1\]"),
    (
        "matter-wrong-rank",
        lambda r: _matter(r)(_frames((3, 64, 64)), _frames((3, 64, 64))),
        errors.InputShapeError,
        "must be",
    ),
    (
        "matter-not-divisible-by-4",
        lambda r: _matter(r)(_frames((1, 3, 62, 64)), _frames((1, 3, 62, 64))),
        errors.InputShapeError,
        "divisible by 4",
    ),
    (
        "matter-src-bgr-differ",
        lambda r: _matter(r)(_frames(), _frames((1, 3, 64, 68))),
        errors.InputShapeError,
        "same shape",
    ),
    (
        "matter-wrong-dtype",
        lambda r: _matter(r)(_frames(dtype=np.float64), _frames(dtype=np.float64)),
        errors.InputShapeError,
        "float32",
    ),
    (
        "matter-zero-batch",
        lambda r: _matter(r)(_frames((0, 3, 64, 64)), _frames((0, 3, 64, 64))),
        errors.InputShapeError,
        "batch",
    ),
    (
        "synthetic-count-zero",
        lambda r: __import__("mattex.calibration.synthetic", fromlist=["x"]).write_synthetic_photomatte(
            r / "out" / "s", 0
        ),
        errors.ConfigError,
        "at least 1",
    ),
]


@pytest.mark.parametrize("row", BAD_API, ids=[r[0] for r in BAD_API])
def test_api_bad_input(row, world, tmp_path):
    _, call, error, message = row
    before = _listing(world)
    with pytest.raises(error, match=message):
        call(world if "engine" not in row[0] else tmp_path)
    assert not (_listing(world) - before)
