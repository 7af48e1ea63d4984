"""Reading an ONNX file a user names, with one typed error for every way it can be wrong:
missing, a folder, empty, truncated or corrupt, or a valid ONNX model that mattex did not export."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from mattex.errors import ModelFileError
from mattex.metadata import ExportMetadata


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
    except onnx.checker.ValidationError as e:  # external data missing, or outside the model's folder
        raise ModelFileError(f"{path} is not a readable ONNX model: {str(e).strip()}") from None
    except (DecodeError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise ModelFileError(
            f"{path} is not a readable ONNX model (truncated or corrupt): {str(e).strip() or type(e).__name__}"
        ) from None
    # Protobuf parses some garbage into a message of unknown fields: no IR version, no graph.
    if model.ir_version == 0 or not model.graph.node:
        raise ModelFileError(
            f"{path} is not a readable ONNX model (truncated or corrupt): no IR version or no graph nodes"
        )
    if not load_external_data:
        _check_external_data(model, path)
    return model


def _check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """What onnx's loader checks of external data, without reading it: every file named exists,
    inside the model's folder (a reader that trusted `../` would read anywhere)."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    folder = path.resolve().parent
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        try:
            target = (folder / location).resolve()
            exists = target.is_file()
        except (ValueError, OSError) as e:  # a NUL byte, a name too long
            raise ModelFileError(
                f"{path} is not a readable ONNX model: tensor {tensor.name!r} names its data file {location!r} ({e})"
            ) from None
        if not target.is_relative_to(folder):
            raise ModelFileError(
                f"{path} is not a readable ONNX model: tensor {tensor.name!r} keeps its data in {location}, "
                "outside the model's folder"
            )
        if not exists:
            raise ModelFileError(
                f"{path} is not a readable ONNX model: tensor {tensor.name!r} keeps its data in {location}, "
                "which does not exist"
            )


def props_of(model: onnx.ModelProto, path: str | Path) -> dict[str, str]:
    """A loaded model's metadata_props; ModelFileError where they are not UTF-8."""
    try:
        return {p.key: p.value for p in model.metadata_props}
    except UnicodeDecodeError as e:
        raise ModelFileError(f"{path} is not a readable ONNX model: its metadata is not UTF-8 ({e})") from None


def metadata_of(model: onnx.ModelProto, path: str | Path) -> ExportMetadata:
    """The ExportMetadata of a loaded model; ModelFileError for a file mattex did not export."""
    return ExportMetadata.from_props(props_of(model, path), path)


def read_export_metadata(path: str | Path) -> ExportMetadata:
    """The metadata `mattex export` wrote into `path` (its weights are not loaded);
    ModelFileError for a missing, empty, corrupt or foreign file."""
    return metadata_of(load_onnx(path, load_external_data=False), path)
