"""INT8 calibration: activation ranges measured on PhotoMatte-layout composites at the export
size, and the Q/DQ graph ONNX Runtime's static quantizer places with them, for strongly typed
TensorRT and ONNX Runtime's CPU int8 kernels.

Which nodes are quantized is the exporter's decision (`mattex.exporter.quantize`: the data path
only, the layers kept float by measurement); this module measures and applies:
- Symmetric int8 everywhere (zero points 0, TensorRT's rule), per-channel weights in 7 bits
  by default (`reduce_range`; `weight_bits=8` for files only TensorRT will run): x86 CPUs without
  VNNI multiply uint8 x int8 pairs into saturating int16 sums, and full-range weights overflowed
  there (mobilenetv2 HD: SAD 1.14x fp32's with full range, 1.00x with 7 bits; 256x256: pha mean
  error 6.8e-3 -> 1.8e-3). TensorRT runs the same 7-bit values exactly.
- Biases stay float (`QuantizeBias: False`): TensorRT dequantizes int8 only, not int32.
- One Q/DQ pair per consumer (`DedicatedQDQPair`), so ONNX Runtime can fuse every convolution.
- Calibration ranges are cached beside the model with a key of everything they depend on
  (model graph, data and background file contents, sample count, size, method, seed, the nodes
  left float); a cache whose key differs is rebuilt, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

import mattex
from mattex.files import atomic_write_bytes

from .footage import FOOTAGE
from .settings import CalibrationSettings

CACHE_FORMAT = "mattex-calibration-cache/1"


@dataclass
class QuantizationResult:
    model: onnx.ModelProto
    cache_path: Path
    cache_reused: bool
    samples: int
    excluded_nodes: int
    left_float: dict[str, int]  # nodes of quantized op types left float, by reason
    info: dict = field(default_factory=dict)  # the file's int8_calibration metadata
    _pending_cache: bytes | None = None

    def take_pending_cache(self) -> tuple[Path, bytes] | None:
        """The newly computed ranges to write and where (None when the cache was reused), for
        a caller that writes them together with its own file; they are then no longer pending."""
        pending, self._pending_cache = self._pending_cache, None
        return None if pending is None else (self.cache_path, pending)

    def save_cache(self) -> None:
        """Write newly computed ranges to `cache_path` (a reused cache needs no write)."""
        if self._pending_cache is not None:
            atomic_write_bytes(self.cache_path, self._pending_cache)
            self._pending_cache = None


def check_calibration_data(settings: CalibrationSettings, size: tuple[int, int]) -> None:
    """Raise ConfigError or DataError now for settings or data that calibration would refuse
    later: a missing or empty folder, an unreadable or RGB-only image among the samples."""
    from .composite import Composites

    settings.validate()
    composites = Composites(settings.data, size, settings.backgrounds, seed=settings.seed, limit=settings.samples)
    composites.mattes.check(len(composites))


def calibrate_and_quantize(
    fp32: onnx.ModelProto,
    settings: CalibrationSettings,
    size: tuple[int, int],
    cache_path: Path,
    op_types: tuple[str, ...],
    left_float: dict[str, str],
    progress: Callable[[int, int], None] = lambda i, n: None,
    write_cache: bool = True,
) -> QuantizationResult:
    """The Q/DQ model of `fp32`: nodes of `op_types` quantized, except `left_float` (node name
    -> why), with activation ranges calibrated on composites at `size` (height, width) or read
    from the cache at `cache_path`. Raises DataError for an empty or unreadable data folder
    before anything is written. With `write_cache=False` the new ranges wait for
    `result.take_pending_cache()` (the exporter writes them together with the model)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .composite import Composites

    settings.validate()
    # Captured as footage is (misaligned plate, exposure, noise, near and far subjects): ranges
    # measured on the paper's evaluation composites left int8 files 1.5-3x over budget on such
    # pairs at their trace size (issue 48).
    composites = Composites(
        settings.data, size, settings.backgrounds, seed=settings.seed, limit=settings.samples, footage=FOOTAGE
    )
    excluded = sorted(left_float)
    key = _cache_key(fp32, composites, settings, size, op_types, excluded)
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[settings.method]
    with tempfile.TemporaryDirectory(prefix="mattex-int8-") as tmp:
        ranges = Path(tmp) / "ranges.json"
        reused = _load_cache(cache_path, key, ranges)
        frames = fp32.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
        reader = None if reused else _CompositeReader(composites, progress, frames)
        out, source = Path(tmp) / "int8.onnx", Path(tmp) / "fp32.onnx"
        onnx.save(fp32, str(source))  # by path: quantize_static rewrites a ModelProto it is given
        with _without_preprocess_advice():
            quantize_static(
                str(source),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(op_types),
                per_channel=True,
                reduce_range=settings.weight_bits == 7,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=method,
                calibration_cache_path=str(ranges),
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,
                    "DedicatedQDQPair": True,
                },
            )
        pending = None
        if not reused:
            pending = json.dumps({"key": key, "ranges": json.loads(ranges.read_text())}).encode()
        model = onnx.load(str(out))
    reasons = dict(Counter(left_float.values()).most_common())
    info = {
        "samples": len(composites),
        "method": settings.method,
        "size": list(size),
        "seed": settings.seed,
        "data_sha256": key["data_sha256"],
        "quantized_op_types": list(op_types),
        "kept_float": list(reasons),
        "left_float": reasons,
        "symmetric": True,
        "per_channel_weights": True,
        "weight_bits": settings.weight_bits,
        "bias": "float",
    }
    result = QuantizationResult(model, cache_path, reused, len(composites), len(excluded), reasons, info, pending)
    if write_cache:
        result.save_cache()
    return result


