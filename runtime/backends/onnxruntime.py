"""The ONNX Runtime backend: TensorRT EP -> CUDA EP -> CPU, or exactly the providers asked for."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mattex.errors import BackendUnavailableError, ModelFileError
from mattex.plugins import PLUGIN_DOMAIN

from .base import Backend, checked_threads, exhausted_resource

PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}


def choose_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    """The providers to run with. Asked-for providers must all exist: a missing GPU provider
    is an error, never a silent move to the CPU."""
    if requested is None:
        return [p for p in PREFERRED if p in available]
    missing = [p for p in requested if p not in available]
    if missing:
        raise BackendUnavailableError(
            f"execution providers {missing} are not available in this onnxruntime "
            f"(available: {available}); for CUDA/TensorRT install onnxruntime-gpu on a GPU machine"
        )
    return list(requested)


# mattex's int8 files give every consumer its own Q/DQ pair; ONNX Runtime's common-subexpression
# elimination would merge them back, and a Q feeding two DQs is not converted to the uint8
# activations its x86 int8 convolutions need, leaving about a third of the convolutions in float
# (resnet50 HD, 2 threads: 1547 ms with it, 1439 ms without, the same mattes).
INT8_DISABLED_OPTIMIZERS = ["CommonSubexpressionElimination"]


def disabled_optimizers_for(precision: str | None) -> list[str]:
    """The ONNX Runtime optimizers a mattex file of `precision` runs without."""
    return INT8_DISABLED_OPTIMIZERS if precision == "int8" else []


def tensorrt_plugin_named_in(error: Exception) -> str | None:
    """The TensorRT plugin ONNX Runtime failed on (`trt.plugins:TopkLastDim(-1) is not a
    registered function/op`), if that is why it refused the file."""
    match = re.search(rf"{re.escape(PLUGIN_DOMAIN)}:(\w+)", str(error))
    return match[1] if match else None


class OnnxRuntimeBackend(Backend):
    kind = "onnxruntime"

    def __init__(
        self, path: str | Path, providers: list[str] | None = None, threads: int | None = None, spinning: bool = True
    ):
        import onnxruntime as ort

        super().__init__(path)
        chosen = choose_providers(providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = checked_threads(threads)
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:
            # Idle worker threads sleep instead of spinning: the CPU they would burn goes to
            # whatever runs beside the model (mattex run's decoding and encoding).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(self.path), options, providers=chosen)
            props = session.get_modelmeta().custom_metadata_map
            # The precision is only known from the file: reopen the few that need other settings.
            disabled = disabled_optimizers_for(props.get("precision"))
            if disabled:
                session = ort.InferenceSession(str(self.path), options, providers=chosen, disabled_optimizers=disabled)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            if exhausted_resource(e):
                raise  # the machine refused threads or memory, not the file: Matter names it
            plugin = tensorrt_plugin_named_in(e)
            if plugin:
                raise BackendUnavailableError(
                    f"{self.path.name} calls the TensorRT plugin {plugin} (exported with "
                    "`topk` plugin): it runs on TensorRT only (mattex build); export with `topk` onnx "
                    "for ONNX Runtime"
                ) from None
            raise ModelFileError(f"{self.path} is not a loadable ONNX model: {e}") from None
        self.session = session
        active = session.get_providers()
        # ONNX Runtime drops a GPU provider it cannot initialise and carries on: refuse that.
        dropped = [p for p in chosen if p in GPU_PROVIDERS and p not in active]
        if providers is not None and dropped:
            raise BackendUnavailableError(f"{dropped} failed to initialise (no usable GPU?); active: {active}")
        self.providers = active
        self._require_inputs([i.name for i in session.get_inputs()])
        self._read_metadata(dict(props))
        kind = session.get_inputs()[0].type  # tensor(float) / tensor(float16) / tensor(uint8)
        self.io_dtype = np.dtype({"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(kind, np.float32))
        self.output_names = [o.name for o in session.get_outputs()]

    @property
    def on_gpu(self) -> bool:
        return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(self.providers))

    def _run(self, src, bgr) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, {"src": src, "bgr": bgr})))
