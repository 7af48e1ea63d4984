"""`mattex run` end to end against the model alone, side by side in one process.

    python benchmarks/run_pipeline.py --precisions fp32 int8 --backends onnxruntime openvino --json run.json

For each precision it exports mobilenetv2 (demo weights) at HD, writes a synthetic HD clip
(`mattex data synth-video`), and then, for each backend that runs the file (OpenVINO refuses
int8 files), interleaved round by round:
- pure inference: `Matter.matte_frames` on the clip's frames, decoded beforehand into memory,
  one frame per call, as `mattex run --batch 1` calls it;
- `mattex run --backend B` (`matte_media`): decode, matte and encode com, pha and fgr to H.264
  in their own threads.
It reports frames/s of each and their ratio (the pipeline hides decoding and encoding when the
ratio is near 1), which backend `mattex run` picks without `--backend` (`auto_backend`), with
the CPU's model and instruction sets: the backend with the higher run_fps is the one the
automatic choice should pick.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mattex.calibration.int8 import CalibrationSettings  # noqa: E402
from mattex.calibration.synthetic import write_synthetic_photomatte, write_synthetic_video  # noqa: E402
from mattex.errors import BackendUnavailableError  # noqa: E402
from mattex.exporter.config import ExportConfig  # noqa: E402
from mattex.exporter.export import export_onnx  # noqa: E402
from mattex.measure.machine import describe_machine  # noqa: E402
from mattex.runtime import Matter  # noqa: E402
from mattex.runtime.media import Background, open_source  # noqa: E402
from mattex.runtime.pipeline import matte_media  # noqa: E402


def pure_inference(model: Path, frames, background, backend: str) -> float:
    """frames/s of the model alone on frames already in memory."""
    matter = Matter.open(model, backend=backend)
    started = time.perf_counter()
    for frame in frames:
        matter.matte_frames(frame[None], background[None])
    return len(frames) / (time.perf_counter() - started)


def end_to_end(model: Path, clip: Path, background: Path, out: Path, backend: str) -> float:
    return matte_media(model, clip, background, out, backend=backend).stats.fps


def runs_here(model: Path, backend: str) -> bool:
    try:
        Matter.open(model, backend=backend)
    except BackendUnavailableError:  # OpenVINO refuses int8 files; a backend not installed
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "openvino"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results = {"machine": describe_machine(), "size": [args.height, args.width], "frames": args.frames, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip, background = tmp / "clip.mp4", tmp / "bg.png"
        write_synthetic_video(clip, background, args.frames, args.height, args.width)
        frames = list(open_source(clip).frames())
        still = next(Background(background, frames[0].shape[:2], len(frames), False).frames())
        models = {}
        for precision in args.precisions:
            calibration = None
            if precision == "int8":
                write_synthetic_photomatte(tmp / "data", 4, 1, args.height, args.width)
                calibration = CalibrationSettings(tmp / "data", None, samples=4)
            models[precision] = tmp / f"m_{precision}.onnx"
            export_onnx(
                ExportConfig(height=args.height, width=args.width, precision=precision),
                models[precision],
                calibration=calibration,
            )
        for precision, model in models.items():
            backends = [b for b in args.backends if runs_here(model, b)]
            pure = {b: [] for b in backends}
            run = {b: [] for b in backends}
            for _ in range(args.rounds):
                for backend in backends:  # interleaved: a slow spell of the machine hits both
                    pure[backend].append(pure_inference(model, frames, still, backend))
                    run[backend].append(end_to_end(model, clip, background, tmp / "out", backend))
            auto_backend = matte_media(model, clip, background, tmp / "out").backend
            for backend in backends:
                row = {
                    "precision": precision,
                    "backend": backend,
                    "auto_backend": auto_backend,
                    "pure_fps": round(statistics.median(pure[backend]), 3),
                    "run_fps": round(statistics.median(run[backend]), 3),
                    "ratio": round(statistics.median(run[backend]) / statistics.median(pure[backend]), 3),
                    "pure_rounds": [round(v, 3) for v in pure[backend]],
                    "run_rounds": [round(v, 3) for v in run[backend]],
                }
                print(json.dumps(row), flush=True)
                results["rows"].append(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
