"""The model cache when it cannot be used, its size settings at their extremes, and the partial
files a run killed outright leaves.

A cache only saves compile time: read-only (common in containers), a file, under a file, or on
a full disk, the model runs without it and a warning says so once per process; `mattex cache`
names the folder and what is wrong with it. A run killed with SIGKILL cannot remove its
temporaries: the next run into the folder removes those whose process is gone, and nothing
else."""

import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from disks import listing, small_disk
from typer.testing import CliRunner

from mattex.calibration.synthetic import write_synthetic_video
from mattex.cli.main import app
from mattex.errors import ConfigError
from mattex.runtime import Matter, model_cache

runner = CliRunner()
H, W = 96, 128  # small_file's trace size
UNUSABLE = "cannot be used"


@pytest.fixture(autouse=True)
def _warn_again(monkeypatch):
    """Each test is a fresh process as far as the once-per-process warning goes."""
    monkeypatch.setattr(model_cache, "_warned_unusable", False)
    monkeypatch.setattr(model_cache, "_made_here", set())


@pytest.fixture
def cache_in(tmp_path, monkeypatch):
    """Point MATTEX_CACHE at `where` for one test."""

    def point(where):
        monkeypatch.setenv("MATTEX_CACHE", str(where))
        return where

    return point


def a_file(tmp_path):
    path = tmp_path / "not-a-folder"
    path.write_text("a user's file")
    return path


