"""The `mattex` GStreamer element against `mattex run` and the C++ runtime's bare inference: same
file, same clip, same backend (OpenVINO, CPU), one run.

    python benchmarks/gstreamer.py --json benchmarks/results_gstreamer_cpu.json
    python benchmarks/gstreamer.py --height 720 --width 1280 --frames 24 --rounds 5

Builds runtime/cpp in Release with the element (GStreamer's development packages, docs/gstreamer.md)
and mattex_overhead, exports mobilenetv2 (demo weights) fp32 at the clip's size and writes a
synthetic clip (`mattex data synth-video`) as a PNG sequence (this machine's GStreamer has no
H.264 decoder: gst-libav is not among the packages), then, interleaved round by round:
- the element: multifilesrc ! pngdec ! queue ! mattex output=alpha ! queue ! pngenc ! multifilesink
  (mattex_gst_probe), as gst-launch-1.0 runs it, and again with the pipeline's other streaming
  threads (decoding, encoding) at a lower priority (mattex_gst_probe --yield), as `mattex run`
  lowers its decode and encode threads';
- `mattex run --png --outputs pha --backend openvino` (`matte_media`) on the same PNGs: decode,
  matte and encode the alpha as PNGs in its own threads;
each timed from its first frame out (the element's leaving it, mattex run's written) to its end,
frames/s over the frames after the first: the element tries the frame size on the model when caps
are set, mattex run at its first frame, and neither is counted;
and once, in a C++ process, Matter::run and the bare OpenVINO infer call on a frame of the same
size (mattex_overhead). Done when the element's frames/s is at least 0.95x mattex run's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpp_runtime import build_release  # noqa: E402
from PIL import Image  # noqa: E402

from mattex.calibration.synthetic import write_synthetic_video  # noqa: E402
from mattex.exporter.config import ExportConfig  # noqa: E402
from mattex.exporter.export import export_onnx  # noqa: E402
from mattex.measure.machine import describe_machine  # noqa: E402
from mattex.runtime.media import open_source  # noqa: E402
from mattex.runtime.pipeline import matte_media  # noqa: E402


def element_fps(
    build: Path, model: Path, frames: Path, count: int, background: Path, out: Path, env: dict, *options: str
) -> float:
    out.mkdir(parents=True, exist_ok=True)
    pipeline = (
        f"multifilesrc location={frames}/%06d.png index=0 stop-index={count - 1} caps=image/png,framerate=30/1 ! "
        f"pngdec ! queue ! mattex name=m model={model} background={background} output=alpha ! queue ! "
        f"pngenc ! multifilesink location={out}/%06d.png"
    )
    result = subprocess.run(
        [build / "tests" / "mattex_gst_probe", pipeline, *options], capture_output=True, text=True, env=env, check=True
    )
    passed = int(re.search(r"frames (\d+)", result.stdout).group(1))
    assert passed == count, result.stdout + result.stderr
    return (passed - 1) / float(re.search(r"seconds-after-first ([\d.]+)", result.stdout).group(1))


def run_fps(model: Path, frames: Path, background: Path, out: Path, cache: Path) -> float:
    """mattex run's frames/s after its first frame is written, as the element's is measured."""
    written: list[float] = []

    def progress(n: int) -> None:
        written.append(time.perf_counter())

    matte_media(
        model, frames, background, out, outputs=["pha"], png=True, backend="openvino", cache_dir=cache,
        progress=progress,
    )  # fmt: skip
    return (len(written) - 1) / (time.perf_counter() - written[0])


def cpp_frame_ms(build: Path, model: Path, height: int, width: int, rounds: int, env: dict) -> dict:
    """Matter::run and the bare OpenVINO infer, medians in ms (runtime/cpp/tests/overhead.cpp)."""
    out = subprocess.run(
        [build / "tests" / "mattex_overhead", model, str(height), str(width), str(rounds)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    label, run_ms, infer_ms, *_ = out.stdout.split()
    assert label == "ms", out.stdout
    return {"matter_run_ms": round(float(run_ms), 2), "bare_infer_ms": round(float(infer_ms), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    machine = describe_machine()
    print(f"CPU: {machine['cpu']}, {' + '.join(machine['instruction_sets'])}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build = build_release(tmp / "build")
        clip, background, frames = tmp / "clip.mp4", tmp / "bg.png", tmp / "frames"
        write_synthetic_video(clip, background, args.frames, args.height, args.width)
        frames.mkdir()
        for i, frame in enumerate(open_source(clip).frames()):
            Image.fromarray(frame).save(frames / f"{i:06d}.png")
        model = tmp / "m.onnx"
        export_onnx(ExportConfig(height=args.height, width=args.width), model)
        cache = tmp / "cache"
        env = {
            **os.environ,
            "GST_PLUGIN_PATH": str(build / "gstreamer"),
            "GST_REGISTRY": str(tmp / "registry.bin"),
            "MATTEX_CACHE": str(cache),
        }
        element, yielding, run = [], [], []
        for i in range(args.rounds):  # interleaved: a slow spell of the machine hits all three
            element.append(element_fps(build, model, frames, args.frames, background, tmp / f"gst{i}", env))
            yielding.append(element_fps(build, model, frames, args.frames, background, tmp / f"y{i}", env, "--yield"))
            run.append(run_fps(model, frames, background, tmp / f"run{i}", cache / "openvino"))
            print(
                f"round {i}: element {element[-1]:.3f}, its other threads yielding {yielding[-1]:.3f}, "
                f"mattex run {run[-1]:.3f} frames/s",
                flush=True,
            )
        bare = cpp_frame_ms(build, model, args.height, args.width, max(args.rounds, 5), env)
    row = {
        "backend": "openvino",
        "precision": "fp32",
        "backbone": "mobilenetv2",
        "size": [args.height, args.width],
        "frames": args.frames,
        "element_fps": round(statistics.median(element), 3),
        "mattex_run_fps": round(statistics.median(run), 3),
        "element_vs_run": round(statistics.median(element) / statistics.median(run), 3),
        "element_yielding_fps": round(statistics.median(yielding), 3),
        "element_yielding_vs_run": round(statistics.median(yielding) / statistics.median(run), 3),
        "cpp_matter_run_fps": round(1000 / bare["matter_run_ms"], 3),
        "cpp_bare_infer_fps": round(1000 / bare["bare_infer_ms"], 3),
        "element_rounds": [round(v, 3) for v in element],
        "element_yielding_rounds": [round(v, 3) for v in yielding],
        "run_rounds": [round(v, 3) for v in run],
        "cpp": bare,
    }
    print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": [row]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
