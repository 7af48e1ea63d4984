"""The OpenVINO backend: mattex's .onnx files on OpenVINO's CPU plugin, read as they are.

OpenVINO runs int8 files (Q/DQ nodes) with its int8 kernels and fp16 files with their weights
decompressed; the arithmetic precision of float layers is an explicit choice, `f32` (default)
or `bf16` on CPUs with AMX or AVX-512 BF16 (its own accuracy budget: README, accuracy budgets).
A file is compiled once per input shape it meets (static shapes): only then does OpenVINO fold
the layout changes between mattex's refiner operations and pick its fastest kernels (the
refiner at resnet50 4K: 0.63x the dynamic compile's node time, benchmarks/refiner_profile.py);
a compilation takes about a second and the last STATIC_SHAPES_KEPT shapes are kept. Compiled
models are kept in mattex's model cache (`mattex.runtime.model_cache`: one entry per file, a
size cap, least-recently-used eviction), so a second launch skips the compilation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mattex.errors import BackendUnavailableError, ConfigError, ModelFileError
from mattex.facts import FACTS
from mattex.plugins import PLUGIN_DOMAIN

from ..model_cache import check_filled, max_size, openvino_cache_dir, prune, use_entry
from .base import Backend, checked_threads, exhausted_resource

INFERENCE_PRECISIONS = {"f32": "f32", "bf16": "bf16"}
# The CPU capability each inference precision needs (OPTIMIZATION_CAPABILITIES); f32 needs none.
NEEDS_CAPABILITY = {"bf16": "BF16"}
DEVICE = "CPU"
# How many input shapes keep their compiled model (a video has one; a server's dynamic batches a few).
_OPENVINO_FACTS = next(b for b in FACTS["backends"] if b["name"] == "openvino")  # mattex/shared_facts.json
STATIC_SHAPES_KEPT: int = _OPENVINO_FACTS["static_shapes_kept"]
# Measured with OpenVINO 2026.4.1 (AMD EPYC, and an Intel Xeon told to use no AMX): mattex's int8
# files (symmetric int8 Q/DQ, 7-bit weights) compiled for static shapes, as this backend compiles,
# give pha_sm 0.09 mean away from PyTorch (budget 0.015; with dynamic shapes 0.39 away from ONNX
# Runtime's int8), and which outputs are requested changes the result (0.69 vs 0.02 on one decoder
# resize), with its low-precision transformations on or off. With AMX-INT8 the same file ran within
# budget (0.0035): a file must not be right or wrong by the CPU it lands on, so the refusal holds
# everywhere. Until a release passes tests/runtime/test_openvino.py, int8 files are refused.
INT8_REFUSAL: str = _OPENVINO_FACTS["int8_refusal"]


def cpu_capabilities(core) -> list[str]:
    return list(core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))


def check_inference_precision(precision: str, capabilities: list[str], cpu: str) -> str:
    """The OpenVINO hint for `precision`; refuses a precision this CPU computes only by emulation
    (OpenVINO would silently run f32 instead)."""
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(
            f"unknown OpenVINO inference precision {precision!r}; known: {', '.join(INFERENCE_PRECISIONS)}"
        )
    needed = NEEDS_CAPABILITY.get(precision)
    if needed and needed not in capabilities:
        raise BackendUnavailableError(
            f"inference precision {precision} needs a CPU with {needed} (AMX or AVX-512 BF16); "
            f"{cpu} offers {', '.join(capabilities)}: use f32"
        )
    return INFERENCE_PRECISIONS[precision]


def _metadata_props(model, path: Path) -> dict[str, str]:
    """The ONNX file's metadata_props, which OpenVINO's ONNX reader keeps under 'framework'."""
    info = model.get_rt_info()
    if "framework" not in info:
        return {}
    try:
        return {key: value.astype(str) for key, value in info["framework"].items()}
    except UnicodeDecodeError as e:  # ONNX Runtime refuses the same bytes as a damaged file
        raise ModelFileError(f"{path.name} is not a readable ONNX file: its metadata is not UTF-8 ({e})") from None


class OpenVinoBackend(Backend):
    kind = "openvino"

    def __init__(
        self,
        path: str | Path,
        inference_precision: str = "f32",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        allow_int8: bool = False,
        cache_max_size: str | int | None = None,
    ) -> None:
        """`allow_int8`: run an int8 file although OpenVINO's results for mattex's int8 files
        fail their budget (see INT8_REFUSAL); for `mattex verify --backend openvino`, which
        measures exactly that. `cache_max_size`: the model cache's cap (bytes, or "2G"), else
        $MATTEX_CACHE_MAX_SIZE, else 2 GiB; least recently used entries go first."""
        try:
            import openvino as ov
        except ImportError:
            raise BackendUnavailableError('OpenVINO is not installed: pip install "mattex[openvino]"') from None

        super().__init__(path)
        core = ov.Core()
        cpu = core.get_property(DEVICE, "FULL_DEVICE_NAME")
        hint = check_inference_precision(inference_precision, cpu_capabilities(core), cpu)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else openvino_cache_dir()
        cache_limit = max_size(cache_max_size)  # a bad setting fails before any work
        model = self._read(core)
        self._read_metadata(_metadata_props(model, self.path))
        if self.precision == "int8" and not allow_int8:
            raise BackendUnavailableError(f"{self.path.name}: {INT8_REFUSAL}")
        self._require_inputs([i.get_any_name() for i in model.inputs])
        self.output_names = [o.get_any_name() for o in model.outputs]
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        threads = checked_threads(threads)
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._core, self._model, self._config = core, model, config
        self._by_shape: OrderedDict[tuple, object] = OrderedDict()  # input shape -> compiled model
        self._compile_lock = threading.Lock()
        self._requests = threading.local()  # an infer request serves one call at a time
        self.cache_entry = None
        self.inference_precision = inference_precision
        self.arithmetic = "bf16" if inference_precision == "bf16" else None
        self.io_dtype = np.dtype(model.inputs[0].get_element_type().to_dtype())
        # Shapes are fixed per input shape only where the file declares them free; compiled at
        # open for the size a mattex export was traced at (as the file declares otherwise), so
        # a file OpenVINO cannot compile fails here, and the common case compiles once.
        free = not all(i.get_partial_shape().is_static for i in model.inputs)
        self._per_shape = free and self.metadata is not None
        self.compiled = self._compiled_for(self._trace_shape(model) if self._per_shape else None)
        if self.cache_entry is not None:  # else the cache could not be used (warned): nothing to prune
            prune(self.cache_dir, cache_limit, keep=(self.cache_entry,))
        assert len(self.compiled.outputs) == len(self.output_names)

    def _trace_shape(self, model) -> tuple[int, ...]:
        """Batch 1 at the file's trace size, in its input layout (NCHW, or NHWC frames)."""
        height, width = self.metadata.trace_size
        channels_last = model.inputs[0].get_partial_shape()[3].is_static
        return (1, height, width, 3) if channels_last else (1, 3, height, width)

    def _compiled_for(self, shape: tuple[int, ...] | None):
        """The model compiled for inputs of `shape` (static; None: as the file declares them),
        compiled now if it is new."""
        with self._compile_lock:
            compiled = self._by_shape.get(shape)
            if compiled is None:
                model = self._model
                try:
                    if shape is not None:
                        model = model.clone()
                        model.reshape({name: list(shape) for name in ("src", "bgr")})
                    with use_entry(self.path, self.cache_dir) as entry:
                        # None: the cache cannot be used (warned); "" compiles without one
                        self._core.set_property({"CACHE_DIR": str(entry) if entry is not None else ""})
                        compiled = self._core.compile_model(model, DEVICE, self._config)
                    if entry is not None and not check_filled(entry, self.cache_dir):
                        entry = None  # OpenVINO could not write it (a full disk): removed, warned
                except RuntimeError as e:  # OpenVINO's shape inference or compilation refused it
                    if exhausted_resource(e):
                        raise  # the machine refused threads or memory, not the file: Matter names it
                    lines = str(e).strip().splitlines() or [type(e).__name__]
                    reason = next((line.strip() for line in lines if "While validating" in line), lines[-1])
                    raise ModelFileError(f"OpenVINO cannot compile {self.path.name}: {reason}") from None
                self.cache_entry = entry
                self._by_shape[shape] = compiled
                while len(self._by_shape) > STATIC_SHAPES_KEPT:
                    self._by_shape.popitem(last=False)
            self._by_shape.move_to_end(shape)
            self.compiled = compiled
            return compiled

    def _read(self, core):
        """The ONNX file through OpenVINO's ONNX frontend only (core.read_model would also try
        its TensorFlow and Paddle readers on a file that is not ONNX, and print their errors)."""
        import openvino as ov

        frontend = ov.frontend.FrontEndManager().load_by_framework("onnx")
        try:
            return frontend.convert(frontend.load(str(self.path)))
        except Exception as e:  # OpenVINO raises GeneralFailure, OpConversionFailure, RuntimeError...
            if exhausted_resource(e):
                raise  # the machine refused threads or memory, not the file: Matter names it
            message = str(e).strip()
            if PLUGIN_DOMAIN in message or "TopkLastDim" in message:
                raise BackendUnavailableError(
                    f"{self.path.name} calls a TensorRT plugin (exported with `topk` plugin): it runs "
                    "on TensorRT only (mattex build); export with `topk` onnx for OpenVINO"
                ) from None
            reason = message.splitlines()[-1] if message else type(e).__name__
            raise ModelFileError(f"{self.path} is not a loadable ONNX model (OpenVINO: {reason})") from None

    def _request(self, shape: tuple[int, ...]):
        """This thread's infer request for inputs of `shape`."""
        compiled = self._compiled_for(shape if self._per_shape else None)
        requests = self._requests.__dict__.setdefault("by_shape", {})  # shape -> (compiled, request)
        if shape not in requests or requests[shape][0] is not compiled:
            requests[shape] = (compiled, compiled.create_infer_request())
            for old in [s for s in requests if s not in self._by_shape]:  # let evicted models go
                del requests[old]
        return requests[shape][1]

    def _run(self, src, bgr) -> dict[str, np.ndarray]:
        request = self._request(tuple(src.shape))
        request.infer({"src": np.ascontiguousarray(src), "bgr": np.ascontiguousarray(bgr)})
        # The request's output buffers are reused by its next call: hand out copies.
        return {name: request.get_output_tensor(i).data.copy() for i, name in enumerate(self.output_names)}
