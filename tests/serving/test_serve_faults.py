"""`mattex serve` under faults of the hostile-but-fair kind (issue 42): every error answer a client
gets, read over real HTTP and gRPC tritonclient clients (400 / INVALID_ARGUMENT with the typed
message for the client's mistakes, 500 / INTERNAL for the server's own, never a traceback or a
path of the server's machine); a restart on the ports of a server killed with kill -9 while
clients were connected, which also removes the dead server's workspace; and the bounds of every
number serve and triton-repo take."""

import errno
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the serve extra is not installed (pip install '.[serve]')")
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from serve_helpers import (  # noqa: E402
    free_ports,
    launch,
    leftovers,
    process_tree,
    shared_memory_held,
    survivors,
)
from tritonclient.utils import InferenceServerException  # noqa: E402

from mattex.errors import ConfigError  # noqa: E402
from mattex.serving import limits  # noqa: E402
from mattex.serving.processes import (  # noqa: E402
    command_line,
    remove_dead_workspaces,
    workspace_name,
    workspace_prefix,
)

# The server's own failure, made to order: a batch of frames 36 pixels wide fails inside mattex
# with an OSError whose message holds paths of the server's machine (as ONNX Runtime's, the
# file system's or a driver's do). Everything else is the real `mattex serve`.
FAILING_WIDTH = 36
MATTEX_FAILING_AT_36 = [
    sys.executable,
    "-c",
    f"""
import sys
from mattex.serving import server

matte_batch = server.matte_batch


def matte_or_fail(matter, src, bgr, inputs, outputs):
    if src.shape[-1] == {FAILING_WIDTH}:
        raise OSError(f"the disk under {{server.__file__}} and {{sys.prefix}} failed")
    return matte_batch(matter, src, bgr, inputs, outputs)


server.matte_batch = matte_or_fail
from mattex.cli.main import main

main()
""",
]


def listening_or_lingering(port: int) -> set[str]:
    """The TCP states of the sockets on local `port` (IPv4 and IPv6), as /proc/net names them:
    0A listening, 06 TIME_WAIT, 04/05 FIN_WAIT."""
    states = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if int(local.rsplit(":", 1)[1], 16) == port:
                    states.add(state)
    return states


def crash(small_file, tmp, ports: list[int]) -> dict:
    """`mattex serve` on `ports`, an HTTP and a gRPC client connected, then kill -9 of its process
    group and of its Triton; what the crash left: the processes, the connections lingering on
    the HTTP port, what a plain bind of it says, the PyTriton workspace and shared memory."""
    from pytriton.constants import PYTRITON_HOME

    process, _ = launch(small_file, tmp, "--backend", "onnxruntime", ports=ports, start_new_session=True)
    web = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
    web.request("GET", "/v2/health/ready")
    assert web.getresponse().status == 200  # the connection stays open (keep-alive)
    rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
    assert rpc.is_server_ready()
    pids = process_tree(process.pid)
    segments = shared_memory_held(pids)
    [workspace] = [p for p in PYTRITON_HOME.iterdir() if p.name.startswith(workspace_prefix(process.pid))]
    os.killpg(process.pid, signal.SIGKILL)
    for pid in pids:  # Triton too, wherever its group
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.communicate()
    web.close()
    rpc.close()
    # PyTriton's own segments (psm_...) of the killed server carry no name of it: the test, which
    # knows them, removes them (mattex cannot tell them from another program's); those named
    # after it (pytrtion<pid>-...) are the next server's to remove.
    for name in segments - {n for n in segments if n.startswith(f"pytrtion{process.pid}-")}:
        Path("/dev/shm", name).unlink(missing_ok=True)
    with socket.socket() as plain:  # the check serve made before
        try:
            plain.bind(("127.0.0.1", ports[0]))
            plain_bind = "bound"
        except OSError as e:
            plain_bind = errno.errorcode[e.errno]
    return {
        "pid": process.pid,
        "pids": pids,
        "survivors": survivors(pids, grace_s=5),
        "lingering": listening_or_lingering(ports[0]),
        "plain_bind": plain_bind,
        "workspace": workspace,
        "workspace_after_crash": workspace.is_dir(),
    }


