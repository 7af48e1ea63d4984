"""`mattex doctor` on this machine: the quick plan passes, its report is written, ONNX Runtime and
OpenVINO hold every file to its budget, TensorRT for RTX builds every engine and its runs say why
they did not run (no GPU); planted failures fail their rows and the rest still run. And
`mattex verify ENGINE`, up to the point a GPU is needed."""

import json

import pytest
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.measure import doctor as doctor_module
from mattex.runtime.backends import BACKENDS, BackendEntry

runner = CliRunner()
trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed")


def test_doctor_quick_passes_on_this_machine(tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(app, ["doctor", "--quick", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.output)
    assert report == json.loads((out / "doctor.json").read_text()) and report["passed"]
    assert (out / "doctor.md").read_text().startswith("# mattex doctor (quick): passed")
    rows = report["rows"]
    variants = {r["subject"] for r in rows if r["step"] == "export"}
    assert variants == {v.label for v in doctor_module.quick_plan().variants}
    assert all(r["status"] == "passed" for r in rows if r["step"] == "export")
    # The presets at full size (an export that fails the TensorRT check raises: passed is checked).
    exported = {r["subject"]: r["detail"] for r in rows if r["step"] == "export"}
    assert "k = 5000, traced at 1080x1920" in exported["mobilenetv2 hd fp32"]
    assert "k = 20000, traced at 2160x3840" in exported["mobilenetv2 4k fp32"]
    for backend in ("onnxruntime", "openvino"):
        verified = {r["subject"]: r["status"] for r in rows if r["step"] == "verify" and r["backend"] == backend}
        assert verified == dict.fromkeys(variants, "passed"), (backend, verified)
    built = [r for r in rows if r["step"] == "build" and r["backend"] == "tensorrt-rtx"]
    assert {r["subject"] for r in built} == variants and all(r["status"] == "passed" for r in built)
    runs = [r for r in rows if r["step"] == "verify" and r["backend"] == "tensorrt-rtx"]
    assert len(runs) == len(variants) and all(r["status"] == "skipped" and "no CUDA GPU" in r["detail"] for r in runs)
    timed = {
        (r["subject"].split(" at ")[-1], r["backend"]) for r in rows if r["step"] == "time" and r["status"] == "passed"
    }
    for size in ("hd", "4k"):
        for runner_name in (
            "onnxruntime cpu",
            "openvino cpu",
            "pytorch cpu, mattex model",
            "pytorch cpu, reference patch method",
        ):
            assert (size, runner_name) in timed, (size, runner_name)
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["packages"]["onnxruntime"] and "instruction_sets" in machine


@pytest.fixture
def planted():
    for name, cls in (("raising", "RaisingBackend"), ("off-budget", "OffBudgetBackend")):
        BACKENDS.register(BackendEntry(name, "planted_backends", cls, (".onnx",), install="planted"))
    yield
    for name in ("raising", "off-budget"):
        BACKENDS.remove(name)


def test_planted_failures_fail_their_rows_and_the_rest_runs(planted, tmp_path, monkeypatch):
    small = doctor_module.Plan("planted", (doctor_module.quick_plan().variants[0],), verify_size=(96, 128))
    monkeypatch.setattr(doctor_module, "quick_plan", lambda: small)
    result = runner.invoke(app, ["doctor", "--quick", "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 1, result.output[-3000:]
    rows = {(r["step"], r["backend"]): r for r in json.loads(result.output)["rows"]}
    raised = rows["verify", "raising"]
    assert raised["status"] == "failed" and raised["error"] == "RuntimeError" and "planted" in raised["detail"]
    over = rows["verify", "off-budget"]
    assert over["status"] == "failed" and "over budget" in over["detail"] and "pha" in over["detail"]
    for backend in ("onnxruntime", "openvino"):
        assert rows["verify", backend]["status"] == "passed"
    assert rows["build", "tensorrt-rtx"]["status"] == "passed"  # the steps after the failures ran
    assert (tmp_path / "r" / "doctor.md").read_text().startswith("# mattex doctor (planted): FAILED")


def test_verify_an_engine_up_to_the_gpu(small_file, tmp_path):
    from mattex.exporter.build import build_engine, parse_profile
    from mattex.runtime.sidecar import load_sidecar

    engine = tmp_path / "m.engine"
    build_engine(small_file, engine, [parse_profile("96x128")], "tensorrt-rtx")
    assert load_sidecar(engine).onnx_file == str(small_file)  # the sidecar names its ONNX file
    result = runner.invoke(app, ["verify", str(engine)])
    assert result.exit_code == 2, result.output
    assert "BackendUnavailableError" in result.output and "no CUDA GPU" in result.output
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    sidecar["export_metadata"] = {}
    (tmp_path / "m.engine.json").write_text(json.dumps(sidecar))
    result = runner.invoke(app, ["verify", str(engine)])
    assert result.exit_code == 2 and "ModelFileError" in result.output and "export metadata" in result.output


def test_doctor_exits_2_naming_an_out_that_is_a_file(tmp_path):
    """A user error (the report folder is a file) is a typed error and exit 2, before any work."""
    taken = tmp_path / "report"
    taken.write_text("not a folder")
    result = runner.invoke(app, ["doctor", "--quick", "--out", str(taken)])
    assert result.exit_code == 2, result.output
    assert "OutputPathError" in result.output and "report" in result.output
    assert taken.read_text() == "not a folder"
