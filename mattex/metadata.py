"""What `mattex export` records in a file's ONNX `metadata_props`, as one typed object.

Export writes it (`to_props`); everything else reads it once (`from_props`): the runtime from
ONNX Runtime's or OpenVINO's metadata map, the exporter and `verify` from the ONNX file, `build`
into the engine's sidecar. Standard library only: the slim runtime reads it.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields

from mattex.contract import MAX_BACKBONE_SCALE, PATCH_PIXELS, SIZE_MULTIPLE
from mattex.errors import ModelFileError
from mattex.facts import FACTS, config_types, flat_keys, message

# Keys whose values are JSON in metadata_props (objects or lists); the others are plain strings.
_PROPS = FACTS["metadata_props"]
_JSON_LISTS = tuple(_PROPS["json_lists"])
_JSON = (*_PROPS["json_objects"], *_JSON_LISTS)

# The export configuration's entries every reader may rely on, by type (ExportConfig's fields;
# later fields such as io and topk have defaults for files that predate them), and the
# metadata_props keys written beside export_config for tools that read flat keys (Netron, `onnx`
# scripts), each derived from the configuration, never read back: mattex/shared_facts.json holds
# both, which the C++ runtime reads too.
CONFIG_TYPES = config_types()
FLAT_KEYS = flat_keys()


class _FromConfig:
    """An ExportMetadata attribute read from its export configuration: held once."""

    def __init__(self, key: str, default=None) -> None:
        self.key, self.default = key, default

    def __get__(self, meta, owner=None):
        return self if meta is None else meta.export_config.get(self.key, self.default)


@dataclass(frozen=True)
class ExportMetadata:
    mattex_version: str
    torch_version: str
    weights: str  # `checkpoint <sha256>`, `demo <sha256>` or `random seed=<n>`
    io_contract: dict
    export_config: dict  # the ExportConfig the file was exported with, by field: the one home
    # The scores and indices tensors of each exact top-k selection, by name (verify reads them).
    selection: list = field(default_factory=list)
    tensorrt_plugins: list = field(default_factory=list)  # what a TensorRT build must provide
    fp16: dict | None = None  # what the fp16 pass converted and left in float32
    int8_calibration: dict | None = None  # how the int8 ranges were calibrated

    backbone = _FromConfig("backbone")
    backbone_scale = _FromConfig("backbone_scale")
    refine_mode = _FromConfig("refine_mode")
    refine_sample_pixels = _FromConfig("sample_pixels")
    refine_threshold = _FromConfig("threshold")
    refine_kernel_size = _FromConfig("kernel_size")
    refine_prevent_oversampling = _FromConfig("prevent_oversampling")
    precision = _FromConfig("precision")
    opset = _FromConfig("opset")
    target = _FromConfig("target")
    topk = _FromConfig("topk", "onnx")
    io = _FromConfig("io", "float")  # "uint8": the file takes uint8 frames (B, H, W, 3)

    @property
    def refine_k(self) -> int:
        return self.refine_sample_pixels // PATCH_PIXELS

    @property
    def trace_size(self) -> tuple[int, int]:
        return self.export_config["height"], self.export_config["width"]

    @property
    def io_dtype(self) -> str:
        """The inputs' dtype: uint8, float16 or float32."""
        return "uint8" if self.io == "uint8" else self.export_config.get("io_dtype", "float32")

    def to_props(self) -> dict[str, str]:
        """The metadata_props map: the fields (JSON for structured values; empty optional values
        left out), then the flat keys derived from the export configuration."""
        props = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name in _JSON_LISTS and not value):
                continue
            # Strict JSON (no NaN or Infinity): other readers, the C++ runtime's among them, refuse them.
            props[f.name] = json.dumps(value, allow_nan=False) if f.name in _JSON else str(value)
        for key, name in FLAT_KEYS.items():
            value = self.export_config[name]
            props[key] = str(value).lower() if isinstance(value, bool) else str(value)
        props["refine_k"] = str(self.refine_k)
        props["trace_size"] = "{}x{}".format(*self.trace_size)
        props["topk"] = self.topk
        return props

    @classmethod
    def of_file(cls, props: dict[str, str], source: object = "the file") -> ExportMetadata | None:
        """`from_props` for a file that may be any ONNX model: None for one mattex did not export
        (no export configuration), which still runs where its inputs are src and bgr."""
        return cls.from_props(props, source) if is_mattex_export(props) else None

    @classmethod
    def from_props(cls, props: dict[str, str], source: object = "the file") -> ExportMetadata:
        """Parse a metadata_props map (the flat keys are not read: the export configuration
        holds those facts); ModelFileError when it is not a mattex export's or a value is
        malformed (a damaged or hand-edited file)."""
        if not is_mattex_export(props):
            raise ModelFileError(
                f"{source} is a valid ONNX model but not a mattex export (no "
                "export_config metadata): export it with `mattex export`"
            )
        values = {}
        for f in fields(cls):
            if f.name not in props:
                continue
            try:
                values[f.name] = _parse(f.name, props[f.name])
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
        _check_config(values["export_config"], source)
        return cls(**values)


