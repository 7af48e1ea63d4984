"""`mattex serve`: an exported file behind NVIDIA's Triton Inference Server, through PyTriton.

Triton serves HTTP and gRPC, batches requests dynamically, runs several model instances, answers
health and Prometheus metrics; PyTriton runs a real `tritonserver` whose Python backend hands each
batch to this process, where `mattex.runtime.Matter` mattes it on whatever backend it picks.

The model takes `src` and `bgr` as uint8 RGB frames (B, H, W, 3) (a quarter of float frames'
bytes on the wire) or, with `inputs="float"`, float32 (B, 3, H, W) in [0, 1]; it returns `pha`
(B, 1, H, W) and `fgr` (B, 3, H, W) as uint8 (0-255, rounded) or float32 in [0, 1].
"""

from __future__ import annotations

import os
import shutil
import signal
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mattex.contract import INPUTS, OUTPUTS
from mattex.errors import BackendUnavailableError, ConfigError, InputShapeError, InputValueError
from mattex.extras import require
from mattex.serving import answers, limits
from mattex.serving.limits import check_address, check_port, check_whole
from mattex.serving.processes import (
    StartWatch,
    TritonExited,
    TritonProcesses,
    remove_dead_workspaces,
    workspace_name,
)

TENSOR_KINDS = ("uint8", "float")


@dataclass(frozen=True)
class ServeConfig:
    model: Path
    name: str = "matte"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    address: str = "127.0.0.1"
    max_batch: int = limits.DEFAULT_MAX_BATCH
    max_queue_delay_us: int = 2000
    dynamic_batching: bool = True
    instances: int = 1
    backend: str | None = None  # Matter.open's choice when None
    inputs: str = "uint8"
    outputs: str = "uint8"
    exit_timeout_s: int = 3  # how long Triton waits for in-flight requests when stopping
    # Overload: requests beyond max_queue_size waiting, or waiting longer than queue_timeout_us,
    # are rejected by Triton with its error (0: no limit, Triton's default).
    max_queue_size: int = 0
    queue_timeout_us: int = 0
    # The largest frame a request may carry, in pixels (H x W; 0: no limit): 4K by default.
    max_pixels: int = 3840 * 2160

    def validate(self) -> None:
        for option, value in (("inputs", self.inputs), ("outputs", self.outputs)):
            if value not in TENSOR_KINDS:
                raise ConfigError(f"unknown `{option}` {value!r}; choose one of {', '.join(TENSOR_KINDS)}")
        check_whole("max_batch", self.max_batch, 1, limits.MAX_BATCH)
        check_whole("instances", self.instances, 1, limits.max_serving_instances(), " (twice the cores here)")
        check_whole("max_queue_delay_us", self.max_queue_delay_us, 0, limits.MAX_QUEUE_DELAY_US)
        check_whole("max_queue_size", self.max_queue_size, 0, limits.MAX_QUEUE_SIZE, " (0: no limit)")
        check_whole("queue_timeout_us", self.queue_timeout_us, 0, limits.MAX_QUEUE_TIMEOUT_US, " (0: no limit)")
        check_whole("max_pixels", self.max_pixels, 0, limits.MAX_PIXELS, " (0: no limit)")
        check_whole("exit_timeout_s", self.exit_timeout_s, 0, limits.MAX_EXIT_TIMEOUT_S)
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        for option, port in zip(("http_port", "grpc_port", "metrics_port"), ports):
            check_port(option, port)
        if len(set(ports)) != 3:
            raise ConfigError(f"`http_port`, `grpc_port` and `metrics_port` must be three distinct ports, got {ports}")
        check_address("address", self.address)
        if not self.name or "/" in self.name:
            raise ConfigError(f"`name` {self.name!r} is not a Triton model name")

    @property
    def urls(self) -> dict[str, str]:
        host = self.address
        return {
            "http": f"http://{host}:{self.http_port}",
            "grpc": f"grpc://{host}:{self.grpc_port}",
            "metrics": f"http://{host}:{self.metrics_port}/metrics",
        }


def check_request_size(src: np.ndarray, inputs: str, max_pixels: int) -> None:
    """InputShapeError for frames larger than the server takes (`max_pixels`, H x W)."""
    from mattex.errors import InputShapeError

    height, width = src.shape[1:3] if inputs == "uint8" else src.shape[2:4]
    if max_pixels and height * width > max_pixels:
        raise InputShapeError(
            f"frames of {height}x{width} ({height * width} pixels) are larger than this server takes "
            f"({max_pixels} pixels, `max_pixels`)"
        )


def matte_batch(matter, src: np.ndarray, bgr: np.ndarray, inputs: str, outputs: str) -> dict[str, np.ndarray]:
    """One batch through `matter`: uint8 frames (B, H, W, 3) or floats (B, 3, H, W) in, pha and
    fgr out as uint8 or float32. Bad frames raise the runtime's typed errors."""
    result = matter.matte_frames(src, bgr) if inputs == "uint8" else matter.run(src, bgr)
    out = {}
    for name in OUTPUTS:
        value = np.asarray(result[name], dtype=np.float32)
        out[name] = np.clip(value * 255 + 0.5, 0, 255).astype(np.uint8) if outputs == "uint8" else value
    return out


