"""Property-based fuzzing of every file reader: random, truncated and bit-flipped bytes give
only mattex's typed errors (MattexError), never another exception, and within a time bound."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mattex.errors import MattexError

FUZZ = settings(max_examples=40, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """One valid file of each kind, for truncation and mutation."""
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx
    from mattex.exporter.weights import WeightsSource, build_model

    root = tmp_path_factory.mktemp("fuzz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(ExportConfig(height=64, width=64, sample_pixels=640), root / "m.onnx")
    buffer = io.BytesIO()
    state = build_model(WeightsSource("random", seed=0), backbone="mobilenetv2").state_dict()
    torch.save({k: v for k, v in list(state.items())[:20]}, buffer)
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(png, "PNG")
    sidecar = {"format": "mattex-engine", "format_version": 2, "backend": "tensorrt", "tensorrt_version": "10.13.0",
               "profiles": [{"min": [1, 64, 64], "opt": [1, 64, 64], "max": [1, 64, 64]}], "io": [],
               "precision": "fp32", "onnx_sha256": "0" * 64, "plan_sha256": "0" * 64, "mattex_version": "0.1.0"}
    return {"onnx": (root / "m.onnx").read_bytes(), "pth": buffer.getvalue(), "png": png.getvalue(),
            "sidecar": json.dumps(sidecar).encode(), "mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"}


def damaged(kind: str):
    """Random bytes, or the valid seed truncated, or with bytes overwritten."""
    return st.one_of(
        st.binary(max_size=2048).map(lambda b: ("random", b, None)),
        st.floats(0, 1, exclude_max=True).map(lambda f: ("truncate", f, None)),
        st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=16))
          .map(lambda t: ("overwrite", t[0], t[1])),
    )


def materialise(seed: bytes, damage) -> bytes:
    how, a, b = damage
    if how == "random":
        return a
    at = int(a * len(seed))
    if how == "truncate":
        return seed[:at]
    return seed[:at] + b + seed[at + len(b):]


def only_typed_errors(call) -> None:
    try:
        call()
    except MattexError:
        pass


@FUZZ
@given(damage=damaged("onnx"))
def test_onnx_metadata_reader(seeds, tmp_path, damage):
    from mattex.exporter.verify import file_metadata

    path = tmp_path / "f.onnx"
    path.write_bytes(materialise(seeds["onnx"], damage))
    only_typed_errors(lambda: file_metadata(path))


@FUZZ
@given(damage=damaged("sidecar"))
def test_sidecar_reader(seeds, tmp_path, damage):
    from mattex.runtime.sidecar import load_sidecar, sidecar_path

    engine = tmp_path / "f.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_bytes(materialise(seeds["sidecar"], damage))
    only_typed_errors(lambda: load_sidecar(engine))


@FUZZ
@given(damage=damaged("pth"))
def test_checkpoint_reader(seeds, tmp_path, damage):
    from mattex.model.checkpoint import read_state_dict

    path = tmp_path / "f.pth"
    path.write_bytes(materialise(seeds["pth"], damage))
    only_typed_errors(lambda: read_state_dict(path))


@FUZZ
@given(damage=damaged("png"))
def test_image_and_photomatte_readers(seeds, tmp_path, damage):
    from mattex.calibration.images import open_image
    from mattex.calibration.photomatte import PhotoMatteFolder

    folder = tmp_path / "pm"
    folder.mkdir(exist_ok=True)
    path = folder / "a.png"
    path.write_bytes(materialise(seeds["png"], damage))
    only_typed_errors(lambda: open_image(path))
    only_typed_errors(lambda: [item for item in PhotoMatteFolder(folder, (16, 16))])


@FUZZ
@given(damage=damaged("mp4"))
def test_video_reader(seeds, tmp_path, damage):
    from mattex.runtime.media import open_source

    path = tmp_path / "f.mp4"
    path.write_bytes(materialise(seeds["mp4"], damage))
    only_typed_errors(lambda: list(open_source(path).frames()))