def is_mattex_export(props: dict[str, str]) -> bool:
    """Whether a metadata_props map is a mattex export's: it holds the export configuration."""
    return "export_config" in props


def _check_config(config: dict, source: object) -> None:
    missing = [key for key in CONFIG_TYPES if key not in config]
    if missing:
        raise ModelFileError(message("export_config", "lacks", source=source, missing=", ".join(missing)))
    for key, kind in CONFIG_TYPES.items():
        value = config[key]
        # JSON has one number type: a float option may hold an integer; bool is no number here.
        typed = isinstance(value, (int, float) if kind is float else kind)
        if not typed or (kind is not bool and isinstance(value, bool)):
            got = json.dumps(value)[:20]
            raise ModelFileError(message("export_config", "type", source=source, key=key, kind=kind.__name__, got=got))
    problem = config_value_problem(config)
    if problem is not None:
        key, why = problem
        raise ModelFileError(
            f"{source}: its mattex metadata 'export_config' field {key!r} {why}: a damaged or hand-edited "
            "file; export it again"
        )


def config_value_problem(config: dict) -> tuple[str, str] | None:
    """The first export-configuration value no model can be made with, as (field, what it must
    be), or None: one rule for an option given to `ExportConfig` and a file's metadata read back."""
    rules = (
        ("height", lambda v: v > 0 and v % SIZE_MULTIPLE == 0, f"a positive multiple of {SIZE_MULTIPLE}"),
        ("width", lambda v: v > 0 and v % SIZE_MULTIPLE == 0, f"a positive multiple of {SIZE_MULTIPLE}"),
        (
            "backbone_scale",
            lambda v: 0 < v <= MAX_BACKBONE_SCALE,
            "in (0, 1/2]: the backbone runs at half size at most",
        ),
        (
            "threshold",
            lambda v: 0 <= v < 1,
            "in [0, 1): the error map lies in [0, 1] and a patch is refined where it exceeds the threshold, "
            "so 1 or more refines nothing",
        ),
        ("sample_pixels", lambda v: v >= PATCH_PIXELS, f"at least {PATCH_PIXELS} (one patch)"),
        ("kernel_size", lambda v: v in (1, 3), "1 or 3"),
    )
    for key, ok, want in rules:
        value = config.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in config and not (number and ok(value)):  # NaN fails every comparison
            return key, f"must be {want}, got {value!r}"
    return None


def _parse(name: str, text: str):
    if name not in _JSON:
        return text
    value = json.loads(text, parse_constant=_not_json)
    want = list if name in _JSON_LISTS else dict
    if not isinstance(value, want):
        raise TypeError(f"expected a JSON {want.__name__}")
    return value


def _not_json(constant: str):
    """json.loads accepts NaN, Infinity and -Infinity, which JSON does not: refused, as the C++
    runtime's parser refuses them."""
    raise ValueError(f"{constant} is not a JSON number")
