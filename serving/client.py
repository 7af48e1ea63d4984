"""A client for a matting model on Triton (`mattex serve`, or a `mattex triton-repo` repository):
frames in, mattes out, over HTTP or gRPC with NVIDIA's `tritonclient`.

    from mattex.serving.client import RemoteMatter

    matter = RemoteMatter("http://127.0.0.1:8000", "matte")
    out = matter.matte_frames(src, bgr)  # uint8 (B, H, W, 3) RGB each; out["pha"]: (B, 1, H, W) in [0, 1]

It has the runtime `Matter`'s `matte_frames`, so `mattex run --server URL` runs its whole pipeline
(decode, matte, encode) against a server.
"""

from __future__ import annotations

import threading
from urllib.parse import urlparse

import numpy as np

from mattex.contract import INPUTS, OUTPUTS
from mattex.errors import BackendUnavailableError, ConfigError
from mattex.extras import require

TRITON_DTYPES = {"UINT8": np.uint8, "FP32": np.float32, "FP16": np.float16}


class RemoteMatter:
    """One model on a Triton server. `url`: http://host:port or grpc://host:port."""

    kind = "triton"

    def __init__(self, url: str, model: str = "matte", timeout_s: float = 60.0) -> None:
        require("serve", "a Triton client")
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "grpc") or not parsed.hostname or not parsed.port:
            raise ConfigError(f"`server` URL {url!r}: expected http://host:port or grpc://host:port")
        self.url, self.model, self.protocol = url, model, parsed.scheme
        if self.protocol == "http":
            import tritonclient.http as client
        else:
            import tritonclient.grpc as client
        self._client_module = client
        self._address = f"{parsed.hostname}:{parsed.port}"
        self._options = {"network_timeout": timeout_s} if self.protocol == "http" else {}
        # tritonclient's HTTP client runs on gevent, whose connections belong to the thread that
        # made them (mattex run infers in a thread of its own): one client per thread.
        self._local = threading.local()
        try:
            ready = self.client.is_model_ready(model)
        except Exception as e:  # tritonclient's connection errors differ by protocol
            raise BackendUnavailableError(f"no Triton server answers at {url}: {e}") from None
        if not ready:
            raise BackendUnavailableError(f"the Triton server at {url} has no ready model {model!r}")
        metadata = self.client.get_model_metadata(model)
        metadata = metadata if isinstance(metadata, dict) else _grpc_metadata(metadata)
        self.inputs = {t["name"]: t["datatype"] for t in metadata["inputs"]}
        self.output_names = [t["name"] for t in metadata["outputs"]]
        if set(self.inputs) != set(INPUTS) or not set(OUTPUTS) <= set(self.output_names):
            raise BackendUnavailableError(
                f"model {model!r} at {url} is not a matting model: inputs "
                f"{sorted(self.inputs)}, outputs {self.output_names}"
            )
        self.io_dtype = np.dtype(TRITON_DTYPES[self.inputs["src"]])

    @property
    def client(self):
        made = getattr(self._local, "client", None)
        if made is None:
            made = self._local.client = self._client_module.InferenceServerClient(self._address, **self._options)
        return made

    def infer(self, src: np.ndarray, bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Every output as the server returns it, for inputs in the model's own format."""
        client = self._client_module
        tensors = []
        for name, value in (("src", src), ("bgr", bgr)):
            tensor = client.InferInput(name, list(value.shape), self.inputs[name])
            tensor.set_data_from_numpy(np.ascontiguousarray(value))
            tensors.append(tensor)
        outputs = [client.InferRequestedOutput(name) for name in self.output_names]
        result = self.client.infer(self.model, tensors, outputs=outputs)
        return {name: result.as_numpy(name) for name in self.output_names}

    def matte_frames(self, src: np.ndarray, bgr: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 RGB frames (B, H, W, 3) in; every output as float32 in [0, 1] out, however the
        server sends it (uint8 or float)."""
        from mattex.runtime.io_spec import frames_to_input

        result = self.infer(frames_to_input(src, self.io_dtype), frames_to_input(bgr, self.io_dtype))
        return {
            name: (value.astype(np.float32) / 255 if value.dtype == np.uint8 else value.astype(np.float32))
            for name, value in result.items()
        }

    def close(self) -> None:
        self.client.close()


def _grpc_metadata(message) -> dict:
    return {
        "inputs": [{"name": t.name, "datatype": t.datatype} for t in message.inputs],
        "outputs": [{"name": t.name, "datatype": t.datatype} for t in message.outputs],
    }