def open_for_serving(config: ServeConfig):
    """`Matter.open` as a server opens files: the backend shares the cores with Triton, the other
    instances and the clients, and takes its co-runner options (ONNX Runtime: idle threads
    sleep between batches)."""
    from mattex.runtime import Matter

    return Matter.open(config.model, sharing_cores=True, **({"backend": config.backend} if config.backend else {}))


# The client's mistakes, as the runtime's checks and check_request_size name them: answered
# INVALID_ARG with their message. Anything else raised while matting is the server's own failure.
CLIENT_ERRORS = (InputShapeError, InputValueError, ConfigError)


def failure_answer(error: Exception) -> str:
    """The framed answer (serving/answers.py) to a batch that raised `error`: the typed message
    for a client's mistake; for the server's own failure its type alone (the traceback, with the
    server's paths, goes to the server's log, never to the client)."""
    if isinstance(error, CLIENT_ERRORS):
        return answers.framed(answers.INVALID_ARG, f"{type(error).__name__}: {error}")
    return answers.framed(answers.INTERNAL, answers.SERVER_FAILED.format(type(error).__name__))


def infer_function(matter, config: ServeConfig) -> Callable:
    """PyTriton's inference callable for one model instance: the requests of a dynamic batch in,
    one dict of outputs per request out. GPU backends get the requests stacked into one call;
    CPU backends one call each. A bad request fails with the runtime's message (failure_answer);
    the server goes on (Triton batches only requests of one shape, so a batch is bad or good as a
    whole)."""
    from pytriton.exceptions import PyTritonBadParameterError

    # Calls gain from a larger batch on a GPU only. On the CPU, one call of 4 frames took as long
    # as 4 calls of one (ONNX Runtime, 720p, 205-221 ms a frame either way), and stacking
    # requests costs a copy of every frame in and out.
    stack = matter.backend.on_gpu

    def infer(requests: list) -> list[dict[str, np.ndarray]]:
        try:
            for r in requests:
                check_request_size(r["src"], config.inputs, config.max_pixels)
            if not stack or len(requests) == 1:
                return [matte_batch(matter, r["src"], r["bgr"], config.inputs, config.outputs) for r in requests]
            sizes = [len(r["src"]) for r in requests]
            src = np.concatenate([r["src"] for r in requests])
            bgr = np.concatenate([r["bgr"] for r in requests])
            out = matte_batch(matter, src, bgr, config.inputs, config.outputs)
            ends = np.cumsum(sizes)
            return [{n: v[end - size : end] for n, v in out.items()} for size, end in zip(sizes, ends)]
        except CLIENT_ERRORS as e:  # named to the client; the server goes on
            raise PyTritonBadParameterError(failure_answer(e)) from None
        except Exception as e:  # chained: PyTriton logs this traceback in full, with e's
            raise RuntimeError(failure_answer(e)) from e

    return infer


def tensors(config: ServeConfig):
    from pytriton.model_config import Tensor

    frame = (np.uint8, (-1, -1, 3)) if config.inputs == "uint8" else (np.float32, (3, -1, -1))
    out_dtype = np.uint8 if config.outputs == "uint8" else np.float32
    inputs = [Tensor(name=name, dtype=frame[0], shape=frame[1]) for name in INPUTS]
    outputs = [
        Tensor(name="pha", dtype=out_dtype, shape=(1, -1, -1)),
        Tensor(name="fgr", dtype=out_dtype, shape=(3, -1, -1)),
    ]
    return inputs, outputs


def embeddable_python() -> str:
    """The folder of this interpreter's shared libpython, which Triton's Python-backend stub
    embeds (PyTriton ships a stub per Python version). BackendUnavailableError for a Python
    built without one."""
    libdir, version = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDVERSION")
    if not libdir or not (Path(libdir) / f"libpython{version}.so.1.0").exists():
        raise BackendUnavailableError(
            f"Triton's Python backend embeds libpython{version}.so, and this Python has none (it was built "
            "without --enable-shared): serve from a Python that has it, e.g. pyenv's builds"
        )
    return libdir


