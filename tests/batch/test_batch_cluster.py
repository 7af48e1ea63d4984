"""`mattex batch --ray` on a two-node Ray cluster started and stopped inside this file (loopback
only): each job's outputs those of `mattex run`, a broken clip failing alone, a lost node's job
done again elsewhere. The jobs file, the local runs and Ray's absence: test_batch.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from batch_helpers import BACKEND, CLIPS, FRAMES, free_port, library_jobs, no_temporaries, tree_bytes, write_jobs
from typer.testing import CliRunner

from mattex.batch import BatchProgress, run_batch
from mattex.cli.main import app

# --- a two-node Ray cluster on this machine -------------------------------------------------

runner = CliRunner()
MARK = "MATTEX_TEST_RAY_NODE"  # each node's processes carry it: found (and ended) by pid alone


def tagged(mark: str) -> str:
    """A node's mark, this test process's own: a suite run beside this one (its own cluster, its
    own "second" node) is neither killed nor waited for here, nor this one there."""
    return f"{mark}.{os.getpid()}"


def marked_pids(mark: str) -> list[int]:
    """The processes of one node: those whose environment carries MARK=mark (the daemons its
    `ray start` left running), and every process they started (the raylet's agents and workers
    retitle themselves, which overwrites what /proc shows of their environment)."""
    needle = f"{MARK}={tagged(mark)}".encode()
    parents, marked = {}, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                marked.add(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # a zombie is gone already
            parents[int(entry.name)] = int(fields[1])
    found, grew = {pid for pid in marked if pid in parents}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return sorted(found)


def kill_node(mark: str) -> None:
    for pid in marked_pids(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_node(env: dict, mark: str, *args: str) -> None:
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    ports = ["--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
    done = subprocess.run(
        [ray, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats", *ports, *args],
        env={**env, MARK: tagged(mark)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node, one CPU each, on loopback; every process of both ended at the
    end (by pid), nothing left running."""
    temp = tempfile.mkdtemp(prefix="mtxray")  # short: Ray's socket paths live under it
    port = free_port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        # a lost node is known in about a second, not Ray's default 15 s
        "RAY_health_check_initial_delay_ms": "0",
        "RAY_health_check_period_ms": "300",
        "RAY_health_check_timeout_ms": "300",
        "RAY_health_check_failure_threshold": "3",
    }
    env.pop("MATTEX_THREADS", None)  # each worker takes as many threads as CPUs it was given
    marks = ("head", "second")
    try:
        start_node(
            env,
            "head",
            "--head",
            "--port",
            str(port),
            "--include-dashboard=false",
            "--temp-dir",
            temp,
            "--ray-client-server-port",
            str(free_port()),
        )
        start_node(env, "second", "--address", f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        for mark in marks:
            kill_node(mark)
        deadline = time.monotonic() + 10
        while any(marked_pids(m) for m in marks) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(temp, ignore_errors=True)
        assert not any(marked_pids(m) for m in marks), "a Ray process outlived the test cluster"


def test_on_a_two_node_cluster_each_job_equals_mattex_run_and_a_broken_clip_fails_alone(
    library, small_file, cluster, tmp_path
):
    folder, reference = library
    jobs = write_jobs(folder / "cluster.jsonl", library_jobs(folder))
    before = set(Path(tempfile.gettempdir()).glob("mattex-batch-model-*"))
    args = ["batch", str(small_file), str(jobs), "--out", str(tmp_path / "out"), "--backend", BACKEND]
    result = runner.invoke(app, [*args, "--ray", cluster, "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.output)
    assert summary["cluster"]["nodes"] == 2 and summary["workers"] == 2
    workers = {r["worker"] for r in summary["results"]}  # "node 5ddd12a7 pid 17634, 1 thread"
    assert len({w.split(" pid")[0] for w in workers}) == 2 and all(w.endswith(", 1 thread") for w in workers)
    assert summary["jobs"] == {"done": 2, "skipped": 0, "failed": 1}
    assert next(r for r in summary["results"] if r["out"] == "broken")["error"].startswith("MediaError: ")
    for name in CLIPS:
        assert tree_bytes(tmp_path / "out" / name) == reference[name], name
    assert no_temporaries(tmp_path / "out") == []
    # the model reached the workers as bytes, into a temporary folder of theirs, gone once opened
    assert set(Path(tempfile.gettempdir()).glob("mattex-batch-model-*")) == before

    rerun = json.loads(runner.invoke(app, [*args, "--ray", cluster, "--json"]).output)
    statuses = {r["out"]: r["status"] for r in rerun["results"]}
    assert statuses == {"walk": "skipped", "sway": "skipped", "broken": "failed"}


def test_a_node_lost_mid_run_every_job_still_finishes_once(library, small_file, cluster, tmp_path):
    """Runs last: the second node is killed (its raylet and its worker, kill -9) as soon as the
    first frames are matted; its job is done again on the head's worker. Where its worker was
    still being created then, Ray never fails the job's task (it waits for a restart that finds
    no room): the pool sees the worker restarting and gives the job back itself."""
    folder, reference = library
    names = ["walk", "sway", "long", "walk2"]
    jobs = [{"src": f"{n.rstrip('2')}.mp4", "bgr": f"{n.rstrip('2')}.png", "out": n, **CLIPS.get(n, {})} for n in names]
    frames_shown, ended = [], []

    def frames(n: int) -> None:
        if not frames_shown:
            kill_node("second")
        frames_shown.append(n)

    result = run_batch(
        small_file,
        write_jobs(folder / "lost.jsonl", jobs),
        tmp_path / "out",
        ray=cluster,
        backend=BACKEND,
        progress=BatchProgress(on_frames=frames, on_job=ended.append),
    )
    assert not marked_pids("second")
    outcomes = {o.out: o for o in result.jobs}
    assert sorted(outcomes) == sorted(names) and len(result.jobs) == len(names) == len(ended)  # each once
    assert all(o.status == "done" and o.frames == FRAMES for o in outcomes.values()), result.to_dict()
    assert max(o.attempts for o in outcomes.values()) == 2  # the lost node's job, done again
    assert sum(frames_shown) == len(names) * FRAMES  # the display takes back a lost job's frames
    for name in CLIPS:
        assert tree_bytes(tmp_path / "out" / name) == reference[name], name
    assert no_temporaries(tmp_path / "out") == []  # the lost worker's temporary folder removed
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(manifest["jobs"]) == sorted(names)
