"""`mattex batch` against `mattex run` in a loop over the same clips: frames/s and the cost per
job beyond its pipeline, here and on a local two-node Ray cluster with 1 and 2 workers.

    python benchmarks/batch.py --clips 6 --frames 24 --json results_batch_cpu.json

It exports mobilenetv2 (demo weights) at 240x320, writes synthetic clips of that size and a
jobs file, then, one run each (on the CPU, com, pha and fgr to H.264, ONNX Runtime):
- `mattex run` once per clip, each its own process (a shell loop): a Python start and a model
  load per clip;
- `mattex batch` here: one process, one model load;
- `mattex batch --ray` on a cluster of two `ray start` nodes of one CPU each on this machine
  (loopback), `--workers 1` and `--workers 2`: each worker takes one CPU and runs the model on
  one thread. The cluster is started once beforehand, as a real one is; each run still
  connects, starts its workers and sends them the model.
Overhead per job: the time a worker (or the loop) spends outside jobs' pipelines, per job:
(wall x workers - the jobs' pipeline seconds) / jobs; start, model load, scheduling included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

HEIGHT, WIDTH, FPS = 240, 320, 24
MARK = "MATTEX_BENCH_RAY_NODE"


def prepare(folder: Path, clips: int, frames: int) -> tuple[Path, Path, list[str]]:
    from mattex.calibration.synthetic import write_synthetic_video
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    model = folder / "m.onnx"
    export_onnx(ExportConfig(height=HEIGHT, width=WIDTH, sample_pixels=16 * 1000), model)
    names = [f"clip{i}" for i in range(clips)]
    for seed, name in enumerate(names):
        write_synthetic_video(folder / f"{name}.mp4", folder / f"{name}.png", frames, HEIGHT, WIDTH, FPS, seed=seed)
    jobs = folder / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"src": f"{n}.mp4", "bgr": f"{n}.png", "out": n}) + "\n" for n in names))
    return model, jobs, names


def mattex(*args: str, env: dict | None = None) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run(["mattex", *args, "--json"], capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mattex {' '.join(args)} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout), wall


def row(name: str, frames: int, jobs: int, wall: float, pipeline_s: float, workers: int) -> dict:
    return {
        "how": name,
        "workers": workers,
        "frames": frames,
        "wall_s": round(wall, 2),
        "fps": round(frames / wall, 2),
        "overhead_per_job_s": round((wall * workers - pipeline_s) / jobs, 2),
    }


def run_loop(folder: Path, model: Path, names: list[str]) -> dict:
    started, frames, pipeline = time.perf_counter(), 0, 0.0
    for name in names:
        summary, _ = mattex(
            "run", str(model), str(folder / f"{name}.mp4"), str(folder / f"{name}.png"),
            "--out", str(folder / "loop" / name), "--backend", "onnxruntime",
        )  # fmt: skip
        frames, pipeline = frames + summary["frames"], pipeline + summary["seconds"]
    return row("mattex run, one process per clip", frames, len(names), time.perf_counter() - started, pipeline, 1)


def batch(folder: Path, model: Path, jobs: Path, out: str, label: str, *extra: str) -> dict:
    summary, wall = mattex(
        "batch", str(model), str(jobs), "--out", str(folder / out), "--backend", "onnxruntime", *extra
    )
    assert summary["jobs"]["failed"] == 0 and summary["jobs"]["skipped"] == 0, summary["jobs"]
    pipeline = sum(r["seconds"] for r in summary["results"])
    return row(label, summary["frames"], len(summary["results"]), wall, pipeline, summary["workers"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(temp: str) -> str:
    """Two nodes of one CPU each on loopback; their processes carry MARK in their environment."""
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", MARK: "1"}
    env.pop("MATTEX_THREADS", None)  # each worker takes its one CPU's thread
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    head = ["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp]
    head += ["--ray-client-server-port", str(free_port())]
    for args in (head, ["--address", f"127.0.0.1:{port}"]):
        ports = ["--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
        subprocess.run(["ray", "start", *common, *ports, *args], env=env, check=True, capture_output=True, timeout=300)
    return f"127.0.0.1:{port}"


def stop_cluster() -> None:
    """Every process carrying MARK and every process they started (by pid)."""
    parents, marked = {}, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if f"{MARK}=1".encode() in (entry / "environ").read_bytes().split(b"\0"):
                marked.add(int(entry.name))
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, grew = set(marked), True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    from mattex.measure.machine import describe_machine

    folder = Path(tempfile.mkdtemp(prefix="mattex-bench-batch-"))
    temp = tempfile.mkdtemp(prefix="mtxray")
    try:
        model, jobs, names = prepare(folder, args.clips, args.frames)
        rows = [run_loop(folder, model, names), batch(folder, model, jobs, "here", "mattex batch, this machine")]
        address = start_cluster(temp)
        for workers in (1, 2):
            label = f"mattex batch --ray, {workers} worker{'s' if workers > 1 else ''} of 1 CPU"
            rows.append(batch(folder, model, jobs, f"ray{workers}", label, "--ray", address, "--workers", str(workers)))
    finally:
        stop_cluster()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)
    results = {
        "machine": describe_machine(),
        "clip": {"height": HEIGHT, "width": WIDTH, "frames": args.frames, "clips": args.clips},
        "model": "mobilenetv2 demo weights, fp32, ONNX Runtime",
        "rows": rows,
    }
    for r in rows:
        overhead = r["overhead_per_job_s"]
        print(f"{r['how']:45s} {r['fps']:7.2f} frames/s  {r['wall_s']:7.2f} s  overhead/job {overhead:5.2f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
