"""What the serve tests share: free ports, a real `mattex serve` launched and watched until its
model is ready, and what a stopped server must not leave behind (processes, shared memory,
temporary files)."""

import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient

H, W = 96, 128  # the frames the serve tests send


def free_ports(count: int) -> list[int]:
    """`count` free ports that nothing else takes before the server binds them: outside the
    kernel's ephemeral range, where outgoing connections draw their local ports (a port picked
    there and freed can be taken by a client connection of the other worker before Triton binds
    it, and the server never starts), in a block of this xdist worker's own."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(n) for n in f.read().split())
    below, above = range(10000, low), range(high + 1, 65536)
    ports = below if len(below) >= len(above) else above
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    block = ports[worker * len(ports) // workers : (worker + 1) * len(ports) // workers]
    found = []
    for port in random.sample(block, min(200, len(block))):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise AssertionError(f"no {count} free ports outside the ephemeral range {low}-{high} in this worker's block")


def http_ready(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=1).status == 200
    except OSError:  # refused, or 400 (HTTPError): not ready
        return False


def grpc_ready(client, model: str | None = None) -> bool:
    try:
        return client.is_model_ready(model) if model else client.is_server_ready()
    except Exception:  # InferenceServerException: refused or not up yet
        return False


def watch_readiness(http: str, grpc: str, process: subprocess.Popen, timeout_s: float = 90) -> list[tuple]:
    """Poll server and model readiness over HTTP and gRPC every 50 ms from launch until the model
    is ready and has stayed so for a second; returns the timeline: (seconds, server ready over
    HTTP, model ready over HTTP, server ready over gRPC, model ready over gRPC) at each change.
    The server is asked first, the model second: a model never becomes unready while starting,
    so "server ready, model not" is a real moment, not an artefact of the order."""
    # Reconnecting every 50-100 ms, as the polls come: gRPC's default backoff (1 s, growing) saw the
    # server ready up to 4 s after it was.
    backoff = [(f"grpc.{kind}_reconnect_backoff_ms", ms) for kind, ms in (("initial", 50), ("min", 50), ("max", 100))]
    client = grpcclient.InferenceServerClient(grpc.removeprefix("grpc://"), channel_args=backoff)
    started, timeline, ready_since = time.monotonic(), [], None
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            said = process.stderr.read()[-3000:] if process.stderr else "(its stderr is in its logs folder)"
            raise AssertionError(f"the server exited with {process.returncode}:\n{said}")
        state = (
            http_ready(f"{http}/v2/health/ready"),
            http_ready(f"{http}/v2/models/matte/ready"),
            grpc_ready(client),
            grpc_ready(client, "matte"),
        )
        now = time.monotonic() - started
        if not timeline or state != timeline[-1][1:]:
            timeline.append((round(now, 2), *state))
        ready_since = (ready_since or now) if all(state) else None
        if ready_since is not None and now - ready_since >= 1:
            client.close()
            return timeline
        time.sleep(0.05)
    raise AssertionError(f"the server was not ready in {timeout_s} s: {timeline}")


def leftovers(tmp, server_pids: set[int] | None = None) -> set:
    """Shared memory segments and files in the server's temporary folder; ONNX Runtime's `.ses`
    (a session id its import writes to the temporary folder and keeps) is not a leftover, nor a
    PyTriton segment (`pytrtion<pid>-...`) of a process outside `server_pids`, nor one a running
    process outside them maps or holds open (another test's server, running on the other worker:
    /dev/shm is the machine's)."""
    held = set() if server_pids is None else shared_memory_held(exclude=server_pids)

    def ours(name: str) -> bool:
        match = re.match(r"pytrtion(\d+)-", name)
        return server_pids is None or (name not in held and (match is None or int(match[1]) in server_pids))

    return {n for n in os.listdir("/dev/shm") if ours(n)} | {p.name for p in tmp.iterdir() if p.name != ".ses"}


def shared_memory_held(pids: set[int] | None = None, exclude: set[int] = frozenset()) -> set[str]:
    """The /dev/shm segments that the running processes `pids` (every one by default, less
    `exclude`) map or hold open."""
    names = set()
    for pid in pids if pids is not None else map(int, filter(str.isdigit, os.listdir("/proc"))):
        if pid in exclude:
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                names |= {
                    line.split("/dev/shm/", 1)[1].split(" (deleted)")[0].rstrip() for line in f if "/dev/shm/" in line
                }
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("/dev/shm/"):
                    names.add(target.removeprefix("/dev/shm/").split(" (deleted)")[0])
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return names


def process_tree(pid: int) -> set[int]:
    """A process and all its descendants."""
    from mattex.serving.processes import descendants

    return {pid} | descendants(pid)


MATTEX = [sys.executable, "-m", "mattex.cli.main"]


def launch(
    file,
    tmp,
    *options: str,
    start_new_session: bool = False,
    ports: list[int] | None = None,
    mattex: list[str] = MATTEX,
    logs=None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, dict]:
    """`mattex serve FILE OPTIONS` on `ports` (http, grpc, metrics; free ones by default), its
    temporary files in `tmp`; returns the process and its URLs once the model is ready (with the
    readiness timeline). `mattex`: the command that runs mattex's CLI. `logs`: a folder for its
    stdout and stderr (a server that logs much would fill a pipe no one reads, and block). `env`:
    variables to set for it."""
    http_port, grpc_port, metrics_port = ports or free_ports(3)
    command = [*mattex, "serve", str(file)]
    command += ["--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)]
    out, err = (
        (subprocess.PIPE, subprocess.PIPE) if logs is None else (open(logs / "stdout", "w"), open(logs / "stderr", "w"))
    )
    process = subprocess.Popen(
        command + list(options),
        stdout=out,
        stderr=err,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp), **(env or {})},
        start_new_session=start_new_session,
    )
    if logs is not None:  # the server has its own copies
        out.close()
        err.close()
    urls = {
        "http": f"http://127.0.0.1:{http_port}",
        "grpc": f"grpc://127.0.0.1:{grpc_port}",
        "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
    }
    try:
        urls["readiness"] = watch_readiness(urls["http"], urls["grpc"], process)
    except BaseException as e:
        process.kill()
        out, err = process.communicate()
        if logs is not None:
            out, err = (logs / "stdout").read_text(), (logs / "stderr").read_text()
        if isinstance(e, AssertionError):  # what the server printed says why
            raise AssertionError(f"{e}\nits stdout ends:\n{out[-3000:]}\nits stderr ends:\n{err[-3000:]}") from None
        raise
    return process, urls


def survivors(pids: set[int], grace_s: float = 10) -> set[int]:
    """Those of `pids` still running `grace_s` after the server's exit at the latest (helpers
    such as multiprocessing's resource tracker end just after their parent; zombies, dead but
    not yet reaped by init, do not run)."""
    from mattex.serving.processes import running

    deadline = time.monotonic() + grace_s
    while {p for p in pids if running(p)} and time.monotonic() < deadline:
        time.sleep(0.1)
    return {p for p in pids if running(p)}


def tritons_started_here() -> set[int]:
    """The Triton processes (server, Python stubs) of a serve() run by this process: their command
    lines name its workspace, named after this process (a server in a subprocess, as the module's,
    has its own pid there)."""
    from mattex.serving.processes import command_line, workspace_prefix

    marker = workspace_prefix(os.getpid()).encode()
    return {p for p in process_tree(os.getpid()) if any(marker in arg for arg in command_line(p))}


def frames(seed: int, batch: int = 1, h: int = H, w: int = W):
    rng = np.random.default_rng(seed)
    bgr = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    src = bgr.copy()
    src[:, h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return src, bgr