def serve(config: ServeConfig, on_ready: Callable[[dict, str], None] = lambda urls, backend: None) -> None:
    """Open the model (one Matter per instance), start Triton and serve until interrupted
    (Ctrl-C, or SIGTERM through the CLI), then stop it within `exit_timeout_s`. `on_ready` gets
    the URLs and the backend that mattes."""
    require("serve", "mattex serve")
    config.validate()
    from pytriton.constants import PYTRITON_HOME
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy
    from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy, TritonSecurityConfig

    remove_dead_workspaces(PYTRITON_HOME)  # a server killed outright left its own
    for option in ("http_port", "grpc_port", "metrics_port"):
        _check_port_free(config.address, getattr(config, option), option)
    # The stub must load this interpreter's libpython, not another of the same version that the
    # system's loader would find first (Debian's python3.11 beside pyenv's, for one).
    libdir = embeddable_python()
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
    matters = [open_for_serving(config) for _ in range(config.instances)]
    inputs, outputs = tensors(config)
    queue = QueuePolicy(max_queue_size=config.max_queue_size, default_timeout_microseconds=config.queue_timeout_us)
    batcher = (
        DynamicBatcher(max_queue_delay_microseconds=config.max_queue_delay_us, default_queue_policy=queue)
        if config.dynamic_batching
        else None
    )
    model_config = ModelConfig(max_batch_size=config.max_batch, batcher=batcher, batching=True)
    triton_config = TritonConfig(
        http_address=config.address,
        http_port=config.http_port,
        grpc_address=config.address,
        grpc_port=config.grpc_port,
        metrics_address=config.address,
        metrics_port=config.metrics_port,
        exit_timeout_secs=config.exit_timeout_s,
        log_verbose=0,
    )
    # PyTriton guards these APIs with a token; statistics (per-model counts, batch sizes) stay open
    # beside the Prometheus metrics, the ones that change the server stay guarded.
    security = TritonSecurityConfig(restricted_endpoints=["shared-memory", "model-repository", "trace", "logging"])
    # Ready only when the model is: PyTriton's default starts Triton, which reports ready with no
    # model, and then loads the model into it (a window where /v2/health/ready says 200 and
    # inference fails). With a local model store, bind() writes the model before Triton starts,
    # Triton loads it at startup, and its strict readiness holds ready back until then.
    policy = TritonLifecyclePolicy(launch_triton_on_startup=False, local_model_store=True)
    # A workspace of a known name: every process of this Triton has it in its command line.
    workspace = PYTRITON_HOME / workspace_name(os.getpid())
    try:
        triton = Triton(
            config=triton_config, workspace=workspace, security_config=security, triton_lifecycle_policy=policy
        )
    except Exception as e:  # PyTriton's own errors: ports taken, binary missing
        raise BackendUnavailableError(f"Triton did not start: {e}") from None
    processes = TritonProcesses(workspace)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with triton:
            triton.bind(
                config.name,
                [infer_function(m, config) for m in matters],
                inputs=inputs,
                outputs=outputs,
                config=model_config,
                strict=True,
            )
            answer_as_mattex(workspace / "model-store" / config.name / "1")
            _start(triton, config.name, processes)
            on_ready(config.urls, matters[0].kind)
            try:
                while triton.is_alive():
                    time.sleep(0.5)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the CLI
                pass
            finally:
                # A second signal (a second Ctrl-C, a container's repeated stop) must not cut the
                # cleanup short: it would leave PyTriton's shared memory and model store behind.
                for signum in handlers:
                    signal.signal(signum, signal.SIG_IGN)
                processes.scan()
    finally:
        processes.stop_survivors()
        for signum, handler in handlers.items():  # a program that serves, then goes on, keeps its Ctrl-C
            signal.signal(signum, handler)


def answer_as_mattex(version: Path) -> None:
    """Put mattex's model (triton_proxy_model.py) in place of PyTriton's in the model version
    folder that bind() wrote, PyTriton's kept beside it, before Triton starts and loads it: failed
    requests then get mattex's answers (answers.py), not PyTriton's 500 with tracebacks."""
    here = Path(__file__).parent
    (version / "model.py").rename(version / "pytriton_model.py")
    shutil.copyfile(here / "answers.py", version / "mattex_answers.py")
    shutil.copyfile(here / "triton_proxy_model.py", version / "model.py")


def _start(triton, name: str, processes: TritonProcesses) -> None:
    """`triton.run()`, which returns once Triton has loaded the model; BackendUnavailableError as
    soon as Triton exits instead. Triton's processes are recorded all along: a Ctrl-C to the
    process group stops Triton itself, which orphans a Python stub it gives up on before this
    process knows."""
    try:
        with StartWatch(processes):
            triton.run()
    except TritonExited:
        raise BackendUnavailableError(
            f"Triton exited while loading the model {name!r}; its log above says why (a port taken since "
            "mattex checked it, for one)"
        ) from None
    except Exception as e:  # never a live server without its model
        raise BackendUnavailableError(f"Triton did not load the model {name!r}: {e}") from None


def _check_port_free(address: str, port: int, option: str) -> None:
    """ConfigError naming the option when `port` is taken (Triton would fail to bind it later,
    with a message buried in its log), or `address` is no address of this machine. Checked as
    Triton binds, with SO_REUSEADDR: a port is taken only where something listens on it or holds
    it bound, not where the connections of a server that just stopped or crashed linger in
    TIME_WAIT (Triton binds those at once; a plain bind would refuse them for a minute)."""
    import errno
    import socket

    try:
        family, kind, protocol, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ConfigError(f"`address` {address!r} is not a name this machine resolves: {e.strerror}") from None
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"`address` {address} is not an address of this machine: {e.strerror}") from None
            raise ConfigError(f"port {port} on {address} is not free (`{option}`): {e.strerror}") from None
