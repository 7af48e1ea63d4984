"""`mattex serve` as its users use it: a real Triton server (PyTriton's tritonserver) on 127.0.0.1
in a process of its own, NVIDIA's tritonclient over HTTP and gRPC, concurrent load, bad requests,
and a clean stop on SIGTERM."""

import http.client
import json
import re
import signal
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the serve extra is not installed (pip install '.[serve]')")
import tritonclient.http as httpclient  # noqa: E402
from serve_helpers import H, W, frames, launch, leftovers, process_tree, survivors  # noqa: E402

from mattex.runtime import Matter  # noqa: E402
from mattex.serving.client import RemoteMatter  # noqa: E402


@pytest.fixture(scope="module")
def server(small_file, tmp_path_factory):
    """`mattex serve` on the small demo-weights file, its temporary files in a folder of its own."""
    tmp = tmp_path_factory.mktemp("serve-tmp")
    before = leftovers(tmp)
    options = ["--max-batch", "8", "--max-queue-delay-us", "20000", "--max-queue-size", "16"]
    options += ["--max-pixels", "20000", "--backend", "onnxruntime"]
    process, urls = launch(small_file, tmp, *options)
    try:
        yield {**urls, "process": process, "tmp": tmp, "before": before, "file": small_file}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_server_is_ready_only_when_its_model_is(server):
    """Triton's contract, which a load balancer or a Kubernetes readiness probe relies on: from
    the first poll on, no moment where the server says ready (HTTP or gRPC) and the model does
    not. PyTriton loaded the model into an already ready server; mattex writes the model into
    its store before Triton starts, so Triton loads it at startup (strict readiness)."""
    timeline = server["readiness"]
    early = [t for t in timeline if (t[1] and not t[2]) or (t[3] and not t[4])]
    assert not early, timeline
    assert timeline[-1][1:] == (True, True, True, True)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_gets_what_matter_gives(server, protocol):
    remote = RemoteMatter(server[protocol], "matte")
    local = Matter.open(server["file"], backend="onnxruntime")
    for seed, batch in ((0, 1), (1, 3)):
        src, bgr = frames(seed, batch)
        got, want = remote.matte_frames(src, bgr), local.matte_frames(src, bgr)
        for name in ("pha", "fgr"):
            assert got[name].shape == want[name].shape == (batch, 1 if name == "pha" else 3, H, W)
            assert np.abs(got[name] - want[name]).max() <= 1 / 255 + 1e-6, name
    remote.close()


def test_concurrent_clients_are_batched_and_none_is_lost(server):
    local = Matter.open(server["file"], backend="onnxruntime")
    inputs = [frames(seed) for seed in range(4)]
    want = [local.matte_frames(*pair)["pha"] for pair in inputs]

    def client(index: int) -> list[float]:
        remote = RemoteMatter(server["http" if index % 2 else "grpc"], "matte")
        errors = []
        for request in range(50):
            k = (index + request) % len(inputs)
            errors.append(float(np.abs(remote.matte_frames(*inputs[k])["pha"] - want[k]).max()))
        remote.close()
        return errors

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    assert sum(len(r) for r in results) == 400
    assert max(max(r) for r in results) <= 1 / 255 + 1e-6
    stats = httpclient.InferenceServerClient(server["http"][len("http://") :]).get_inference_statistics("matte")
    model = stats["model_stats"][0]
    assert int(model["inference_count"]) >= 400
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model["batch_stats"]}
    assert max(batches) > 1, batches  # dynamic batching formed batches of several requests
    assert sum(size * count for size, count in batches.items()) >= 400


def infer_error(url: str, arrays: dict, dtype: str = "UINT8") -> str:
    client = httpclient.InferenceServerClient(url[len("http://") :])
    tensors = []
    for name, value in arrays.items():
        tensor = httpclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    with pytest.raises(Exception) as failed:
        client.infer("matte", tensors)
    return str(failed.value)


