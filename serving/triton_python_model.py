"""Triton's Python backend running mattex's runtime, for any Triton deployment.

`mattex triton-repo MODEL --backend python` copies this file to `<name>/1/model.py` beside the
file it serves (`model.onnx`, or `model.engine` with its sidecar) and names that file in
config.pbtxt's `mattex_model` parameter. Each model instance opens it with
`mattex.runtime.Matter` (ONNX Runtime or OpenVINO for .onnx, TensorRT or TensorRT for RTX for an
engine), so the Python that runs Triton's Python-backend stub needs mattex's runtime installed
(`pip install mattex`). Each request is matted on its own: requests of other sizes can share a
dynamic batch, and a bad one fails alone: a client's mistake with INVALID_ARG (HTTP 400, gRPC
INVALID_ARGUMENT) and the runtime's typed message, a failure of the server's own with INTERNAL
naming its type alone (its traceback goes to Triton's log, never to the client), as `mattex serve`
answers (serving/answers.py).
"""

import json
import traceback
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
        from mattex.serving.answers import SERVER_FAILED
        from mattex.serving.server import CLIENT_ERRORS

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
            except CLIENT_ERRORS as e:  # the client's mistake, named
                error = pb_utils.TritonError(f"{type(e).__name__}: {e}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as e:  # the server's own failure: in full in Triton's log only
                pb_utils.Logger.log_error(f"mattex: a request failed: {traceback.format_exc()}")
                error = pb_utils.TritonError(SERVER_FAILED.format(type(e).__name__), pb_utils.TritonError.INTERNAL)
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses
