"""Reading an ONNX file a user names, with one typed error for every way it can be wrong:
missing, a folder, empty, truncated or corrupt, or a valid ONNX model that mattex did not export."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from mattex.errors import ModelFileError


def load_onnx(path: str | Path, load_external_data: bool = True) -> onnx.ModelProto:
    """The model in `path`, or ModelFileError naming the file and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not an ONNX file")
    if not path.is_file():
        raise ModelFileError(f"no such ONNX file: {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): an interrupted export or copy?")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except (DecodeError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise ModelFileError(f"{path} is not a readable ONNX model (truncated or corrupt): "
                             f"{str(e).strip() or type(e).__name__}") from None
    # Protobuf parses some garbage into a message of unknown fields: no IR version, no graph.
    if model.ir_version == 0 or not model.graph.node:
        raise ModelFileError(f"{path} is not a readable ONNX model (truncated or corrupt): "
                             "no IR version or no graph nodes")
    return model


def require_mattex_export(meta: dict[str, str], path: str | Path) -> dict[str, str]:
    """`meta` (a file's metadata_props) if the file was written by `mattex export`."""
    if "export_config" not in meta:
        raise ModelFileError(f"{path} is a valid ONNX model but not a mattex export (no "
                             "export_config metadata): export it with `mattex export`")
    return meta