def test_bad_requests_are_named_and_the_server_goes_on(server):
    url = server["http"]
    src, bgr = frames(0)
    bad = {
        "wrong dtype": (
            infer_error(url, {"src": src.astype(np.float32), "bgr": bgr.astype(np.float32)}, "FP32"),
            "(?i)data.?type|datatype|FP32",
        ),
        "wrong rank": (infer_error(url, {"src": src[..., 0], "bgr": bgr[..., 0]}), "(?i)shape|dims|rank"),
        "size not divisible by 4": (
            infer_error(url, {"src": src[:, :94], "bgr": bgr[:, :94]}),
            "divisible by 4, got 94x128",
        ),
        "frame and background differ": (
            infer_error(url, {"src": src, "bgr": bgr[:, :92]}),
            r"src \(1, 96, 128, 3\) and bgr \(1, 92, 128, 3\) must have the same shape",
        ),
        "empty batch": (infer_error(url, {"src": src[:0], "bgr": bgr[:0]}), "(?i)batch|shape|0"),
    }

    for what, (message, pattern) in bad.items():
        assert re.search(pattern, message), f"{what}: {message[-500:]}"
    # A body whose data is shorter than its declared shape, and a body cut short of its declared
    # length (the server drops that connection: there is no request to answer).
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"inputs": [{"name": "src", "shape": [1, H, W, 3], "datatype": "UINT8", "data": [0] * 10}]})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "POST", "/v2/models/matte/infer", body=body.encode(), headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    assert response.status >= 400 and b"Shape does not match" in response.read()
    connection.close()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(
            f"POST /v2/models/matte/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {2 * len(body)}\r\n\r\n{body}".encode()
        )
        raw.shutdown(socket.SHUT_WR)
        answer = raw.recv(4096)
    assert answer == b"" or b" 400 " in answer.split(b"\r\n", 1)[0], answer[:200]
    got = RemoteMatter(url, "matte").matte_frames(src, bgr)  # and the next good request is served
    assert got["pha"].shape == (1, 1, H, W)


def infer_http(client, src: np.ndarray, bgr: np.ndarray) -> np.ndarray:
    tensors = []
    for name, value in (("src", src), ("bgr", bgr)):
        tensor = httpclient.InferInput(name, list(value.shape), "UINT8")
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return client.infer("matte", tensors).as_numpy("pha")


def test_the_overload_policy_reaches_triton(server):
    config = httpclient.InferenceServerClient(server["http"][len("http://") :]).get_model_config("matte")
    policy = config["dynamic_batching"]["default_queue_policy"]
    assert int(policy["max_queue_size"]) == 16 and policy["timeout_action"] == "REJECT", policy


def test_a_burst_beyond_the_queue_is_rejected_by_name_and_the_server_goes_on(server):
    """48 clients at once against a queue of 16 (and batches of 8): each request is answered,
    with the right matte or with Triton's queue error; then a request is served as usual."""
    import threading

    from tritonclient.utils import InferenceServerException

    src, bgr = frames(5)
    want = Matter.open(server["file"], backend="onnxruntime").matte_frames(src, bgr)["pha"]
    start = threading.Barrier(48)

    def one(_):
        client = httpclient.InferenceServerClient(server["http"][len("http://") :], network_timeout=60)
        start.wait()
        try:
            return "served", float(np.abs(infer_http(client, src, bgr) / 255 - want).max())
        except InferenceServerException as e:
            return "rejected", str(e)
        finally:
            client.close()

    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(one, range(48)))
    for kind, detail in answers:
        assert (kind == "served" and detail <= 1 / 255 + 1e-6) or "queue" in detail.lower(), (kind, detail)
    served = [a for a in answers if a[0] == "served"]
    print(f"burst of 48: {len(served)} served, {48 - len(served)} rejected by the queue policy")
    assert served, answers
    assert RemoteMatter(server["http"], "matte").matte_frames(src, bgr)["pha"].shape == (1, 1, H, W)


