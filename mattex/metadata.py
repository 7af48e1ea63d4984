"""What `mattex export` records in a file's ONNX `metadata_props`, as one typed object.

Export writes it (`to_props`); everything else reads it once (`from_props`): the runtime from
ONNX Runtime's or OpenVINO's metadata map, the exporter and `verify` from the ONNX file, `build`
into the engine's sidecar. Standard library only: the slim runtime reads it.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields

from mattex.errors import ModelFileError

# Keys whose values are JSON in metadata_props; the others are plain strings or numbers.
_JSON = ("io_contract", "export_config", "selection", "tensorrt_plugins", "fp16", "int8_calibration")


@dataclass(frozen=True)
class ExportMetadata:
    mattex_version: str
    torch_version: str
    backbone: str
    backbone_scale: float
    refine_mode: str
    refine_sample_pixels: int
    refine_k: int
    refine_threshold: float
    refine_kernel_size: int
    refine_prevent_oversampling: bool
    weights: str  # `checkpoint <sha256>`, `demo <sha256>` or `random seed=<n>`
    precision: str  # fp32 | fp16 | int8
    opset: int
    target: str
    trace_size: tuple[int, int]
    io_contract: dict
    export_config: dict  # the ExportConfig the file was exported with, by field
    topk: str = "onnx"
    # The scores and indices tensors of each exact top-k selection, by name (verify reads them).
    selection: list = field(default_factory=list)
    tensorrt_plugins: list = field(default_factory=list)  # what a TensorRT build must provide
    fp16: dict | None = None  # what the fp16 pass converted and left in float32
    int8_calibration: dict | None = None  # how the int8 ranges were calibrated

    @property
    def io(self) -> str:
        """ "uint8" for files that take uint8 frames (B, H, W, 3), else "float"."""
        return self.export_config.get("io", "float")

    @property
    def io_dtype(self) -> str:
        """The inputs' dtype: uint8, float16 or float32."""
        return "uint8" if self.io == "uint8" else self.export_config.get("io_dtype", "float32")

    def to_props(self) -> dict[str, str]:
        """The metadata_props map: strings, JSON for structured values; empty optional values
        are left out."""
        props = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name in ("selection", "tensorrt_plugins") and not value):
                continue
            if f.name in _JSON:
                props[f.name] = json.dumps(value)
            elif f.name == "trace_size":
                props[f.name] = f"{value[0]}x{value[1]}"
            elif isinstance(value, bool):
                props[f.name] = str(value).lower()
            elif isinstance(value, float):
                props[f.name] = repr(value)
            else:
                props[f.name] = str(value)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: object = "the file") -> ExportMetadata:
        """Parse a metadata_props map; ModelFileError when it is not a mattex export's or a
        value is malformed (a damaged or hand-edited file)."""
        if "export_config" not in props:
            raise ModelFileError(
                f"{source} is a valid ONNX model but not a mattex export (no "
                "export_config metadata): export it with `mattex export`"
            )
        values = {}
        for f in fields(cls):
            if f.name not in props:
                continue
            text = props[f.name]
            try:
                values[f.name] = _parse(f.name, f.type, text)
            except (ValueError, TypeError, RecursionError) as e:
                raise ModelFileError(
                    f"{source}: its mattex metadata {f.name!r} is malformed ({type(e).__name__}: {str(e)[:80]})"
                ) from None
        missing = [
            f.name
            for f in fields(cls)
            if f.name not in values and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise ModelFileError(f"{source}: its mattex metadata lacks {', '.join(missing)}")
        return cls(**values)


def _parse(name: str, kind: str, text: str):
    if name in _JSON:
        value = json.loads(text)
        want = list if name in ("selection", "tensorrt_plugins") else dict
        if not isinstance(value, want):
            raise TypeError(f"expected a JSON {want.__name__}")
        return value
    if name == "trace_size":
        height, width = (int(v) for v in text.lower().split("x"))
        return height, width
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text[:20]!r}")
        return text == "true"
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text
