"""The compiled-model cache (mattex.runtime.model_cache): a size cap, least-recently-used
eviction that leaves entries in use alone and deletes nothing outside the cache, processes
sharing it, and `mattex cache list/prune/clear`. OpenVINO itself: tests/runtime/test_openvino.py."""

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import ConfigError
from mattex.runtime import model_cache
from mattex.runtime.model_cache import MARKER, clear, entries, max_size, parse_size, prune, use_entry

MB = 1024**2


def make_entry(cache: Path, model: Path, size: int, last_used: float) -> Path:
    """An entry as OpenVINO and use_entry leave one: a blob of `size` bytes, used at `last_used`."""
    model.write_bytes(model.name.encode())
    with use_entry(model, cache) as entry:
        (entry / "123.blob").write_bytes(b"\0" * size)
    os.utime(entry / MARKER, (last_used, last_used))
    return entry


@pytest.mark.parametrize(
    "text, expected",
    [("2147483648", 2 * 1024**3), ("2G", 2 * 1024**3), ("2GiB", 2 * 1024**3), ("500m", 500 * MB), ("1.5K", 1536),
     ("0", 0), (7, 7)],
)  # fmt: skip
def test_sizes_read_as_people_write_them(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "two gigs", "-1G", "2X", "1e9"])
def test_a_size_that_is_not_one_is_a_config_error_naming_it(text, monkeypatch):
    monkeypatch.setenv("MATTEX_CACHE_MAX_SIZE", text)
    if text == "":  # unset: the default
        assert max_size() == model_cache.DEFAULT_MAX_SIZE
        return
    with pytest.raises(ConfigError, match="MATTEX_CACHE_MAX_SIZE"):
        max_size()


def test_the_cap_comes_from_the_option_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv("MATTEX_CACHE_MAX_SIZE", raising=False)
    assert max_size() == 2 * 1024**3
    monkeypatch.setenv("MATTEX_CACHE_MAX_SIZE", "300M")
    assert max_size() == 300 * MB
    assert max_size("1G") == 1024**3


def test_least_recently_used_entries_go_first_until_the_cache_fits(tmp_path):
    cache, now = tmp_path / "cache", time.time()
    old = make_entry(cache, tmp_path / "old.onnx", 3 * MB, now - 300)
    middle = make_entry(cache, tmp_path / "middle.onnx", 3 * MB, now - 200)
    new = make_entry(cache, tmp_path / "new.onnx", 3 * MB, now - 100)
    assert [e.path for e in entries(cache)] == [old, middle, new]
    removed = prune(cache, 7 * MB)
    assert [e.path for e in removed] == [old]
    assert [e.path for e in entries(cache)] == [middle, new]
    assert [e.path for e in prune(cache, 0, keep=(middle,))] == [new]  # `keep`: the entry just opened
    assert not new.exists() and middle.exists()


def test_using_an_entry_makes_it_the_most_recent(tmp_path):
    cache, now = tmp_path / "cache", time.time()
    first = make_entry(cache, tmp_path / "a.onnx", MB, now - 300)
    make_entry(cache, tmp_path / "b.onnx", MB, now - 200)
    with use_entry(tmp_path / "a.onnx", cache) as again:
        assert again == first
    assert entries(cache)[-1].path == first
    assert json.loads((first / MARKER).read_text())["model"] == str((tmp_path / "a.onnx").resolve())


def test_an_entry_in_use_is_never_evicted(tmp_path):
    cache = tmp_path / "cache"
    busy = make_entry(cache, tmp_path / "busy.onnx", 2 * MB, time.time() - 1000)
    with use_entry(tmp_path / "busy.onnx", cache):  # another fd's shared lock, as another process holds it
        assert clear(cache) == [] and busy.exists()
    assert [e.path for e in clear(cache)] == [busy]


def test_nothing_outside_the_cache_and_nothing_not_an_entry_is_deleted(tmp_path):
    cache, outside = tmp_path / "cache", tmp_path / "precious"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"keep me")
    entry = make_entry(cache, tmp_path / "m.onnx", MB, time.time())
    (cache / "link").symlink_to(outside, target_is_directory=True)
    (cache / "blob-link.blob").symlink_to(outside / "data.bin")
    (cache / "notes").mkdir()
    (cache / "notes" / "x.txt").write_text("not an entry")
    (cache / "README").write_text("not a blob")
    loose = cache / "4242.blob"  # an earlier mattex compiled into the folder itself
    loose.write_bytes(b"\0" * 100)
    removed = clear(cache)
    assert sorted(e.path.name for e in removed) == sorted([entry.name, "4242.blob"]) and not loose.exists()
    assert (outside / "data.bin").read_bytes() == b"keep me"
    assert sorted(p.name for p in cache.iterdir()) == [".prune.lock", "README", "blob-link.blob", "link", "notes"]


def _share_the_cache(cache: str, worker: int, rounds: int) -> None:
    """One of several processes opening models and pruning the same cache to a small cap."""
    for round_ in range(rounds):
        model = Path(cache).parent / f"model{(worker + round_) % 5}.onnx"
        with use_entry(model, Path(cache)) as entry:
            (entry / f"{worker}.blob").write_bytes(b"\0" * 200_000)
            time.sleep(0.002)
            assert (entry / f"{worker}.blob").stat().st_size == 200_000  # never removed while held
        prune(Path(cache), 500_000, keep=(entry,))


def test_processes_sharing_the_cache_never_lose_an_entry_they_hold(tmp_path):
    cache = tmp_path / "cache"
    for i in range(5):
        (tmp_path / f"model{i}.onnx").write_bytes(bytes([i]))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_share_the_cache, args=(str(cache), w, 30)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    prune(cache, 500_000)
    assert sum(e.size for e in entries(cache)) <= 500_000
    assert not list(cache.glob(".trash-*"))


def test_mattex_cache_lists_prunes_and_clears(tmp_path, monkeypatch):
    cache, now = tmp_path / "cache", time.time()
    monkeypatch.setenv("MATTEX_CACHE", str(tmp_path))  # the default folder: $MATTEX_CACHE/openvino
    make_entry(cache.parent / "openvino", tmp_path / "a.onnx", 2 * MB, now - 100)
    make_entry(cache.parent / "openvino", tmp_path / "b.onnx", 2 * MB, now - 50)
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    summary = json.loads(listed.output)
    assert [e["model"] for e in summary["entries"]] == [str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx")]
    assert summary["bytes"] == sum(e["bytes"] for e in summary["entries"]) and summary["max_bytes"] == 2 * 1024**3
    pruned = runner.invoke(app, ["cache", "prune", "--max-size", "3M", "--json"])
    assert pruned.exit_code == 0 and [e["model"] for e in json.loads(pruned.output)["removed"]] == [
        str(tmp_path / "a.onnx")
    ]
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 1 entries" in cleared.output
    bad = runner.invoke(app, ["cache", "prune", "--max-size", "lots"])
    assert bad.exit_code == 2 and "not a size" in bad.output