def test_a_frame_larger_than_the_server_takes_is_refused_by_name(server):
    big = np.zeros((1, 160, 160, 3), np.uint8)  # 25,600 pixels; the server takes 20,000
    message = infer_error(server["http"], {"src": big, "bgr": big})
    assert "frames of 160x160 (25600 pixels) are larger than this server takes (20000 pixels" in message, message
    src, bgr = frames(6)
    assert RemoteMatter(server["http"], "matte").matte_frames(src, bgr)["pha"].shape == (1, 1, H, W)


def test_clients_that_hang_up_before_the_answer_leave_the_server_serving(server):
    port = int(server["http"].rsplit(":", 1)[1])
    data = np.zeros((1, 8, 8, 3), np.uint8)
    body = json.dumps(
        {"inputs": [{"name": n, "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": data.ravel().tolist()}
                    for n in ("src", "bgr")]}
    ).encode()  # fmt: skip
    for _ in range(10):  # a whole request, then the connection closed before the answer comes
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                b"POST /v2/models/matte/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
    src, bgr = frames(7)
    assert RemoteMatter(server["grpc"], "matte").matte_frames(src, bgr)["pha"].shape == (1, 1, H, W)


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (Triton and its Python stubs)."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def test_two_thousand_requests_keep_the_servers_memory_flat(server):
    """Resident memory of the server's processes (mattex, Triton, its Python stub) after 1,800
    more requests than a warm-up of 200: under 5% more. Eight clients fill the batches of 8, so
    no request waits out the queue delay."""
    src, bgr = frames(8, h=32, w=32)

    def requests(count: int) -> None:
        def client(_):
            connection = httpclient.InferenceServerClient(server["http"][len("http://") :])
            for _ in range(count // 8):
                infer_http(connection, src, bgr)
            connection.close()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client, range(8)))

    requests(200)  # warm: allocators, connection buffers, batch shapes
    before = tree_rss_kb(server["process"].pid)
    requests(1800)
    after = tree_rss_kb(server["process"].pid)
    print(f"server RSS after 200 requests {before} kB, after 2,000 {after} kB")
    assert after < 1.05 * before, (before, after)


def test_metrics_and_health(server):
    text = urllib.request.urlopen(server["metrics"], timeout=5).read().decode()
    assert 'nv_inference_request_success{model="matte",version="1"}' in text
    assert urllib.request.urlopen(f"{server['http']}/v2/health/live", timeout=5).status == 200


def test_mattex_run_against_the_server_writes_what_it_writes_locally(server, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from mattex.calibration.synthetic import write_synthetic_video
    from mattex.cli.main import app

    write_synthetic_video(tmp_path / "clip.mp4", tmp_path / "bg.png", 6, H, W, 24)
    runner = CliRunner()
    common = [str(tmp_path / "clip.mp4"), str(tmp_path / "bg.png"), "--png", "--outputs", "pha,fgr", "--json"]
    remote = runner.invoke(
        app, ["run", "matte", *common, "--out", str(tmp_path / "remote"), "--server", server["http"]]
    )
    assert remote.exit_code == 0, remote.output
    local = runner.invoke(
        app, ["run", str(server["file"]), *common, "--out", str(tmp_path / "local"), "--backend", "onnxruntime"]
    )
    assert local.exit_code == 0, local.output
    for kind in ("pha", "fgr"):
        names = sorted(p.name for p in (tmp_path / "local" / kind).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "remote" / kind).iterdir()) and len(names) == 6
        for name in names:
            a = np.asarray(Image.open(tmp_path / "local" / kind / name), dtype=int)
            b = np.asarray(Image.open(tmp_path / "remote" / kind / name), dtype=int)
            assert np.abs(a - b).max() <= 1, (kind, name)


def test_sigterm_stops_it_cleanly_within_10_s(server):
    """Last in this file: it stops the server."""
    process = server["process"]
    pids = process_tree(process.pid)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    took = time.monotonic() - started
    assert process.returncode == 0, stderr[-2000:]
    assert took <= 10, took
    assert leftovers(server["tmp"], pids) <= server["before"], leftovers(server["tmp"], pids) - server["before"]
    assert not survivors(pids), survivors(pids)  # no Triton stub outlives the server
    assert "serving small.onnx on onnxruntime as 'matte': http http://127.0.0.1:" in stderr
