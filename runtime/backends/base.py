"""The one interface every engine implements, and the checks made once for all of them.

A backend opens one model file (`__init__(path, **options)`), says what it takes and gives
(`io_dtype`, `output_names`, `profiles`, `metadata`), and implements `_run`: every output of the
file by name for inputs already checked. `run` and `__call__` are the template around it: the
names, dtypes, ranks and sizes of `src` and `bgr` (and an engine's profiles) are checked here,
before any backend sees them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from mattex.contract import INPUTS, OUTPUTS
from mattex.errors import BackendUnavailableError, ConfigError, ModelFileError
from mattex.metadata import ExportMetadata

from ..io_spec import Profile, check_inputs

THREADS_VARIABLE = "MATTEX_THREADS"


def default_threads() -> int | None:
    """The threads a CPU backend session uses when its caller names none: `MATTEX_THREADS`, for
    several mattex processes sharing one machine (server instances, test workers), each of which
    would otherwise start a thread per core and fight the others for them; unset, the backend's
    own choice (one per core)."""
    value = os.environ.get(THREADS_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{THREADS_VARIABLE}={value!r}: give a whole number of threads, 1 or more")
    return int(value)


class Backend(ABC):
    """One model file opened on one engine."""

    kind: str = "backend"  # the registry name
    takes_device_memory = False  # CUDA arrays (__cuda_array_interface__) in and out
    on_gpu = False  # runs the model on a GPU, where larger batches pay (a server stacks requests)
    # The arithmetic a float file runs at when the backend was asked for a lower one (OpenVINO's
    # bf16), which `mattex verify` holds to that precision's budget; None: the file's own.
    arithmetic: str | None = None

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.io_dtype: np.dtype = np.dtype(np.float32)
        self.output_names: list[str] = list(OUTPUTS)
        self.profiles: list[Profile] | None = None  # None: any batch and size
        self.metadata: ExportMetadata | None = None  # None: not a mattex export

    def run(self, src, bgr) -> dict:
        """Every output of the file by name (pha, fgr, and the debug outputs it has)."""
        check_inputs({"src": src, "bgr": bgr}, self.io_dtype, self.profiles)
        if not self.takes_device_memory and not (isinstance(src, np.ndarray) and isinstance(bgr, np.ndarray)):
            raise BackendUnavailableError(
                f"the {self.kind} backend takes numpy arrays; pass device memory to a TensorRT engine"
            )
        return self._run(src, bgr)

    def __call__(self, src, bgr):
        """(pha, fgr) for `src`, `bgr`."""
        outputs = self.run(src, bgr)
        return outputs["pha"], outputs["fgr"]

    @abstractmethod
    def _run(self, src, bgr) -> dict:
        """Every output by name for inputs `run` has checked."""

    # Helpers for the constructors of backends.
    def _require_inputs(self, names: list[str]) -> None:
        if list(names) != list(INPUTS):
            raise ModelFileError(f"{self.path.name} has inputs {list(names)}, not a mattex model {list(INPUTS)}")

    def _read_metadata(self, props: dict[str, str]) -> None:
        """The file's metadata_props as ExportMetadata (None for an ONNX file mattex did not
        export: the runtime still runs it when its inputs are src and bgr)."""
        self.metadata = ExportMetadata.of_file(props, self.path.name)

    @property
    def precision(self) -> str:
        return self.metadata.precision if self.metadata else "fp32"
