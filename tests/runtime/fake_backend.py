"""A backend written the way a new engine's module is: a class deriving from the base, which
opens the file and implements `_run`. It runs ONNX Runtime's CPU provider under another name, so
that tests can register a backend mattex does not ship and run it through every command."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mattex.exporter.build.backends import BuiltEngine, EngineBuild
from mattex.runtime.backends.base import Backend


class FakeBackend(Backend):
    kind = "fake"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._require_inputs([i.name for i in self.session.get_inputs()])
        self._read_metadata(dict(self.session.get_modelmeta().custom_metadata_map))
        kind = self.session.get_inputs()[0].type
        self.io_dtype = np.dtype({"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(kind, np.float32))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.calls = 0

    def _run(self, src, bgr) -> dict:
        self.calls += 1
        return dict(zip(self.output_names, self.session.run(self.output_names, {"src": src, "bgr": bgr})))


class FakeEngineBackend(FakeBackend):
    """An engine backend as a new engine's module would be: it opens `.engine` files, whose
    sidecar names it, checks the plan against the sidecar, and runs it. Its "plan" is an ONNX
    file's bytes, run on ONNX Runtime's CPU provider."""

    kind = "fake-engine"

    def __init__(self, path: str | Path, sidecar=None) -> None:
        import onnxruntime as ort

        from mattex.runtime.sidecar import check_plan, load_sidecar

        Backend.__init__(self, path)
        self.sidecar = sidecar or load_sidecar(path)
        check_plan(path, self.sidecar)
        self.session = ort.InferenceSession(self.path.read_bytes(), providers=["CPUExecutionProvider"])
        self._require_inputs([i.name for i in self.session.get_inputs()])
        self._read_metadata(self.sidecar.export_metadata)
        self.profiles = self.sidecar.profiles
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.calls = 0


class FakeEngineBuild(EngineBuild):
    """The build of the fake engine backend, beside its runner as a new engine's would be: its
    "plan" is the ONNX file's bytes, its version its own, and it needs no GPU. `mattex build
    --backend NAME` and, ranked first, `mattex export` build with it."""

    version = "fake-1.0"

    def rank(self) -> int | None:
        return -1  # before every TensorRT here

    def build(self, toolkit, onnx_path, facts, profiles, options, log) -> BuiltEngine:
        import onnxruntime as ort

        plan = Path(onnx_path).read_bytes()
        session = ort.InferenceSession(plan, providers=["CPUExecutionProvider"])
        kinds = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}

        def io(tensor, mode):
            return {"name": tensor.name, "mode": mode, "dtype": kinds[tensor.type], "shape": list(tensor.shape)}

        tensors = [io(t, "input") for t in session.get_inputs()] + [io(t, "output") for t in session.get_outputs()]
        log(f"building {Path(onnx_path).name} with {self.name} {self.version}")
        fields = {"tensorrt_version": self.version, "gpu_name": None, "compute_capability": None}
        return BuiltEngine(plan, tensors, 0.0, fields)

    def summary(self, sidecar) -> str:
        return f"with {self.name} {sidecar.tensorrt_version} (no GPU)"
