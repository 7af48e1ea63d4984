"""Triton's Python backend running mattex's runtime, for any Triton deployment.

`mattex triton-repo MODEL --backend python` copies this file to `<name>/1/model.py` beside the
file it serves (`model.onnx`, or `model.engine` with its sidecar) and names that file in
config.pbtxt's `mattex_model` parameter. Each model instance opens it with
`mattex.runtime.Matter` (ONNX Runtime or OpenVINO for .onnx, TensorRT or TensorRT for RTX for an
engine), so the Python that runs Triton's Python-backend stub needs mattex's runtime installed
(`pip install mattex`). Each request is matted on its own: requests of other sizes can share a
dynamic batch, and a bad one fails alone with the runtime's typed error.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from mattex.runtime import Matter

        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        self.matter = Matter.open(folder / config["parameters"]["mattex_model"]["string_value"])
        self.outputs = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}

    def execute(self, requests):
        from mattex.errors import MattexError

        responses = []
        for request in requests:
            try:
                src = pb_utils.get_input_tensor_by_name(request, "src").as_numpy()
                bgr = pb_utils.get_input_tensor_by_name(request, "bgr").as_numpy()
                result = self.matter.run(src, bgr)
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(result[name], dtype=dtype))
                    for name, dtype in self.outputs.items()
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except MattexError as e:  # a bad request fails alone, naming the problem
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(e).__name__}: {e}")))
        return responses
