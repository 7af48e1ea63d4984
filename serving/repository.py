"""`mattex triton-repo`: a Triton model repository any Triton deployment loads.

    REPO/<name>/config.pbtxt
    REPO/<name>/1/model.plan      TensorRT engine   (platform tensorrt_plan, on the GPU)
                 1/model.onnx      ONNX file         (platform onnxruntime_onnx; or backend openvino, CPU)
                 1/model.py + file mattex's runtime  (backend python, the file on Matter's backend)

Dims, dtypes and batch sizes come from the file itself: an engine's sidecar (its profiles and
I/O), an ONNX file's export metadata. A file they cannot describe is refused by name: an engine
without a sidecar, or with a profile Triton cannot serve (a minimum batch above 1).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mattex.contract import DEBUG_OUTPUTS, ENGINE_SUFFIXES, INPUTS, OUTPUTS
from mattex.errors import ConfigError, ModelFileError
from mattex.files import atomic_write_text, check_output_folder, output_error, output_folder
from mattex.runtime.backends import BACKENDS
from mattex.serving import limits
from mattex.serving.limits import check_whole

# Beside the backends Triton serves itself (the registry's `repository` entries), mattex's own
# runtime in Triton's Python backend serves any file.
PYTHON = "python"


def repository_backends() -> tuple[str, ...]:
    return ("auto", *BACKENDS.served_by_triton(), PYTHON)


def default_device(backend: str) -> str:
    """Where a backend's instances run unless told: the GPU for a backend that runs there
    (its bench variants say so), else the CPU."""
    entry = BACKENDS[backend] if backend != PYTHON else None
    return "gpu" if entry is not None and any(v.device == "gpu" for v in entry.bench_variants) else "cpu"


DEVICES = ("gpu", "cpu")
TRITON_TYPES = {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64"}
# Channels (or 1) of each output, in the graph contract's (B, C, H, W) layout.
CHANNELS = {"pha": 1, "fgr": 3, "pha_sm": 1, "fgr_sm": 3, "err_sm": 1, "ref_sm": 1}
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")
# A model name Triton loads everywhere: a folder name on any file system, a URL path segment
# without escaping, and a config.pbtxt string without escapes.
MODEL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")


@dataclass(frozen=True)
class Enum:
    """A protobuf enum value in text format (written bare, not quoted)."""

    value: str


@dataclass
class RepositoryConfig:
    model: Path
    out: Path
    name: str = "matte"
    backend: str = "auto"  # auto: the first backend Triton serves the file with (tensorrt, onnxruntime)
    instances: int = 1
    max_batch: int = limits.DEFAULT_MAX_BATCH
    max_queue_delay_us: int = 2000
    device: str | None = None  # gpu | cpu; default: `default_device` (gpu for tensorrt/onnxruntime)
    tensorrt_accelerator: bool = False  # onnxruntime: run through Triton's TensorRT execution accelerator
    parameters: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.backend not in repository_backends():
            raise ConfigError(f"unknown `backend` {self.backend!r}; choose one of {', '.join(repository_backends())}")
        if self.device is not None and self.device not in DEVICES:
            raise ConfigError(f"unknown `device` {self.device!r}; choose one of {', '.join(DEVICES)}")
        check_whole("instances", self.instances, 1, limits.MAX_REPOSITORY_INSTANCES, " (per device)")
        check_whole("max_batch", self.max_batch, 1, limits.MAX_BATCH)
        check_whole("max_queue_delay_us", self.max_queue_delay_us, 0, limits.MAX_QUEUE_DELAY_US)
        if not MODEL_NAME.fullmatch(self.name):
            raise ConfigError(
                f"`name` {self.name!r} is not a Triton model name: it names the model's folder and appears in "
                "Triton's URLs (/v2/models/NAME), so mattex takes letters, digits, _, - and . (not first), "
                "at most 255 of them"
            )


def write_repository(config: RepositoryConfig) -> Path:
    """Write `config.out/<name>/` (config.pbtxt and version 1), atomically: a refused model or a
    failure leaves nothing. Returns the model folder."""
    config.validate()
    check_output_folder(config.out)  # before the file is read
    model = Path(config.model)
    if not model.is_file():
        raise ModelFileError(f"no such model file: {model}")
    suffix = model.suffix.lower()
    backend = config.backend
    if backend == "auto":
        served = BACKENDS.served_by_triton()  # a file no backend opens is refused by the first's suffix check
        backend = next((n for n in served if suffix in BACKENDS[n].suffixes), served[0])
    if backend != PYTHON and suffix not in BACKENDS[backend].suffixes:
        raise ConfigError(f"`backend` {backend} serves {', '.join(BACKENDS[backend].suffixes)} files, not {model.name}")
    described = describe(model, backend, config)
    folder = Path(config.out) / config.name
    if folder.exists():
        raise ConfigError(f"{folder} exists: choose another `out` or `name` (nothing was changed)")
    with output_folder(folder):
        _copy_version(described.files, folder / "1")
        atomic_write_text(folder / "config.pbtxt", text_format(described.config))
    return folder


def _copy_version(files: dict[Path, str], version: Path) -> None:
    """The version folder with its files; an OSError (a full disk) is an OutputPathError naming
    the file, and the caller's output_folder removes the whole model folder."""
    target = version
    try:
        version.mkdir()
        for source, name in files.items():
            target = version / name
            shutil.copyfile(source, target)
    except OSError as e:
        raise output_error(target, e) from None