@pytest.fixture(scope="module")
def server(small_file, tmp_path_factory):
    """One real server for every bad request, started on the ports of a server killed with kill -9
    while clients were connected (`crash`): float frames (so values can be NaN or out of range),
    at most 20,000 pixels a frame, its output in files (`logs`)."""
    tmp, logs = tmp_path_factory.mktemp("serve-faults-tmp"), tmp_path_factory.mktemp("serve-faults-logs")
    before, ports = leftovers(tmp), free_ports(3)
    crashed = crash(small_file, tmp, ports)
    process = None
    try:
        options = ["--inputs", "float", "--outputs", "float", "--max-pixels", "20000", "--backend", "onnxruntime"]
        process, urls = launch(small_file, tmp, *options, ports=ports, mattex=MATTEX_FAILING_AT_36, logs=logs)
        yield {**urls, "process": process, "tmp": tmp, "logs": logs, "before": before, "crashed": crashed}
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def test_serve_starts_at_once_on_the_ports_of_a_server_killed_with_clients_connected(server):
    """kill -9 of a server's process group (and its Triton) while an HTTP and a gRPC client were
    connected leaves their connections lingering on its ports (TIME_WAIT, FIN_WAIT), where a
    plain bind is refused for a minute. The module's server, started on the same ports right
    after, was ready at once (Triton binds with SO_REUSEADDR; serve's check does as Triton does),
    and removed the dead server's PyTriton workspace and the shared memory named after it."""
    crashed = server["crashed"]
    assert not crashed["survivors"], crashed
    assert crashed["lingering"] - {"0A"}, f"no connection lingers: the test tests nothing ({crashed})"
    assert crashed["plain_bind"] == "EADDRINUSE", crashed
    assert crashed["workspace_after_crash"] and not crashed["workspace"].exists(), "the dead server's workspace stayed"
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"pytrtion{crashed['pid']}-")]


def frames(h: int, w: int, bgr_w: int | None = None, value: float = 0.5) -> dict[str, np.ndarray]:
    src = np.full((1, 3, h, w), value, np.float32)
    return {"src": src, "bgr": np.full((1, 3, h, bgr_w or w), 0.25, np.float32)}


def answer(server, protocol: str, arrays: dict[str, np.ndarray], dtype: str = "FP32") -> tuple[str, str]:
    """The (status, message) a tritonclient of `protocol` gets for a request that fails."""
    client_module = httpclient if protocol == "http" else grpcclient
    client = client_module.InferenceServerClient(server[protocol].split("://", 1)[1])
    tensors = []
    for name, value in arrays.items():
        tensor = client_module.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    try:
        client.infer("matte", tensors)
    except InferenceServerException as e:
        return str(e.status()), e.message()
    finally:
        client.close()
    raise AssertionError(f"{protocol}: the request was served")


def nan_frames() -> dict[str, np.ndarray]:
    arrays = frames(32, 32)
    arrays["src"][0, 1, 3, 5] = np.nan
    return arrays


# What a client may get wrong, and the start of the answer mattex gives.
CLIENT_MISTAKES = {
    "H not a multiple of 4": (frames(30, 32), "InputShapeError: src and bgr height and width must be divisible by 4"),
    "src and bgr of different shapes": (
        frames(32, 32, bgr_w=28),
        "InputShapeError: src (1, 3, 32, 32) and bgr (1, 3, 32, 28) must have the same shape",
    ),
    "over --max-pixels": (
        frames(160, 160),
        "InputShapeError: frames of 160x160 (25600 pixels) are larger than this server takes (20000 pixels",
    ),
    "a NaN value": (nan_frames(), "InputValueError: src has 1 NaN and 0 Inf values"),
    "0-255 values in float frames": (frames(32, 32, value=200.0), "InputValueError: src has values outside [0, 1]"),
}
STATUS = {
    ("http", "client"): "400",
    ("grpc", "client"): "StatusCode.INVALID_ARGUMENT",
    ("http", "server"): "500",
    ("grpc", "server"): "StatusCode.INTERNAL",
}


def server_paths() -> list[str]:
    """Paths of the server's machine an answer must not show: where mattex, Python, its packages,
    PyTriton's workspaces and the home folder are."""
    import pytriton
    from pytriton.constants import PYTRITON_HOME

    import mattex

    places = [Path(mattex.__file__).parent.parent, Path(sys.prefix), Path(pytriton.__file__).parent, PYTRITON_HOME]
    return [str(p) for p in places] + [os.path.expanduser("~"), "site-packages"]


