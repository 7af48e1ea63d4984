"""One Matter shared by threads gives exactly the sequential results; long runs do not grow
resident memory (sized for CI: tiny frames, 1,000 of them)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mattex.runtime import Matter


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """64x64 frames and k = 40: the 1,000-frame tests cost what a frame costs, so the smallest file."""
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    path = tmp_path_factory.mktemp("threads") / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(ExportConfig(height=64, width=64, sample_pixels=640), path)
    return path


def inputs(i: int):
    rng = np.random.default_rng(i)
    src = rng.random((1, 3, 64, 64), dtype=np.float32)
    return src, np.clip(src + rng.normal(0, 0.2, src.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_four_threads_200_calls_equal_the_sequential_results(model, backend, tmp_path):
    if backend == "openvino":
        pytest.importorskip("openvino")
    options = {"cache_dir": tmp_path} if backend == "openvino" else {}
    matter = Matter.open(model, backend=backend, **options)
    sequential = [matter(*inputs(i)) for i in range(200)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda i: matter(*inputs(i)), range(200)))
    for i, ((p1, f1), (p2, f2)) in enumerate(zip(sequential, threaded)):
        assert np.array_equal(p1, p2) and np.array_equal(f1, f2), i


def test_mattex_threads_sets_each_sessions_threads_where_the_caller_names_none(model, tmp_path, monkeypatch):
    from mattex.errors import ConfigError

    monkeypatch.setenv("MATTEX_THREADS", "1")
    ort_session = Matter.open(model, backend="onnxruntime").backend.session
    assert ort_session.get_session_options().intra_op_num_threads == 1
    assert (
        Matter.open(model, backend="onnxruntime", threads=2).backend.session.get_session_options().intra_op_num_threads
        == 2
    )
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("MATTEX_THREADS", bad)
        with pytest.raises(ConfigError, match=f"MATTEX_THREADS='{bad}'"):
            Matter.open(model, backend="onnxruntime")
    monkeypatch.setenv("MATTEX_THREADS", "1")
    pytest.importorskip("openvino")
    compiled = Matter.open(model, backend="openvino", cache_dir=tmp_path).backend.compiled
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1


def rss_growth(script: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warm, end = (int(v) for v in result.stdout.split()[-2:])
    return {"warm_kib": warm, "end_kib": end, "growth": (end - warm) / warm}


RSS = """
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])
"""


def test_matter_over_1000_frames_grows_memory_under_5_percent(model):
    growth = rss_growth(
        RSS
        + f"""
import numpy as np
from mattex.runtime import Matter
matter = Matter.open({str(model)!r}, backend="onnxruntime")
rng = np.random.default_rng(0)
frames = [rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(8)]
for i in range(50):
    matter(frames[i % 8], frames[(i + 1) % 8])
warm = rss()
for i in range(1000):
    matter(frames[i % 8], frames[(i + 1) % 8])
print(warm, rss())
"""
    )
    assert growth["growth"] < 0.05, growth


def test_mattex_run_over_1000_frames_grows_memory_under_5_percent(model, tmp_path):
    from mattex.calibration.synthetic import write_synthetic_video

    clip = write_synthetic_video(tmp_path / "clip.mp4", tmp_path / "bg.png", frames=1000, height=64, width=64)
    growth = rss_growth(
        RSS
        + f"""
from mattex.runtime.pipeline import matte_media
samples = []  # RSS after 100 frames (warm), then at the end
seen = [0]
def progress(n):
    seen[0] += n
    if seen[0] >= 100 and not samples:
        samples.append(rss())
matte_media({str(model)!r}, {str(clip)!r}, {str(tmp_path / "bg.png")!r}, {str(tmp_path / "out")!r},
            outputs=["pha"], crf=28, progress=progress)
print(samples[0], rss())
"""
    )
    assert growth["growth"] < 0.05, growth
