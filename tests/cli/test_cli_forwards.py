"""The CLI forwards to the library: what a flag combination may not do, the library refuses
(a Python caller gets the same refusal), `--json` is declared once, flags read as flags in
`--help`, and every help, the groups' and the root's included, starts with an example."""

import pytest
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import ConfigError
from tests.test_layout import ROOT

runner = CliRunner()


@pytest.mark.parametrize("group", [(), ("data",), ("cache",)], ids=["mattex", "data", "cache"])
def test_every_group_s_help_starts_with_an_example(group):
    result = runner.invoke(app, [*group, "--help"], terminal_width=200)
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    first = lines[next(i for i, line in enumerate(lines) if line.startswith("Usage:")) + 1]
    assert first.startswith(f"Example: mattex {' '.join(group)}".rstrip()), first


@pytest.mark.parametrize("command", ["run", "export", "serve", "build"])
def test_flags_read_as_flags(command):
    said = runner.invoke(app, [command, "--help"], terminal_width=200).output
    assert "<bool>" not in said and ("--json" in said or command == "serve")


def test_json_is_declared_once():
    declared = sorted(p.name for p in (ROOT / "cli").glob("*.py") if '"--json"' in p.read_text())
    # verify's --json takes a path to write the report to: another option under the same name
    assert declared == ["common.py", "verify.py"]


def test_a_python_caller_gets_the_cli_s_refusal_of_calibration_without_int8(tmp_path):
    from mattex.calibration.settings import CalibrationSettings
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.workflow import export_and_build

    config = ExportConfig(height=64, width=64, sample_pixels=640, precision="fp16")
    with pytest.raises(
        ConfigError, match=r"`samples`, `calibration_cache` only apply to `int8` exports \(this one is fp16\)"
    ):
        export_and_build(
            config,
            tmp_path / "m.onnx",
            calibration=CalibrationSettings(None, samples=8),
            calibration_cache=tmp_path / "c.json",
            build=False,
        )
    assert list(tmp_path.iterdir()) == []
    said = runner.invoke(app, ["export", "--calibration-method", "entropy", "-o", str(tmp_path / "m.onnx")]).output
    assert "error: ConfigError: --calibration-method only apply to --int8 exports (this one is fp32)" in " ".join(
        said.split()
    )


def test_check_s_build_options_are_the_library_s_to_refuse_and_to_apply(small_file):
    from mattex.exporter.lint import check_file

    with pytest.raises(ConfigError, match="`backend`, `profile` and `batch` go with `build`"):
        check_file(small_file, batch=2)
    said = " ".join(runner.invoke(app, ["check", str(small_file), "--batch", "2"]).output.split())
    assert "error: ConfigError: --backend, --profile and --batch go with --build" in said
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX builds the file (pip install 'mattex[rtx]')")
    _, built = check_file(small_file, "tensorrt-rtx", build=True, batch=2)  # no profile: the trace size
    assert built.passed and [p.max for p in built.profiles] == [(2, 96, 128)]
