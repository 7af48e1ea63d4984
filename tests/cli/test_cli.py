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


def leaf_commands(command=None, path=()):
    """Every command a user runs, as its path of names (`("cache", "prune")`)."""
    from typer.main import get_command

    command = command or get_command(app)
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [path]
    return [leaf for name, sub in subcommands.items() for leaf in leaf_commands(sub, (*path, name))]


def test_every_commands_help_starts_with_a_copy_pasteable_example():
    commands = leaf_commands()
    assert len(commands) >= 16
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        lines = [line.strip() for line in result.output.splitlines() if line.strip()]
        first = lines[[i for i, line in enumerate(lines) if line.startswith("Usage:")][0] + 1]
        assert first.startswith(f"Example: mattex {' '.join(path)}"), (path, first)


def test_no_help_text_holds_what_markdown_drops():
    """The help is rendered as Markdown (to reflow docstrings), which drops `<word>` as an HTML
    tag: "(<output>/<frame>.png)" read "(/.png)". Every command's docstring and option help."""
    import re

    from typer.main import get_command

    dropped = []
    for path in leaf_commands():
        command = get_command(app)
        for name in path:
            command = command.commands[name]
        for text in [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]:
            dropped += [(path, tag) for tag in re.findall(r"<[A-Za-z][^<>]*>", text)]
    assert not dropped, dropped


def test_every_typed_error_is_documented_in_docs_errors():
    """docs/errors.md names every MattexError subclass a user can meet, so neither drifts."""
    from pathlib import Path

    import mattex.calibration.images
    import mattex.exporter.build
    import mattex.exporter.export
    import mattex.measure.verify  # noqa: F401  (their errors register as subclasses)
    from mattex.errors import MattexError

    def subclasses(cls):
        return {cls.__name__} | {name for sub in cls.__subclasses__() for name in subclasses(sub)}

    page = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    missing = sorted(name for name in subclasses(MattexError) - {"MattexError"} if f"`{name}`" not in page)
    assert not missing, f"docs/errors.md does not describe {missing}"
