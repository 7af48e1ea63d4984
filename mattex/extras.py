"""What each optional part of mattex needs: one home for the extras `pyproject.toml` declares,
and one check that names the extra to install instead of failing with an ImportError.

`pip install mattex` is the runtime (ONNX Runtime, PyAV, numpy, Pillow, Typer): `Matter`,
`mattex run`, `mattex bench FILE`. The rest comes as extras beside it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from mattex.errors import ExtraNotInstalledError


@dataclass(frozen=True)
class Extra:
    modules: tuple[str, ...]  # importable names that must all be present
    brings: str  # what it installs, for the message


EXTRAS = {
    "export": Extra(
        ("torch", "onnx", "onnx_graphsurgeon", "polygraphy", "scipy"),
        "torch, onnx, onnx-graphsurgeon, polygraphy, scipy",
    ),
    "check": Extra(("onnx",), "onnx"),
    "openvino": Extra(("openvino",), "OpenVINO"),
    "rtx": Extra(("tensorrt_rtx", "polygraphy", "onnx"), "TensorRT for RTX, polygraphy, onnx"),
    "tensorrt": Extra(("tensorrt", "polygraphy", "onnx"), "TensorRT, polygraphy, onnx"),
    "serve": Extra(("pytriton", "tritonclient"), "PyTriton (NVIDIA's Triton Inference Server), tritonclient"),
    "align": Extra(("cv2",), "OpenCV (headless)"),
    "ray": Extra(("ray",), "Ray (a cluster's actors and object store, for mattex batch --ray)"),
}


def missing(extra: str) -> list[str]:
    """The modules of `extra` that are not installed here."""
    return [m for m in EXTRAS[extra].modules if importlib.util.find_spec(m) is None]


def require(extra: str, purpose: str) -> None:
    """ExtraNotInstalledError naming `extra` when any of its modules is missing."""
    absent = missing(extra)
    if absent:
        raise ExtraNotInstalledError(
            f"{purpose} needs the {extra} extra ({EXTRAS[extra].brings}; missing here: {', '.join(absent)}): "
            f'pip install "mattex[{extra}]"'
        )
