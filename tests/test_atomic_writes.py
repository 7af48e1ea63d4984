"""docs/errors.md: every artifact is written to a temporary name and renamed when complete, and
files that belong together appear together. Here under injected failures: a full disk halfway
through the second file, Ctrl-C (KeyboardInterrupt) while writing, a rename that fails, for
an engine and its sidecar, an int8 file and its calibration cache, and doctor's report."""

import errno
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mattex.files as files
from mattex.cli.main import app
from mattex.errors import OutputPathError

runner = CliRunner()
DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def fail_while_writing(monkeypatch, name_part: str, error: BaseException) -> None:
    """The write of the temporary file whose name contains `name_part` puts half its bytes on
    disk and then fails with `error` (onnx.save and numpy go through Path.write_bytes or open)."""
    real = Path.write_bytes, Path.write_text

    def write_bytes(self, data):
        if name_part in self.name and self.name.endswith(".partial"):
            real[0](self, data[: len(data) // 2])
            raise error
        return real[0](self, data)

    def write_text(self, text, *args, **kwargs):
        if name_part in self.name and self.name.endswith(".partial"):
            real[0](self, text[: len(text) // 2].encode())
            raise error
        return real[1](self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(Path, "write_text", write_text)


def fail_renaming(monkeypatch, name_part: str) -> None:
    real = files.commit

    def commit(tmp, path):
        if name_part in Path(path).name:
            raise OutputPathError(f"cannot write {Path(path).name}: the rename failed (injected)")
        return real(tmp, path)

    monkeypatch.setattr(files, "commit", commit)


# -- the mechanism, on plain files ----------------------------------------------------------------
@pytest.mark.parametrize("failure", ["disk full", "ctrl-c", "rename"])
def test_files_that_belong_together_appear_together_or_not_at_all(tmp_path, monkeypatch, failure):
    (tmp_path / "a.bin").write_bytes(b"old a")  # a previous pair is replaced only by a whole new one
    (tmp_path / "a.bin.json").write_bytes(b"old b")
    expected = {"disk full": OutputPathError, "ctrl-c": KeyboardInterrupt, "rename": OutputPathError}[failure]
    if failure == "rename":
        fail_renaming(monkeypatch, "a.bin.json")
    else:
        fail_while_writing(monkeypatch, "a.bin.json", DISK_FULL if failure == "disk full" else KeyboardInterrupt())
    with pytest.raises(expected):
        with files.atomic_paths(tmp_path / "a.bin", tmp_path / "a.bin.json") as (first, second):
            first.write_bytes(b"new a")
            second.write_bytes(b"new b")
    remaining = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    if failure == "rename":  # the first was already renamed: it goes again, not left beside an old partner
        assert remaining == {"a.bin.json": b"old b"}
    else:
        assert remaining == {"a.bin": b"old a", "a.bin.json": b"old b"}


def test_a_full_disk_names_the_file_it_was_writing(tmp_path, monkeypatch):
    fail_while_writing(monkeypatch, "plan", DISK_FULL)
    with pytest.raises(OutputPathError, match="No space left on device"):
        with files.atomic_paths(tmp_path / "m.plan") as (tmp,):
            tmp.write_bytes(b"0123456789")
    assert listing(tmp_path) == set()


# -- an engine and its sidecar (TensorRT for RTX builds on the CPU) ------------------------------
@pytest.mark.parametrize("failure", ["disk full on the sidecar", "ctrl-c on the sidecar", "the sidecar's rename"])
def test_an_engine_and_its_sidecar_appear_together_or_not_at_all(small_file, tmp_path, monkeypatch, failure):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed: no engine to build")
    from mattex.exporter.build import build_engine, parse_profile

    if failure == "the sidecar's rename":
        fail_renaming(monkeypatch, "m.engine.json")
    else:
        fail_while_writing(monkeypatch, "m.engine.json", DISK_FULL if "disk" in failure else KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt if "ctrl-c" in failure else OutputPathError):
        build_engine(small_file, tmp_path / "m.engine", [parse_profile("96x128")], "tensorrt-rtx")
    assert listing(tmp_path) == set()


def test_mattex_build_on_a_full_disk_exits_2_and_leaves_nothing(small_file, tmp_path, monkeypatch):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed: no engine to build")
    fail_while_writing(monkeypatch, "m.engine", DISK_FULL)  # the plan itself, halfway through
    result = runner.invoke(app, ["build", str(small_file), "--profile", "96x128", "-o", str(tmp_path / "m.engine")])
    assert result.exit_code == 2, result.output
    assert "OutputPathError" in result.output and "No space left on device" in " ".join(result.output.split())
    assert listing(tmp_path) == set()


# -- an int8 file and its new calibration cache -----------------------------------------------------
@pytest.mark.parametrize("failure", ["disk full on the cache", "ctrl-c on the cache"])
def test_an_int8_export_and_its_calibration_cache_appear_together(precision_data, tmp_path, monkeypatch, failure):
    from mattex.calibration.int8 import CalibrationSettings
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    fail_while_writing(monkeypatch, "calibration.json", DISK_FULL if "disk" in failure else KeyboardInterrupt())
    settings = CalibrationSettings(precision_data / "calib", precision_data / "calib_bg", samples=1)
    config = ExportConfig(height=64, width=64, sample_pixels=16 * 40, precision="int8")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt if "ctrl-c" in failure else OutputPathError) as caught:
        export_onnx(config, out / "m.onnx", calibration=settings)
    assert "ctrl-c" in failure or "No space left on device" in str(caught.value)
    assert listing(out) == set()


# -- doctor's report -------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", ["disk full on doctor.md", "ctrl-c on doctor.md"])
def test_doctor_leaves_no_report_and_no_folder_when_writing_it_fails(tmp_path, monkeypatch, failure):
    """An empty plan (the machine step only) keeps this to a second; the report's second file
    fails: the first is not left alone, and the --out folder doctor created goes too."""
    from mattex.measure import doctor as doctor_module

    monkeypatch.setattr(doctor_module, "quick_plan", lambda: doctor_module.Plan("quick", ()))
    fail_while_writing(monkeypatch, "doctor.md", DISK_FULL if "disk" in failure else KeyboardInterrupt())
    out = tmp_path / "deep" / "report"
    if "ctrl-c" in failure:
        with pytest.raises(KeyboardInterrupt):
            doctor_module.doctor(out, doctor_module.quick_plan())
    else:
        result = runner.invoke(app, ["doctor", "--quick", "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert "OutputPathError" in result.output and "doctor.md" in result.output
    assert listing(tmp_path) == set()