class _PreprocessAdvice(logging.Filter):
    """quantize_static advises ONNX Runtime's pre-processing (shape inference, BatchNorm
    folding) on every call; the exported graph has had both, so the advice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextmanager
def _without_preprocess_advice():
    root, advice = logging.getLogger(), _PreprocessAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


class _CompositeReader:
    """ONNX Runtime's CalibrationDataReader protocol over Composites feeds (as uint8 frames for a
    file that takes them)."""

    def __init__(self, composites, progress: Callable[[int, int], None], frames: bool = False) -> None:
        self.total = len(composites)
        self.feeds = iter(composites.feeds())
        self.count = 0
        self.progress = progress
        self.frames = frames

    def get_next(self) -> dict | None:
        from mattex.runtime.io_spec import float_to_input

        feed = next(self.feeds, None)
        if feed is not None:
            self.count += 1
            self.progress(self.count, self.total)
            if self.frames:
                feed = {name: float_to_input(x, np.uint8) for name, x in feed.items()}
        return feed


def _cache_key(
    fp32: onnx.ModelProto,
    composites,
    settings: CalibrationSettings,
    size: tuple[int, int],
    op_types: tuple[str, ...],
    excluded: list[str],
) -> dict:
    """Everything the calibration ranges depend on."""
    import onnxruntime

    graph = onnx.ModelProto()
    graph.CopyFrom(fp32)
    del graph.metadata_props[:]  # export time stamps and versions do not change the ranges
    used = len(composites)  # item i reads matte i and background i modulo the folder
    files = [p for pair in composites.mattes.pairs[:used] for p in pair if p is not None]
    if composites.backgrounds.files is not None:
        files += composites.backgrounds.files[:used]
    return {
        "format": CACHE_FORMAT,
        "model_sha256": hashlib.sha256(graph.SerializeToString(deterministic=True)).hexdigest(),
        "data_sha256": _files_digest(files),
        # weight_bits is not here: the calibrator measures activations only.
        "settings": {
            "samples": settings.samples,
            "method": settings.method,
            "seed": settings.seed,
            "quantized_op_types": list(op_types),
            "backgrounds": settings.backgrounds is not None,
            "excluded_sha256": hashlib.sha256("\n".join(excluded).encode()).hexdigest(),
        },
        "size": list(size),
        # As JSON reads it back (lists, not tuples), so that a cached key compares equal.
        "footage": json.loads(json.dumps(asdict(composites.footage))) if composites.footage else None,
        "onnxruntime": onnxruntime.__version__,
        "mattex": mattex.__version__,  # composites (perturbation, procedural backgrounds) may change
    }


def _files_digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _load_cache(cache_path: Path, key: dict, ranges: Path) -> bool:
    """Write the cached ranges to `ranges` when the cache exists and its key matches."""
    if not cache_path.is_file():
        return False
    try:
        cached = json.loads(cache_path.read_text())
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON: recalibrate, overwrite
        return False
    if not isinstance(cached, dict) or cached.get("key") != key or "ranges" not in cached:
        return False
    ranges.write_text(json.dumps(cached["ranges"]))
    return True


def default_cache_path(output: Path) -> Path:
    return output.with_name(output.name + ".calibration.json")
