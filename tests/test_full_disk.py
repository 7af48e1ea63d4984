"""Every writer onto a real full disk (a small tmpfs, `tests/disks.py`), not a patched write: the
error is met where it really is (PyAV closing a video, Pillow writing a PNG, shutil copying a
model, TensorRT's plan, doctor's report), and each command says `OutputPathError: cannot write
<the file>: No space left on device`, exits 2 and leaves nothing: no partial or temporary file,
no folder it made."""

import onnx
import pytest
from disks import listing, small_disk
from typer.testing import CliRunner

from mattex.calibration.synthetic import write_synthetic_video
from mattex.cli.main import app
from mattex.errors import OutputPathError

runner = CliRunner()
H, W = 96, 128  # small_file's trace size


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Six frames: their three output videos need more than the 16 KiB disk holds."""
    folder = tmp_path_factory.mktemp("clip")
    write_synthetic_video(folder / "clip.mp4", folder / "bg.png", 6, H, W, 24)
    return folder


def said_full_disk(result, path) -> None:
    output = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 2, result.output
    assert "OutputPathError" in output and f"cannot write {path}" in output, output
    assert "No space left on device" in output and "Traceback" not in output


@pytest.mark.parametrize("png", [False, True], ids=["video", "png"])
def test_run_onto_a_full_disk_exits_2_and_leaves_nothing(small_file, clip, tmp_path, png):
    """The video's bytes reach the disk when PyAV flushes or closes the container (which raised
    av.error.OSError out of `run`); a PNG's while Pillow saves it (Pillow's OSError)."""
    with small_disk(tmp_path / "disk", "16k") as disk:
        command = ["run", str(small_file), str(clip / "clip.mp4"), str(clip / "bg.png"), "--out", str(disk / "out")]
        result = runner.invoke(app, [*command, "--backend", "onnxruntime", *(["--png"] if png else [])])
        said_full_disk(result, f"{disk / 'out'}/")  # the output it was writing
        assert listing(disk) == []


def test_triton_repo_onto_a_full_disk_exits_2_and_leaves_nothing(small_file, tmp_path):
    """The model's copy into version 1 (shutil's OSError before)."""
    with small_disk(tmp_path / "disk", "64k") as disk:
        result = runner.invoke(app, ["triton-repo", str(small_file), "--out", str(disk / "repo"), "--name", "m"])
        said_full_disk(result, disk / "repo" / "m" / "1" / "model.onnx")
        assert listing(disk) == []


def test_an_export_written_onto_a_full_disk_is_an_output_path_error_and_leaves_nothing(small_file, tmp_path):
    """What `mattex export` writes, through the function it writes with (tracing again would
    cost seconds and test nothing more)."""
    from mattex.exporter.export import write_atomically

    with small_disk(tmp_path / "disk", "64k") as disk:
        with pytest.raises(OutputPathError, match="No space left on device") as caught:
            write_atomically(onnx.load(str(small_file)), disk / "m.onnx")
        assert f"cannot write {disk / 'm.onnx'}" in str(caught.value)
        assert listing(disk) == []


def test_build_onto_a_full_disk_exits_2_and_leaves_nothing(small_file, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed: no engine to build")
    with small_disk(tmp_path / "disk", "64k") as disk:
        result = runner.invoke(app, ["build", str(small_file), "--profile", f"{H}x{W}", "-o", str(disk / "m.engine")])
        said_full_disk(result, disk / "m.engine")
        assert listing(disk) == []


def test_doctor_onto_a_full_disk_exits_2_and_leaves_nothing(tmp_path, monkeypatch):
    """The machine step only (an empty plan): the report itself meets the full disk."""
    from mattex.measure import doctor as doctor_module

    monkeypatch.setattr(doctor_module, "quick_plan", lambda: doctor_module.Plan("quick", ()))
    with small_disk(tmp_path / "disk", "64k", free=0) as disk:
        result = runner.invoke(app, ["doctor", "--quick", "--out", str(disk / "report")])
        said_full_disk(result, disk / "report" / "doctor.json")
        assert listing(disk) == ["filler"]
