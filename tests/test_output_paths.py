"""Issue 47, item 1: one rule for every output a command writes (mattex.files):

- a path that exists and is neither a regular file nor a folder (a FIFO, a device, a socket) is
  refused by name, never replaced by a plain file;
- a symbolic link is written through: the link stays, its target gets the new content (a link
  that cannot be followed, a loop, is refused);
- a path ending in a separator names a folder: a file output given one is refused;
- no command writes over one of its own inputs, `--force` or not.

The library's writers are tried directly; then every command that writes a file or a folder is
walked through the CLI with a FIFO where its output goes. Every refusal comes before the work
(no model is read, nothing traced), so no test here exports anything."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import OutputPathError
from mattex.files import (
    atomic_path,
    atomic_paths,
    atomic_write_text,
    check_not_input,
    commit,
    output_folder,
    temporary_folder_beside,
)

runner = CliRunner()
DEMO_WEIGHTS = Path(__file__).parents[1] / "model" / "weights" / "demo_mobilenetv2.pth"


def one_line(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _write_file(path):
    atomic_write_text(path, "new")


def _write_pair(path):
    with atomic_paths(path, Path(str(path) + ".json")) as (first, second):
        first.write_text("plan")
        second.write_text("{}")


def _write_folder(path):
    tmp = temporary_folder_beside(path)
    (tmp / "frame.png").write_text("png")
    commit(tmp, path)


def _write_into_folder(path):
    with output_folder(path) as folder:
        (folder / "report.json").write_text("{}")


WRITERS = [_write_file, _write_pair, _write_folder, _write_into_folder]


@pytest.mark.parametrize("write", WRITERS, ids=lambda w: w.__name__)
def test_a_fifo_is_refused_by_name_and_stays_a_fifo(fifo, write):
    with pytest.raises(OutputPathError, match=r"pipe.* is a FIFO \(named pipe\)"):
        write(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in fifo.parent.iterdir()) == ["pipe"]


@pytest.mark.parametrize("write", WRITERS, ids=lambda w: w.__name__)
def test_a_link_to_a_device_is_refused_by_name_and_the_device_kept(tmp_path, write):
    """A link to /dev/null: as root, replacing it would have turned the device into a file."""
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    with pytest.raises(OutputPathError, match=r"null( \(a link to /dev/null\))?: it is a character device"):
        write(link)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode) and link.is_symlink()


def test_a_socket_is_refused_by_name(tmp_path):
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(OutputPathError, match="s.sock: it is a socket"):
            atomic_write_text(path, "new")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    """The documented choice (docs/errors.md): the link stays a link and its target gets the
    content, as open(path, "w") would do; before, the link became a plain file and its target
    was left untouched."""
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target.name)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "target.json"]

    dangling = tmp_path / "later.json"  # a link to a file not written yet: written through too
    dangling.symlink_to("made.json")
    with atomic_path(dangling) as tmp:
        tmp.write_text("made")
    assert dangling.is_symlink() and (tmp_path / "made.json").read_text() == "made"


def test_a_symlink_loop_is_refused(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OutputPathError, match="a symbolic link that cannot be followed"):
        atomic_write_text(tmp_path / "a", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_path_ending_in_a_separator_is_a_folder(tmp_path, monkeypatch):
    """`export -o newdir/` wrote a file named newdir: a file output that names a folder is
    refused, and nothing is made."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputPathError, match="newdir/: a path ending in / names a folder; give a file name"):
        atomic_write_text("newdir/", "new")
    _write_into_folder("newdir/")  # where a folder is meant, the separator is what it says
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newdir"] and (tmp_path / "newdir").is_dir()


