"""`mattex verify` as hard as footage (issue 48): its generated pairs carry a misaligned,
re-exposed, noisy plate, textured rooms and near and far subjects, at three sizes; a mean is
judged by its upper confidence bound; a deployment gates CI on its own frames or video with
JSON and JUnit reports. Every precision's default export holds its footage budget, and a file
damaged just past the budget fails the new gate while the old one (two synthetic composites at
the trace size, the plain mean) passed it."""

import json
from xml.etree import ElementTree as ET

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

from helpers import PRECISION_SIZE
from mattex.calibration.footage import FootageSpec, footage_pair
from mattex.cli.main import app
from mattex.measure.budgets import BUDGETS, FOOTAGE, budget_for
from mattex.measure.inputs import footage_pairs, gate_sizes, synthetic_pairs
from mattex.measure.verify import Verifier
from mattex.measure.verify_report import upper_bound

runner = CliRunner()
SIZES = gate_sizes(PRECISION_SIZE, PRECISION_SIZE)  # the trace size and two others
# One sample at each size where the errors lie far below the budget, two for int8, whose
# heavy-tailed errors need them for an upper bound within its budget (CI time: ~3 s a sample).
SAMPLES = {"fp32": 3, "fp16": 3, "int8": 6}


def test_the_gate_sizes_are_the_trace_size_and_two_others():
    assert SIZES == [(256, 256), (192, 192), (192, 256)]
    assert gate_sizes(1080, 1920) == [(1080, 1920), (808, 1440), (808, 1920)]


def test_footage_pairs_carry_what_footage_carries():
    """The plate misaligned by 1-2 px (found back by cross-correlation), re-exposed, with its own
    noise; the subject near or far; textured backgrounds."""
    spec = FootageSpec()
    rng = np.random.default_rng(1)
    shifts, areas = [], []
    for _ in range(8):
        state = rng.bit_generator.state
        src, bgr = footage_pair(rng, 128, 128, spec)
        assert src.shape == bgr.shape == (3, 128, 128) and src.dtype == np.float32
        # Replay the draw without capture noise to find the subject's area and the plate's shift.
        rng2 = np.random.default_rng()
        rng2.bit_generator.state = state
        from mattex.calibration.footage import place_subject, textured_background
        from mattex.calibration.synthetic import synth_portrait

        _, pha = place_subject(*synth_portrait(rng2, 128, 128), rng2, spec)
        areas.append(float(pha.mean()))
        room = textured_background(rng2, 128, 128, spec)
        distance = rng2.uniform(*spec.shift_px)
        shifts.append(distance)
        # The room is textured: detail at fine scales (a photograph's 1/f spectrum).
        assert np.abs(np.diff(room.mean(0), axis=1)).mean() > 0.01
        # src and plate differ away from the subject (misalignment, exposure, noise).
        background = pha[0] == 0
        assert np.abs(src - bgr).mean(0)[background].mean() > 0.01
    assert all(1.0 <= s <= 2.0 for s in shifts)
    assert min(areas) < 0.15 < 0.3 < max(areas)  # far and near subjects


def test_a_mean_is_judged_by_its_upper_bound():
    mean, spread, upper = upper_bound([1.0, 2.0, 3.0])
    assert mean == 2.0 and spread == 1.0
    assert upper == pytest.approx(2.0 + 1.6448536 / np.sqrt(3), rel=1e-6)  # normal, one-sided 95%
    assert upper_bound([4.0]) == (4.0, 0.0, 4.0)


@pytest.fixture(scope="module")
def files(fp32_file, fp16_file, int8_file):
    return {"fp32": fp32_file, "fp16": fp16_file, "int8": int8_file}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_each_precision_holds_its_footage_budget_at_three_sizes(files, precision):
    with Verifier(files[precision]) as verifier:
        if precision == "fp32":  # its own default is uniform noise: footage asked for
            report = verifier.verify(footage_pairs(SAMPLES[precision], 1, SIZES, seed=1), kind=FOOTAGE)
        else:  # `mattex verify`'s default inputs
            report = verifier.verify(samples=SAMPLES[precision])
    assert report.inputs == FOOTAGE and report.samples == SAMPLES[precision]
    assert [tuple(s) for s in report.sizes] == SIZES
    assert report.passed, report.failures
    budget = budget_for(precision, FOOTAGE)
    for name, diff in report.outputs.items():
        assert diff.mean_abs <= diff.mean_abs_upper <= budget.outputs[name].mean_abs, name
    assert report.patch_mismatch_upper <= budget.patch_mismatch


def damaged_copy(src, dst, eps=0.02):
    """The fp16 file with the refiner's last convolution's foreground channels (1-3: the
    residual added to src) multiplied by 1 + eps * N(0, 1): just past fp16's fgr budget on
    footage, within it on the old gate's synthetic composites."""
    model = onnx.load(str(src))
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and "refiner/conv4" in n.name)
    init = next(t for t in model.graph.initializer if t.name == conv.input[1])
    weight = numpy_helper.to_array(init).astype(np.float32)
    noise = 1 + eps * np.random.default_rng(0).standard_normal(weight.shape)
    weight[1:4] *= noise[1:4]
    init.CopyFrom(numpy_helper.from_array(weight.astype(numpy_helper.to_array(init).dtype), init.name))
    onnx.save(model, str(dst))


