"""`mattex doctor` on this machine: the quick plan passes, its report is written, ONNX Runtime and
OpenVINO hold every file to its budget, TensorRT for RTX builds every engine and its runs say why
they did not run (no GPU); planted failures fail their rows and the rest still run. And
`mattex verify ENGINE`, up to the point a GPU is needed."""

import dataclasses
import json
import socket

import pytest
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.measure import doctor as doctor_module
from mattex.runtime.backends import BACKENDS, BackendEntry

runner = CliRunner()
trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed")


@pytest.fixture
def network_attempts(monkeypatch):
    """Every attempt of Python code in this process to resolve a name or open an internet socket
    (it is refused and recorded): docs/commands/doctor.md says doctor touches no network."""
    attempts = []

    def refuse(what):
        attempts.append(what)
        raise OSError(f"no network in this test: {what}")

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(f"connect {address}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(f"connect_ex {address}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *_, **__: refuse(f"getaddrinfo {host}"))
    return attempts


def test_doctor_quick_passes_on_this_machine(tmp_path, network_attempts):
    out = tmp_path / "report"
    result = runner.invoke(app, ["doctor", "--quick", "--out", str(out), "--json"])
    assert network_attempts == []  # everything it needs ships with the package
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
    with pytest.raises(OSError, match="no network in this test"):  # the guard itself held
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert len(network_attempts) == 1


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


def test_the_full_plan_through_the_cli_with_its_small_variants(tmp_path, monkeypatch):
    """`mattex doctor` without --quick runs full_plan(): here its own variants on the small file
    (fp32, uint8 frames, fp16 and int8 calibrated on synthetic composites), verified at a small
    size with the full plan's samples and calibration; the presets and resnet50 cost minutes at
    their size on a CPU (the whole plan's last run: docs/commands/doctor.md)."""
    full = doctor_module.full_plan()
    assert {v.label for v in doctor_module.quick_plan().variants} < {v.label for v in full.variants}
    assert {"small fp16", "small int8", "mobilenetv2 hd fp32 uint8", "resnet50 4k fp16"} <= {
        v.label for v in full.variants
    }
    assert (full.verify_size, full.verify_samples, full.rounds) == ((544, 960), 2, 3)
    small = dataclasses.replace(
        full, variants=tuple(v for v in full.variants if v.label.startswith("small")), verify_size=(96, 128)
    )
    monkeypatch.setattr(doctor_module, "full_plan", lambda: small)
    result = runner.invoke(app, ["doctor", "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    rows = json.loads(result.output)["rows"]
    labels = {"small fp32", "small fp32 uint8", "small fp16", "small int8"}
    assert {r["subject"] for r in rows if r["step"] == "export" and r["status"] == "passed"} == labels
    verified = {r["subject"] for r in rows if r["step"] == "verify" and r["backend"] == "onnxruntime"}
    assert verified == labels and all(r["status"] != "failed" for r in rows)
    from mattex.runtime.backends.openvino import INT8_REFUSAL

    on_openvino = {r["subject"]: r for r in rows if r["step"] == "verify" and r["backend"] == "openvino"}
    assert on_openvino["small int8"]["status"] == "skipped" and on_openvino["small int8"]["detail"] == INT8_REFUSAL
    assert {s for s, r in on_openvino.items() if r["status"] == "passed"} == labels - {"small int8"}
    assert (tmp_path / "r" / "doctor.md").read_text().startswith("# mattex doctor (full): passed")


def test_each_file_is_verified_at_the_plan_size_or_its_smaller_trace_size():
    """The small file's k = 1,000 is sized for 240x320; at the full plan's 544x960 most of the
    frame would come from the coarse output and its int8 file measured pha mean 0.0081 against
    a budget of 0.006 (at 240x320: within budget), so it is verified at its own size."""
    full = doctor_module.full_plan()
    configs = {v.label: v.config for v in full.variants}
    assert doctor_module.verify_size(full, configs["small int8"]) == (240, 320)
    assert doctor_module.verify_size(full, configs["mobilenetv2 hd int8"]) == (544, 960)
    assert doctor_module.verify_size(doctor_module.quick_plan(), configs["small fp32"]) == (256, 256)