def test_an_input_is_never_an_output_under_any_name(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_text("weights")
    (tmp_path / "link.pth").symlink_to(weights.name)
    os.link(weights, tmp_path / "hard.pth")
    for name in ("w.pth", "link.pth", "hard.pth", "./sub/../w.pth"):
        with pytest.raises(OutputPathError, match="it is the checkpoint this command reads"):
            check_not_input(tmp_path / name, {"checkpoint": weights})
    (tmp_path / "frames").mkdir()
    with pytest.raises(OutputPathError, match="it holds the source this command reads"):
        check_not_input(tmp_path / "frames", {"source": tmp_path / "frames" / "0001.png"})
    check_not_input(tmp_path / "other.onnx", {"checkpoint": weights, "unused": None})


# -- every command that writes, through the CLI --------------------------------------------------

# Each command's output option, {out} standing for the path under test; {model}, {image}: inputs
# (made below; every refusal comes before they are read).
SMALL = ["--height", "64", "--width", "64", "--sample-pixels", "640"]
WRITING_COMMANDS = {
    "export": ["export", *SMALL, "--no-engine", "-o", "{out}"],
    "export --calibration-cache": ["export", "--int8", "--calibration-cache", "{out}", "-o", "{dir}/m.onnx"],
    "build": ["build", "{model}", "-o", "{out}"],
    "verify --json": ["verify", "{model}", "--json", "{out}"],
    "triton-repo": ["triton-repo", "{model}", "--out", "{out}"],
    "data synth": ["data", "synth", "--out", "{out}", "--count", "1"],
    "data synth --backgrounds": ["data", "synth", "--out", "{dir}/fg", "--backgrounds", "{out}", "--count", "1"],
    "data synth-video --out": ["data", "synth-video", "--out", "{out}", "--background", "{dir}/bg.png"],
    "data synth-video --background": ["data", "synth-video", "--out", "{dir}/c.mp4", "--background", "{out}"],
    "run": ["run", "{model}", "{image}", "{image}", "--out", "{out}"],
    "doctor": ["doctor", "--quick", "--out", "{out}"],
}
FILE_OUTPUTS = {"export", "build", "verify --json", "data synth-video --out", "data synth-video --background"}


def _argv(command: str, out: str, folder: Path) -> list[str]:
    model, image = folder / "m.onnx", folder / "frame.png"
    for path in (model, image):
        path.write_bytes(b"an input: never read, the refusal comes first")
    names = {"{out}": out, "{dir}": str(folder), "{model}": str(model), "{image}": str(image)}
    argv = []
    for word in WRITING_COMMANDS[command]:
        for key, value in names.items():
            word = word.replace(key, value)
        argv.append(word)
    return argv


@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_every_command_refuses_a_fifo_where_its_output_goes(tmp_path, fifo, command):
    result = runner.invoke(app, _argv(command, str(fifo), tmp_path))
    assert result.exit_code == 2, result.output
    assert "error: OutputPathError:" in one_line(result) and "is a FIFO (named pipe)" in one_line(result)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png", "m.onnx", "pipe"]


@pytest.mark.parametrize("command", sorted(FILE_OUTPUTS))
def test_every_file_output_refuses_a_path_ending_in_a_separator(tmp_path, command):
    result = runner.invoke(app, _argv(command, str(tmp_path / "newdir") + "/", tmp_path))
    assert result.exit_code == 2, result.output
    assert "newdir/: a path ending in / names a folder; give a file name" in one_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png", "m.onnx"]


def test_the_commands_whose_json_goes_to_stdout_write_no_file():
    """bench, evaluate and check print their --json to stdout (a flag, no path): nothing of
    theirs can land on a FIFO or a device but what the shell redirects."""
    commands = typer.main.get_command(app).commands
    for name in ("bench", "evaluate", "check", "export", "build", "run", "doctor"):
        (option,) = [p for p in commands[name].params if "--json" in p.opts]
        assert option.is_flag, name
    assert set(WRITING_COMMANDS) >= {"export", "build", "verify --json", "triton-repo", "run", "doctor"}


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["export", "--checkpoint", "{w.pth}", *SMALL, "-o", "{w.pth}", "--force", "--no-engine"], "checkpoint"),
        (["export", "--checkpoint", "{w.pth}", *SMALL, "-o", "{link.pth}", "--force", "--no-engine"], "checkpoint"),
        (["export", "--checkpoint", "{w.engine}", *SMALL, "-o", "{w.onnx}", "--force"], "checkpoint"),
        (["build", "{m.onnx}", "-o", "{m.onnx}"], "ONNX file"),
        (["build", "{p.json}", "-o", "{p}"], "ONNX file"),  # its sidecar, p.json, would replace the ONNX file
        (["verify", "{m.onnx}", "--json", "{m.onnx}"], "model file"),
        (["run", "{m.onnx}", "{out}/com.mp4", "{bg.png}", "--out", "{out}"], "source"),
        (["run", "{m.onnx}", "{out}/pha/0.png", "{bg.png}", "--out", "{out}", "--png"], "source"),
        (["run", "{m.onnx}", "{f.png}", "{out}/pha.mp4", "--out", "{out}"], "background"),
    ],
    ids=["export", "export-link", "export-engine", "build", "build-sidecar", "verify", "run", "run-png", "run-bgr"],
)
def test_no_command_writes_over_its_own_inputs(tmp_path, argv, role):
    """Row `export --checkpoint w.pth -o w.pth --force`: the checkpoint was overwritten by the
    ONNX file. Every command that reads a file refuses to write over it, --force or not."""
    (tmp_path / "out" / "pha").mkdir(parents=True)
    inputs = ["w.pth", "w.engine", "m.onnx", "p.json", "bg.png", "f.png", "out/com.mp4", "out/pha/0.png", "out/pha.mp4"]
    for name in inputs:
        (tmp_path / name).write_bytes(b"an input that must survive")
    for name in ("w.pth", "w.engine"):  # real weights: without the check, export reads them and writes over them
        shutil.copyfile(DEMO_WEIGHTS, tmp_path / name)
    (tmp_path / "link.pth").symlink_to("w.pth")
    words = [w.replace("{out}", str(tmp_path / "out")) for w in argv]
    words = [str(tmp_path / w[1:-1]) if w.startswith("{") and w.endswith("}") else w for w in words]
    before = {name: (tmp_path / name).read_bytes() for name in inputs}
    result = runner.invoke(app, words)
    assert result.exit_code == 2, result.output
    assert "error: OutputPathError:" in one_line(result), result.output
    assert f"the {role} this command reads" in one_line(result)
    assert {name: (tmp_path / name).read_bytes() for name in inputs} == before


