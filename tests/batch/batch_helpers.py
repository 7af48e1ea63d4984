"""What the batch tests share (test_batch.py, test_batch_cluster.py; the `library` fixture in
conftest.py): the clips the jobs ask for, reading an output folder whole, writing a jobs file."""

import json
import socket
from pathlib import Path

SIZE, FRAMES = 64, 8
# What the jobs ask for: a video's three outputs, and PNG frames of two (with an option)
CLIPS = {"walk": {}, "sway": {"png": True, "outputs": ["pha", "fgr"]}}
BACKEND = "onnxruntime"  # opens fastest; one thread, as the cluster's one-CPU workers take


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def library_jobs(folder: Path, broken: bool = True) -> list[dict]:
    jobs = [{"src": f"{name}.mp4", "bgr": f"{name}.png", "out": name, **options} for name, options in CLIPS.items()]
    return jobs + ([{"src": "broken.mp4", "bgr": "walk.png", "out": "broken"}] if broken else [])


def no_temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