@dataclass
class Described:
    config: dict  # the ModelConfig as nested data, for text_format
    files: dict[Path, str]  # what goes into version 1, by target name


def describe(model: Path, backend: str, config: RepositoryConfig) -> Described:
    if backend != PYTHON and model.suffix.lower() in ENGINE_SUFFIXES:
        return _describe_engine(model, config)
    facts = file_facts(model)
    if facts.plugins and backend != "python":
        raise ConfigError(
            f"{model.name} calls TensorRT plugins (`topk` plugin): {backend} cannot run it; build an "
            "engine and serve that (`backend` tensorrt)"
        )
    inputs = [_tensor(n, facts.io_dtype, [-1, -1, 3] if facts.io_dtype == "uint8" else [3, -1, -1]) for n in INPUTS]
    out_dtype = "float16" if facts.io_dtype == "float16" else "float32"
    outputs = [_tensor(n, out_dtype, [CHANNELS[n], -1, -1]) for n in facts.outputs]
    common = _common(config, inputs, outputs)
    if backend == PYTHON:
        file = "model" + model.suffix.lower()
        device = config.device or ("gpu" if model.suffix.lower() in ENGINE_SUFFIXES else "cpu")
        common["parameters"] = [{"key": "mattex_model", "value": {"string_value": file}}]
        files = {PYTHON_MODEL: "model.py", model: file}
        if model.suffix.lower() in ENGINE_SUFFIXES:
            files[Path(str(model) + ".json")] = file + ".json"  # the sidecar travels with the plan
            from mattex.runtime.sidecar import load_sidecar

            check_engine_batches(model, load_sidecar(model), config)
        return Described({**common, "backend": "python", **_instances(config, device)}, files)
    refusal = BACKENDS[backend].refuses(facts.precision)
    if refusal is not None:
        raise ConfigError(f"{model.name}: {refusal}")
    entry = BACKENDS[backend].repository
    described = {**common, **entry, **_instances(config, config.device or default_device(backend))}
    if config.tensorrt_accelerator:
        precision = {"fp16": "FP16", "int8": "INT8"}.get(facts.precision, "FP32")
        described["optimization"] = {
            "execution_accelerators": {
                "gpu_execution_accelerator": [
                    {"name": "tensorrt", "parameters": [{"key": "precision_mode", "value": precision}]}
                ]
            }
        }
    return Described(described, {model: "model.onnx"})


@dataclass
class FileFacts:
    io_dtype: str  # uint8 | float32 | float16
    outputs: list[str]
    precision: str
    plugins: list


def file_facts(model: Path) -> FileFacts:
    """What a repository needs to know of a file, without running it: an engine's sidecar, or
    an ONNX file's metadata and outputs (read through ONNX Runtime: no onnx package needed)."""
    from mattex.files import check_model_file
    from mattex.metadata import ExportMetadata, is_mattex_export

    check_model_file(model)
    if model.suffix.lower() in ENGINE_SUFFIXES:
        from mattex.runtime.sidecar import load_sidecar

        sidecar = load_sidecar(model)
        props = sidecar.export_metadata
        meta = ExportMetadata.of_file(props, model.name)
        dtype = next(io["dtype"] for io in sidecar.io if io["name"] == INPUTS[0])
        outputs = [io["name"] for io in sidecar.io if io["mode"] == "output"]
        return FileFacts(dtype, outputs, sidecar.precision, meta.tensorrt_plugins if meta else [])
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as e:  # a plugin file, a damaged file
        if "trt.plugins" in str(e):
            return FileFacts("float32", list(OUTPUTS), "fp32", [{"name": "a TensorRT plugin"}])
        raise ModelFileError(f"{model} is not a loadable ONNX model: {e}") from None
    props = session.get_modelmeta().custom_metadata_map
    if not is_mattex_export(props):
        raise ModelFileError(f"{model.name} is not a mattex export: its inputs and outputs cannot be described")
    meta = ExportMetadata.from_props(props, model.name)
    return FileFacts(meta.io_dtype, [o.name for o in session.get_outputs()], meta.precision, meta.tensorrt_plugins)