@pytest.mark.parametrize(
    "argv, roles",
    [
        (["data", "synth-video", "--out", "{x}", "--background", "{x}", "--frames", "1"], ("background", "clip")),
        (["data", "synth-video", "--out", "{x}", "--background", "{link}", "--frames", "1"], ("background", "clip")),
        (["verify", "{m.onnx}", "--json", "{x}", "--junit", "{x}"], ("JUnit report", "JSON report")),
        (["export", "-o", "{x}", "--int8", "--calibration-cache", "{x}"], ("calibration cache", "ONNX file")),
    ],
    ids=["synth-video", "synth-video-link", "verify", "export"],
)
def test_two_outputs_of_one_command_at_one_path_are_refused(tmp_path, argv, roles):
    """`synth-video --out x --background x` wrote the background over the clip and reported both:
    two outputs of one command are never one file (under any name), refused before any work."""
    (tmp_path / "m.onnx").write_bytes(b"a model that must survive")
    (tmp_path / "link").symlink_to("x")
    words = [str(tmp_path / w[1:-1]) if w.startswith("{") else w for w in argv]
    result = runner.invoke(app, words)
    assert result.exit_code == 2, result.output
    assert "error: OutputPathError: cannot write " in one_line(result), result.output
    assert f"as the {roles[0]}: it is also the {roles[1]}" in one_line(result), result.output
    assert "give each output its own path" in one_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "m.onnx"]  # nothing written