def test_a_damaged_file_fails_the_footage_gate_and_passed_the_old_one(fp16_file, tmp_path):
    damaged = tmp_path / "damaged_fp16.onnx"
    damaged_copy(fp16_file, damaged)
    with Verifier(damaged) as verifier:
        # The old gate: `mattex verify`'s former default, 2 synthetic composites at the trace size,
        # judged by the plain mean.
        old = verifier.verify(synthetic_pairs(2, 1, PRECISION_SIZE, PRECISION_SIZE))
    budget = BUDGETS["fp16"]
    assert all(d.max_abs <= d.budget_max_abs and d.mean_abs <= d.budget_mean_abs for d in old.outputs.values())
    assert old.patch_mismatch <= budget.patch_mismatch
    # The new gate, from the command line as CI runs it, with both reports.
    args = ["verify", str(damaged), "--samples", str(SAMPLES["fp16"]), "--json", str(tmp_path / "r.json")]
    result = runner.invoke(app, [*args, "--junit", str(tmp_path / "r.xml")])
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["inputs"] == FOOTAGE and not report["passed"]
    fgr = report["outputs"]["fgr"]
    assert fgr["mean_abs_upper"] > budget_for("fp16", FOOTAGE).outputs["fgr"].mean_abs
    assert fgr["mean_abs_upper"] < 3 * budget_for("fp16", FOOTAGE).outputs["fgr"].mean_abs  # just past it
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    failed = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    assert failed["fgr"] is not None and "95% upper bound" in failed["fgr"].get("message")
    assert int(suite.get("failures")) == sum(f is not None for f in failed.values()) >= 1
    assert int(suite.get("tests")) == len(report["outputs"]) + 1  # every output and the patches


def _frames_and_plate(folder, count, height=96, width=128):
    """Footage of one scene: frames of a subject over a room and the plate captured apart."""
    from mattex.calibration.footage import capture, textured_background
    from mattex.calibration.synthetic import synth_portrait

    rng = np.random.default_rng(2)
    room = textured_background(rng, height, width)
    to_u8 = lambda x: (np.clip(x, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    frames = []
    for _ in range(count):
        src, plate = capture(*synth_portrait(rng, height, width), room, rng)
        frames.append(to_u8(src))
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    Image.fromarray(to_u8(plate)).save(folder.parent / "plate.png")
    return frames, folder.parent / "plate.png"


def test_a_deployment_gates_ci_on_its_own_frames_and_video(fp16_file, tmp_path):
    from fractions import Fraction

    from mattex.runtime.media import VideoSink

    frames, plate = _frames_and_plate(tmp_path / "frames", 3)
    reports = {"json": tmp_path / "frames.json", "junit": tmp_path / "frames.xml"}
    result = runner.invoke(
        app,
        ["verify", str(fp16_file), "--images", str(tmp_path / "frames"), "--background", str(plate)]
        + ["--json", str(reports["json"]), "--junit", str(reports["junit"])],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(reports["json"].read_text())
    assert report["passed"] and report["inputs"] == FOOTAGE and report["samples"] == 3
    assert report["sizes"] == [[96, 128]]
    suite = ET.parse(reports["junit"]).getroot().find("testsuite")
    assert suite.get("failures") == "0" and not list(suite.iter("failure"))
    assert [c.get("name") for c in suite.iter("testcase")] == [*report["outputs"], "patches"]
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary left
    sink = VideoSink(tmp_path / "clip.mp4", Fraction(24), (96, 128))
    for _ in range(3):
        for frame in frames:
            sink.write(frame)
    sink.close(keep=True)
    result = runner.invoke(
        app,
        ["verify", str(fp16_file), "--video", str(tmp_path / "clip.mp4"), "--background", str(plate)]
        + ["--samples", "3", "--json", str(tmp_path / "video.json")],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "video.json").read_text())
    assert report["inputs"] == FOOTAGE and report["samples"] == 3 and report["sizes"] == [[96, 128]]


@pytest.mark.parametrize(
    "given, message",
    [
        (["--video", "a.mp4", "--images", "f", "--background", "p.png"], "choose --images or --video, not both"),
        (["--video", "a.mp4"], "--background goes with --images or --video, and they need it"),
        (["--background", "p.png"], "--background goes with --images or --video, and they need it"),
        (["--video", "a.mp4", "--background", "p.png", "--data", "d"], "choose --images, --video or --data, not two"),
    ],
)
def test_footage_options_that_do_not_go_together_are_refused(given, message):
    result = runner.invoke(app, ["verify", "m.onnx", *given])  # refused before any file is read
    assert result.exit_code == 2 and f"error: ConfigError: {message}" in " ".join(result.output.split())
