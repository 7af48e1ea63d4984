"""The one interface every engine implements, and the checks made once for all of them.

A backend opens one model file (`__init__(path, **options)`), says what it takes and gives
(`io_dtype`, `output_names`, `profiles`, `metadata`), and implements `_run`: every output of the
file by name for inputs already checked. `run` and `__call__` are the template around it: the
names, dtypes, ranks and sizes of `src` and `bgr` (and an engine's profiles) are checked here,
before any backend sees them.
"""

from __future__ import annotations

import errno
import numbers
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from mattex.contract import INPUTS, OUTPUTS
from mattex.errors import BackendUnavailableError, ConfigError, ModelFileError
from mattex.facts import FACTS
from mattex.metadata import ExportMetadata

from ..io_spec import Profile, check_inputs

THREADS_VARIABLE = "MATTEX_THREADS"
# The most threads a session may ask for, per core. Threads beyond the cores only take turns on
# them, so more never runs faster; a few per core are allowed (a benchmark may try it), while an
# unbounded number once took a whole machine down (MATTEX_THREADS=99999: ONNX Runtime started
# 32,431 threads, 16.8 GB, and no other process could fork). The C++ runtime holds the same
# number: both read it from mattex/shared_facts.json (mattex::kThreadsPerCore, generated).
THREADS_PER_CORE: int = FACTS["threads"]["per_core"]
_WHOLE_NUMBER_DIGITS = 9  # past this, a number of threads is out of range whatever the machine


def max_threads() -> int:
    """The most CPU threads a `threads` option or MATTEX_THREADS may ask for here:
    THREADS_PER_CORE per online core (os.cpu_count, sysconf's count, which C++ reads too)."""
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def threads_rule() -> str:
    """The rule every threads setting follows, in the words the C++ runtime uses too."""
    most = max_threads()
    return (
        f"give a whole number of threads from 1 to {most} "
        f"({THREADS_PER_CORE} per core, {most // THREADS_PER_CORE} cores here)"
    )


def checked_threads(threads: int | None) -> int | None:
    """A backend's `threads=` option: None (the default: MATTEX_THREADS, else the backend's
    choice) or a whole number 1..max_threads(); ConfigError naming the value otherwise."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or not 1 <= threads <= max_threads():
        raise ConfigError(f"threads={threads!r}: {threads_rule()}")
    return threads


def default_threads() -> int | None:
    """The threads a CPU backend session uses when its caller names none: `MATTEX_THREADS`, for
    several mattex processes sharing one machine (server instances, test workers), each of which
    would otherwise start a thread per core and fight the others for them; unset, the backend's
    own choice (one per core). Only ASCII digits count ('٣' is not 3), as in C++."""
    value = os.environ.get(THREADS_VARIABLE, "").strip(" \t\n\r")
    if not value:
        return None
    # Leading zeros dropped so that the length bounds the number before it is converted.
    number = value.lstrip("0") or "0"
    digits = value.isascii() and value.isdigit()
    threads = int(number) if digits and len(number) <= _WHOLE_NUMBER_DIGITS else -1
    if not 1 <= threads <= max_threads():
        raise ConfigError(f"{THREADS_VARIABLE}='{value}': {threads_rule()}")
    return threads


def exhausted_resource(error: BaseException) -> str | None:
    """The resource an exception says the machine could not give: "threads" (EAGAIN, "Resource
    temporarily unavailable": a process or thread limit reached), "memory" (MemoryError, ENOMEM,
    a C++ std::bad_alloc), else None; as the C++ runtime's detail::exhaustedResource. Backends let
    such errors through, for Matter to name as ResourceError rather than blame the file."""
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, OSError) and error.errno in (errno.EAGAIN, errno.ENOMEM):
        return "threads" if error.errno == errno.EAGAIN else "memory"
    said = str(error)  # engines wrap what the system said in their own exception types
    if os.strerror(errno.EAGAIN) in said:
        return "threads"
    if any(words in said for words in (os.strerror(errno.ENOMEM), "bad_alloc", "bad allocation")):
        return "memory"
    return None


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