def matte_once(matter) -> np.ndarray:
    frame = np.full((1, H, W, 3), 128, np.uint8)
    pha = matter.matte_frames(frame, frame // 2)["pha"]
    assert pha.shape == (1, 1, H, W) and np.isfinite(pha).all()
    return pha


# -- an unusable cache folder: runs without it, says so once -------------------------------------
def test_a_read_only_cache_runs_without_it_and_says_so_once(small_file, tmp_path, cache_in):
    with small_disk(tmp_path / "ro", "16k", read_only=True) as disk:
        cache_in(disk / "cache")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            matte_once(Matter.open(small_file, backend="openvino"))
            with model_cache.use_entry(small_file, disk / "cache" / "openvino") as entry:  # as a second open
                assert entry is None
        said = [str(w.message) for w in caught if UNUSABLE in str(w.message)]
        assert len(said) == 1, said  # once per process, not once per open
        assert f"{disk / 'cache' / 'openvino'}" in said[0] and "Read-only file system" in said[0]
        assert listing(disk) == []


def test_run_with_the_cache_under_a_file_runs_and_warns_once_on_stderr(small_file, tmp_path):
    """A real `mattex run` process (the warning as a user sees it, on stderr), two frames: the
    model is compiled without the cache and the run succeeds; a user's file stays as it was."""
    cache = a_file(tmp_path) / "cache"
    write_synthetic_video(tmp_path / "clip.mp4", tmp_path / "bg.png", 2, H, W, 24)
    command = ["run", str(small_file), str(tmp_path / "clip.mp4"), str(tmp_path / "bg.png"), "--out"]
    done = subprocess.run(
        [sys.executable, "-m", "mattex.cli.main", *command, str(tmp_path / "out"), "--backend", "openvino", "--png"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MATTEX_CACHE": str(cache)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count(UNUSABLE) == 1 and f"{cache / 'openvino'} {UNUSABLE} (Not a directory)" in done.stderr
    assert len(os.listdir(tmp_path / "out" / "pha")) == 2
    assert (tmp_path / "not-a-folder").read_text() == "a user's file"


def test_a_cache_on_a_full_disk_runs_without_it_and_leaves_no_empty_entry(small_file, tmp_path, cache_in):
    """OpenVINO writes no compiled model onto a full disk and says nothing: mattex sees the empty
    entry, removes it (and the folders it made) and says the model ran without the cache."""
    with small_disk(tmp_path / "full", "64k") as disk:
        cache_in(disk / "cache")
        with pytest.warns(RuntimeWarning, match=UNUSABLE) as caught:
            matte_once(Matter.open(small_file, backend="openvino"))
        assert "full disk" in str(caught[0].message)
        assert listing(disk) == []


@pytest.mark.parametrize("command", ["list", "prune", "clear"])
@pytest.mark.parametrize("fault", ["read-only", "a file", "under a file"])
def test_mattex_cache_says_what_is_wrong_with_the_folder(tmp_path, cache_in, command, fault):
    reasons = {"read-only": "Read-only file system", "a file": "is a file, not a folder"}
    with small_disk(tmp_path / "ro", "16k", read_only=True) as disk:
        root = {"read-only": disk / "cache", "a file": a_file(tmp_path), "under a file": a_file(tmp_path) / "c"}[fault]
        cache_in(root)
        result = runner.invoke(app, ["cache", command])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"OutputPathError: cannot use the model cache {root / 'openvino'}" in output
    assert reasons.get(fault, "is a file, not a folder") in output and "Traceback" not in output


# -- cache sizes: bounded, ASCII digits only, typed ---------------------------------------------
@pytest.mark.parametrize(
    "text", ["1025T", "9" * 400, "9" * 5000, "٣", "²", "2\u2003G", "1e999"], ids=lambda t: repr(t)[:12]
)
def test_a_cache_size_beyond_the_bound_or_not_ascii_is_a_config_error(text, monkeypatch):
    """Sizes went through float(): 400 nines overflowed (OverflowError), Arabic-Indic digits
    were read as digits; 1 PiB is the documented largest."""
    monkeypatch.setenv("MATTEX_CACHE_MAX_SIZE", text)
    with pytest.raises(ConfigError, match="MATTEX_CACHE_MAX_SIZE") as caught:
        model_cache.max_size()
    assert len(str(caught.value)) < 200  # a pasted megabyte is not echoed back


def test_the_largest_cache_size_is_one_pebibyte():
    assert model_cache.parse_size("1024T") == model_cache.LARGEST_MAX_SIZE == 1024**5
    assert model_cache.parse_size(1024**5) == 1024**5
    for value in (1024**5 + 1, -1, 2**64):
        with pytest.raises(ConfigError, match="give 0 to 1125899906842624 bytes"):
            model_cache.parse_size(value, "cache_max_size")


def test_prune_max_size_and_cache_max_size_are_bounded(small_file, tmp_path, cache_in):
    cache_in(tmp_path / "cache")
    result = runner.invoke(app, ["cache", "prune", "--max-size", "9" * 30])
    assert result.exit_code == 2 and "ConfigError" in result.output and "1 PiB" in result.output
    with pytest.raises(ConfigError, match="cache's maximum size"):
        Matter.open(small_file, backend="openvino", cache_max_size="٣G")


# -- the partial files of a run killed outright -------------------------------------------------
KILLED_RUN = """
import os, signal, sys
from mattex.runtime import media

write = media.VideoSink.write


def write_then_die(self, frame, name=None):
    write(self, frame, name)
    if self.frames == 3:  # mid-video, every output's temporary open: kill -9
        os.kill(os.getpid(), signal.SIGKILL)


media.VideoSink.write = write_then_die
from mattex.cli.main import main

sys.argv = ["mattex", *sys.argv[1:]]
main()
"""


def test_a_run_removes_the_partial_files_a_killed_run_left_and_nothing_else(small_file, tmp_path):
    import av

    write_synthetic_video(tmp_path / "clip.mp4", tmp_path / "bg.png", 6, H, W, 24)
    out = tmp_path / "out"
    command = ["run", str(small_file), str(tmp_path / "clip.mp4"), str(tmp_path / "bg.png"), "--out", str(out)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, *command, "--backend", "onnxruntime"], capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = sorted(os.listdir(out))
    assert len(left) == 3 and all(name.endswith(".partial") for name in left), left  # com, pha, fgr
    # A live process's temporary (this test's own pid) and a user's files of a like name stay.
    live = f".pha.mp4.{os.getpid()}.abcd1234.partial"
    users = [".com.mp4.draft.partial", ".com.mp4.1.partial", "com.mp4.99999999.abcd1234.partial"]
    for name in (live, *users):
        (out / name).write_bytes(b"not mattex's to remove")

    result = runner.invoke(app, [*command, "--backend", "onnxruntime", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == sorted(["com.mp4", "fgr.mp4", "pha.mp4", live, *users])
    for kind in ("com", "pha", "fgr"):  # whole: every frame
        with av.open(str(out / f"{kind}.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == 6