def assert_clean(what: str, message: str) -> None:
    assert "Traceback" not in message and 'File "' not in message, f"{what}: {message}"
    shown = [p for p in server_paths() if p in message] + re.findall(r"(?<![\w.])/[\w.-]+/[\w./-]*", message)
    assert not shown, f"{what}: the answer shows the server's paths {shown}: {message}"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_error_answer_names_the_mistake_with_its_code_and_nothing_of_the_server(server, protocol):
    """Each of mattex's own refusals: 400 / INVALID_ARGUMENT, the typed message alone. The server's
    own failure: 500 / INTERNAL naming its type alone. Triton's own refusals (a wrong dtype, a
    wrong rank): still 400 and clean. Then a good request is served: nothing stopped."""
    answers = {what: (*answer(server, protocol, arrays), want) for what, (arrays, want) in CLIENT_MISTAKES.items()}
    for what, (status, message, want) in answers.items():
        assert status == STATUS[protocol, "client"], f"{what}: {status} {message}"
        assert message.startswith(want), f"{what}: {message}"
        assert "\n" not in message and "mattex-answer" not in message, f"{what}: {message}"
    failed = answer(server, protocol, frames(32, FAILING_WIDTH))
    assert failed == (
        STATUS[protocol, "server"],
        "the server failed on this request (OSError); its log has the details",
    )
    triton_refusals = {
        "a wrong dtype": answer(server, protocol, {k: v.astype(np.float16) for k, v in frames(32, 32).items()}, "FP16"),
        "a wrong rank": answer(server, protocol, {k: v[0] for k, v in frames(32, 32).items()}),
    }
    for what, (status, message) in triton_refusals.items():
        assert status == STATUS[protocol, "client"], f"{what}: {status} {message}"
    for what, (_, message, *_) in {**answers, **triton_refusals, "server failure": failed}.items():
        assert_clean(what, message)
    client = httpclient.InferenceServerClient(server["http"].split("://", 1)[1])
    good = frames(32, 32)
    tensors = [httpclient.InferInput(n, list(v.shape), "FP32") for n, v in good.items()]
    for tensor, value in zip(tensors, good.values()):
        tensor.set_data_from_numpy(value)
    assert client.infer("matte", tensors).as_numpy("pha").shape == (1, 1, 32, 32)
    client.close()


def test_the_servers_own_failure_is_logged_in_full_on_the_server(server):
    """Last of the module's server: it stops it. What the client was not told (the OSError's
    message, with the server's paths, and its traceback) is in the server's log, and the stop
    leaves nothing behind."""
    answer(server, "grpc", frames(32, FAILING_WIDTH))
    process = server["process"]
    pids = process_tree(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    log = (server["logs"] / "stderr").read_text()
    assert "Traceback" in log and "OSError: the disk under " in log and "serving/server.py" in log, log[-3000:]
    assert not survivors(pids), survivors(pids)
    assert leftovers(server["tmp"], pids) <= server["before"], leftovers(server["tmp"], pids) - server["before"]


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


def test_only_the_workspaces_of_dead_mattex_servers_are_removed(tmp_path):
    """A workspace of serve()'s form whose process is gone goes, with the shared memory PyTriton
    named after that process. Stay: a running server's, one a running process (an orphaned
    Triton) names in its command line, another PyTriton program's, and names of another form."""
    dead, other_dead = dead_pid(), dead_pid()
    gone = tmp_path / workspace_name(dead)
    (gone / "model-store").mkdir(parents=True)
    (gone / "model-store" / "config.pbtxt").write_text("x")
    segment = Path("/dev/shm", f"pytrtion{dead}-test{os.getpid()}")
    segment.write_bytes(b"x")
    running = tmp_path / workspace_name(os.getpid())
    orphaned_triton = tmp_path / workspace_name(other_dead)
    stay = [running, orphaned_triton, tmp_path / "workspace_9f2a1c", tmp_path / f"workspace_mattex_{dead}_x"]
    stay += [tmp_path / f"workspace_mattex_{dead}_abcdef0123", tmp_path / f"workspace_mattex_{dead}_abcdef01.old"]
    for folder in stay:
        folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(orphaned_triton)])
    try:
        waited = time.monotonic()  # until /proc shows the holder's arguments (a loaded machine is slow to)
        while os.fsencode(orphaned_triton) not in command_line(holder.pid) and time.monotonic() - waited < 20:
            time.sleep(0.05)
        removed = remove_dead_workspaces(tmp_path)
    finally:
        holder.kill()
        holder.wait()
        segment.unlink(missing_ok=True)
    assert removed == [gone] and not gone.exists()
    assert not segment.exists() or pytest.fail("the dead server's shared memory was left")
    assert all(folder.is_dir() for folder in stay), [f.name for f in stay if not f.is_dir()]
    assert remove_dead_workspaces(tmp_path / "no-such-home") == []


