"""Triton's Python-backend model of `mattex serve`: PyTriton's own proxy model, whose failed
batches are answered as mattex's answers say (answers.py), not with PyTriton's 500 and traceback.

Runs in Triton's Python stub, never in mattex's process. serve() writes it into PyTriton's model
store as `<name>/1/model.py`, PyTriton's model beside it as `pytriton_model.py` and answers.py as
`mattex_answers.py` (the stub imports the version folder as a package).
"""

import triton_python_backend_utils as pb_utils

from .mattex_answers import INVALID_ARG, unframe
from .pytriton_model import TritonPythonModel as PyTritonModel


class TritonPythonModel(PyTritonModel):
    def execute(self, triton_requests):
        try:
            return super().execute(triton_requests)
        except pb_utils.TritonModelException as e:  # the batch failed: each request gets the answer
            code, message = unframe(str(e))
            if code != INVALID_ARG:  # the server's own failure: in full in Triton's log too
                pb_utils.Logger.log_error(f"mattex serve: a batch failed: {e}")
            error = pb_utils.TritonError(message, getattr(pb_utils.TritonError, code))
            return [pb_utils.InferenceResponse(error=error) for _ in triton_requests]
