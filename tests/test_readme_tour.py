"""The README's tour, command by command, as a new user types it (in an empty folder)."""

import shlex
from pathlib import Path

from typer.testing import CliRunner

from mattex.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_commands() -> list[list[str]]:
    lines = README.read_text().split("<!-- tour -->", 1)[1].split("```console", 1)[1].split("```", 1)[0]
    return [
        shlex.split(line[2:].split("  #", 1)[0]) for line in lines.strip().splitlines() if line.startswith("$ mattex ")
    ]


def test_the_tour_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = tour_commands()
    assert [c[1] for c in commands] == ["export", "verify", "data", "run", "bench"]
    for command in commands:
        result = CliRunner().invoke(app, command[1:])
        assert result.exit_code == 0, f"{shlex.join(command)}:\n{result.output}"
    assert sorted(p.name for p in (tmp_path / "matted").iterdir()) == ["com.mp4", "fgr.mp4", "pha.mp4"]