# Each number serve takes, past each end: (option, value, the message's start).
SERVE_REFUSALS = [
    ("http_port", 0, "`http_port` must be 1-65535 (a TCP port), got 0"),
    ("http_port", 70000, "`http_port` must be 1-65535 (a TCP port), got 70000"),
    ("grpc_port", -5, "`grpc_port` must be 1-65535 (a TCP port), got -5"),
    ("metrics_port", 8002.5, "`metrics_port` must be a whole number, got 8002.5"),
    ("max_batch", 0, "`max_batch` must be 1-256, got 0"),
    ("max_batch", 257, "`max_batch` must be 1-256, got 257"),
    ("instances", 0, "`instances` must be 1-"),
    ("instances", limits.max_serving_instances() + 1, f"`instances` must be 1-{limits.max_serving_instances()} "),
    ("max_queue_size", -1, "`max_queue_size` must be 0-100000 (0: no limit), got -1"),
    ("max_queue_size", 100_001, "`max_queue_size` must be 0-100000 (0: no limit), got 100001"),
    ("max_pixels", -1, "`max_pixels` must be 0-268435456 (0: no limit), got -1"),
    ("max_pixels", 16384 * 16384 + 1, "`max_pixels` must be 0-268435456 (0: no limit), got 268435457"),
    ("max_queue_delay_us", 10_000_001, "`max_queue_delay_us` must be 0-10000000, got 10000001"),
    ("queue_timeout_us", 2**64, "`queue_timeout_us` must be 0-3600000000 (0: no limit), got 18446744073709551616"),
    ("exit_timeout_s", True, "`exit_timeout_s` must be a whole number, got True"),
    ("exit_timeout_s", 601, "`exit_timeout_s` must be 0-600, got 601"),
    ("address", "999.1.1.1", "`address` '999.1.1.1' is neither an IP address nor a host name"),
    ("address", "host name", "`address` 'host name' is neither an IP address nor a host name"),
]


@pytest.mark.parametrize(("option", "value", "message"), SERVE_REFUSALS, ids=[f"{o}={v}" for o, v, _ in SERVE_REFUSALS])
def test_serve_refuses_each_number_past_its_bounds_by_name(small_file, option, value, message):
    from mattex.serving.server import ServeConfig

    with pytest.raises(ConfigError) as refused:
        ServeConfig(small_file, **{option: value}).validate()
    assert str(refused.value).startswith(message), str(refused.value)


def test_serve_takes_each_number_at_its_bounds(small_file):
    from mattex.serving.server import ServeConfig

    ends = {"max_batch": 256, "instances": limits.max_serving_instances(), "max_queue_size": 100_000}
    ends |= {"max_pixels": 16384 * 16384, "max_queue_delay_us": 10_000_000, "queue_timeout_us": 3_600_000_000}
    ends |= {"http_port": 65535, "grpc_port": 1, "address": "::1"}
    ServeConfig(small_file, **ends).validate()
    ServeConfig(small_file, address="localhost", max_queue_size=0, max_pixels=0, exit_timeout_s=0).validate()


def test_the_cli_names_the_flag_and_its_range_and_an_address_not_of_this_machine(small_file):
    """On the command line: exit 2, the flag named as typed. 192.0.2.1 (TEST-NET-1, never a local
    address) has the form of an address and is refused by the bind, before the model is opened."""
    from typer.testing import CliRunner

    from mattex.cli.main import app

    runner = CliRunner()
    said = {}
    for flags in (
        ["--http-port", "0"],
        ["--grpc-port", "70000"],
        ["--address", "999.1.1.1"],
        ["--address", "192.0.2.1"],
    ):  # noqa: E501
        done = runner.invoke(app, ["serve", str(small_file), *flags])
        said[flags[1]] = (done.exit_code, " ".join(done.output.split()))
    assert said["0"] == (2, "error: ConfigError: --http-port must be 1-65535 (a TCP port), got 0"), said
    assert said["70000"] == (2, "error: ConfigError: --grpc-port must be 1-65535 (a TCP port), got 70000"), said
    assert said["999.1.1.1"] == (
        2,
        "error: ConfigError: --address '999.1.1.1' is neither an IP address nor a host name",
    ), said
    assert said["192.0.2.1"][0] == 2, said
    assert said["192.0.2.1"][1].startswith("error: ConfigError: --address 192.0.2.1 is not an address of this machine")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--instances", "65"], "--instances must be 1-64 (per device), got 65"),
        (["--max-batch", "257"], "--max-batch must be 1-256, got 257"),
        (["--max-queue-delay-us", "10000001"], "--max-queue-delay-us must be 0-10000000, got 10000001"),
    ],
)
def test_triton_repo_refuses_each_number_past_its_bounds_and_writes_nothing(small_file, tmp_path, flags, message):
    from typer.testing import CliRunner

    from mattex.cli.main import app

    done = CliRunner().invoke(app, ["triton-repo", str(small_file), "--out", str(tmp_path / "repo"), *flags])
    assert done.exit_code == 2 and " ".join(done.output.split()) == f"error: ConfigError: {message}", done.output
    assert not (tmp_path / "repo").exists()


def test_a_name_this_machine_does_not_resolve_is_named_as_the_address(monkeypatch):
    """The resolver's refusal (here made to order: a real lookup may wait on a DNS server) is a
    ConfigError about `address`, not about a port."""
    from mattex.serving.server import _check_port_free

    def unknown(*_, **__):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(ConfigError) as refused:
        _check_port_free("no-such-host.invalid", 8000, "http_port")
    assert str(refused.value) == (
        "`address` 'no-such-host.invalid' is not a name this machine resolves: Name or service not known"
    )
