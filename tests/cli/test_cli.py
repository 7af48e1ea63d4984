"""The `mattex` command: help, version and `info` on a saved state_dict."""

import json
import subprocess

import pytest
import torch
from typer.testing import CliRunner

import mattex
from mattex.cli.main import app
from mattex.model import MattingRefine

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "pytorch_mobilenetv2.pth"
    torch.save(MattingRefine("mobilenetv2").state_dict(), path)
    return path


def test_console_script_help_and_version():
    # The installed entry point, not just the Typer app object.
    help_text = subprocess.run(["mattex", "--help"], capture_output=True, text=True, check=True).stdout
    assert "Example: mattex export" in help_text and "info" in help_text
    version = subprocess.run(["mattex", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"mattex {mattex.__version__}"


def test_info_help_starts_with_an_example():
    result = runner.invoke(app, ["info", "--help"])
    assert result.exit_code == 0
    assert "Example: mattex info pytorch_resnet50.pth" in result.output


def test_info_reports_backbone_parameters_and_key_check(checkpoint):
    result = runner.invoke(app, ["info", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "mobilenetv2 (inferred from keys)" in result.output
    assert "5,006,839" in result.output and "OK" in result.output


def test_info_json_is_machine_readable(checkpoint):
    result = runner.invoke(app, ["info", str(checkpoint), "--json"])
    facts = json.loads(result.output)
    assert facts["backbone"] == "mobilenetv2" and facts["parameters"] == 5_006_839
    assert facts["keys_match"] is True and facts["keys"] == 382


def test_info_exits_1_and_lists_differences_on_mismatch(tmp_path, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pth")
    result = runner.invoke(app, ["info", str(tmp_path / "odd.pth"), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["unexpected"] == ["extra.weight"]


def test_info_on_an_unsafe_file_is_a_one_line_error(tmp_path):
    torch.save({"m": MattingRefine("mobilenetv2")}, tmp_path / "module.pth")
    result = runner.invoke(app, ["info", str(tmp_path / "module.pth")])
    assert result.exit_code == 2
    assert "UnsafeCheckpointError" in result.output and "Traceback" not in result.output