def _describe_engine(model: Path, config: RepositoryConfig) -> Described:
    from mattex.runtime.sidecar import load_sidecar

    sidecar = load_sidecar(model)  # CorruptEngineError without one
    if BACKENDS[sidecar.backend].repository is None:
        from mattex.runtime.backends.tensorrt import LABELS

        label = LABELS.get(sidecar.backend, sidecar.backend)
        served = [n for n in BACKENDS.served_by_triton() if set(BACKENDS[n].suffixes) & set(ENGINE_SUFFIXES)]
        raise ConfigError(
            f"{model.name} was built with {label}, which Triton's own backends do not load: serve it with "
            f"`backend` python (mattex's runtime), or build with {' or '.join(served)}"
        )
    check_engine_batches(model, sidecar, config)
    tensors = {"input": [], "output": []}
    for io in sidecar.io:
        if io["name"] not in (*INPUTS, *OUTPUTS, *DEBUG_OUTPUTS):
            raise ModelFileError(f"{model.name}: unexpected I/O tensor {io['name']!r} in its sidecar")
        tensors[io["mode"]].append(_tensor(io["name"], io["dtype"], io["shape"][1:]))
    common = _common(config, tensors["input"], tensors["output"], max_batch=config.max_batch)
    group = _instances(config, config.device or default_device(sidecar.backend))
    if len(sidecar.profiles) > 1:
        group["instance_group"][0]["profile"] = [str(i) for i in range(len(sidecar.profiles))]
    return Described(
        {**common, **BACKENDS[sidecar.backend].repository, **group},
        {model: "model.plan", Path(str(model) + ".json"): "model.plan.json"},
    )


def check_engine_batches(model: Path, sidecar, config: RepositoryConfig) -> None:
    """The batches Triton will send (1 up to `max_batch`) must be ones every profile of the
    engine takes, whichever backend runs it: Triton's TensorRT backend or mattex's runtime."""
    low = [p for p in sidecar.profiles if p.min[0] != 1]
    if low:
        raise ConfigError(
            f"{model.name} has a profile whose smallest batch is {low[0].min[0]}: Triton sends batches from 1 "
            "up, so it cannot serve that engine; rebuild it with profiles from batch 1 (mattex build --batch N)"
        )
    max_batch = min(p.max[0] for p in sidecar.profiles)
    if config.max_batch > max_batch:
        raise ConfigError(
            f"`max_batch` {config.max_batch} exceeds the engine's largest batch {max_batch} "
            "(its profiles): rebuild it (mattex build --batch N), or serve smaller batches"
        )


def _tensor(name: str, dtype: str, dims: list[int]) -> dict:
    if dtype not in TRITON_TYPES:
        raise ModelFileError(f"tensor {name} has dtype {dtype}, which this repository writer does not map")
    return {"name": name, "data_type": Enum(TRITON_TYPES[dtype]), "dims": list(dims)}


def _common(config: RepositoryConfig, inputs: list, outputs: list, max_batch: int | None = None) -> dict:
    return {
        "name": config.name,
        "max_batch_size": max_batch or config.max_batch,
        "input": inputs,
        "output": outputs,
        "dynamic_batching": {"max_queue_delay_microseconds": config.max_queue_delay_us},
    }


def _instances(config: RepositoryConfig, device: str) -> dict:
    kind = Enum("KIND_GPU" if device == "gpu" else "KIND_CPU")
    return {"instance_group": [{"count": config.instances, "kind": kind}]}


def text_format(message: dict, indent: int = 0) -> str:
    """Protobuf text format of nested data: dicts are messages, lists of dicts repeated messages,
    lists of numbers or strings repeated scalars, Enum values bare."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{text_format(value, indent + 1)}{pad}}}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"{pad}  {{\n{text_format(v, indent + 2)}{pad}  }}" for v in value)
            lines.append(f"{pad}{key} [\n{items}\n{pad}]")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
