"""Triton's Python-backend model of `mattex serve`: PyTriton's own proxy model, whose failed
batches are answered as mattex's answers say (answers.py), not with PyTriton's 500 and traceback.

Runs in Triton's Python stub, never in mattex's process. serve() writes it into PyTriton's model
store as `<name>/1/model.py`, PyTriton's model beside it as `pytriton_model.py` and answers.py as
`mattex_answers.py` (the stub imports the version folder as a package).
"""

import json
import pathlib
import time

import triton_python_backend_utils as pb_utils

from .communication import get_config_from_handshake_server  # PyTriton's, copied beside its model
from .mattex_answers import INVALID_ARG, unframe
from .pytriton_model import TritonPythonModel as PyTritonModel

FIRST_INSTANCE_WAIT_S = 60.0


class TritonPythonModel(PyTritonModel):
    def initialize(self, args):
        _await_first_instance(args)
        super().initialize(args)

    def execute(self, triton_requests):
        try:
            return super().execute(triton_requests)
        except pb_utils.TritonModelException as e:  # the batch failed: each request gets the answer
            code, message = unframe(str(e))
            if code != INVALID_ARG:  # the server's own failure: in full in Triton's log too
                pb_utils.Logger.log_error(f"mattex serve: a batch failed: {e}")
            error = pb_utils.TritonError(message, getattr(pb_utils.TritonError, code))
            return [pb_utils.InferenceResponse(error=error) for _ in triton_requests]


def _await_first_instance(args) -> None:
    """PyTriton's model instances after the first read their configuration from the first one's
    handshake socket, which Triton starts at the same time, and give it 1 s: on a loaded machine
    the first one is later (its socket missing, or bound and not yet listening: "Connection
    refused") and the model fails to load, so `--instances 2` failed to start now and then. Wait
    here until it answers (a handshake is only a read of the configuration); past the limit,
    PyTriton's own attempt says what is wrong."""
    name = args.get("model_instance_name") or ""
    if name == "_".join(name.split("_")[:-1] + ["0"]):  # the first instance: it serves the handshake
        return
    workspace = json.loads(args["model_config"])["parameters"]["workspace-path"]["string_value"]
    handshake = pathlib.Path(workspace) / f"{args['model_name']}-config.sock"
    deadline = time.monotonic() + FIRST_INSTANCE_WAIT_S
    while time.monotonic() < deadline:
        try:
            get_config_from_handshake_server(handshake)
            return
        except (OSError, ValueError):  # TimeoutError and ConnectionRefusedError are OSErrors
            time.sleep(0.05)
