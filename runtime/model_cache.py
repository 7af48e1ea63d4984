"""OpenVINO's compiled models, kept between launches so that a second launch skips compiling,
under a size cap with least-recently-used eviction (`mattex cache`).

    <cache>/openvino/                      $MATTEX_CACHE, else $XDG_CACHE_HOME/mattex (~/.cache/mattex)
        bgm_resnet50_hd-3f2a9c0e1b7d4e65/  one entry per model file (its path, size and mtime)
            .mattex-entry                  what the entry holds (JSON); its mtime is the entry's last use
            .lock                          held shared while OpenVINO compiles or reads the entry
            12169406709070268746.blob      OpenVINO's compiled model(s), one per compile setting

Several processes share one cache: an entry in use (its lock held) is never evicted, and an entry
is removed by renaming it out of sight first, so no process sees half of one. Eviction deletes
only entries (folders carrying the marker, and OpenVINO blobs an earlier mattex left loose) that
are direct children of the cache folder; it follows no link.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mattex.errors import ConfigError

CACHE_ENV = "MATTEX_CACHE"
MAX_SIZE_ENV = "MATTEX_CACHE_MAX_SIZE"
# A resnet50 4K model compiles to about 160 MB, an HD mobilenetv2 to about 20 MB: 2 GiB keeps a
# dozen models, and a full disk is not where a user finds the cache.
DEFAULT_MAX_SIZE = 2 * 1024**3
MARKER = ".mattex-entry"
LOCK = ".lock"
_PRUNE_LOCK = ".prune.lock"
_TRASH_PREFIX = ".trash-"
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def cache_root() -> Path:
    """$MATTEX_CACHE, else $XDG_CACHE_HOME/mattex, else ~/.cache/mattex."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mattex"
    )
    return Path(root)


def openvino_cache_dir() -> Path:
    return cache_root() / "openvino"


def parse_size(text: str | int, source: str = "size") -> int:
    """Bytes from 2147483648, 2G, 2GB, 2GiB, 500M, 1.5g; ConfigError naming `source` otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
        if not match:
            raise ConfigError(f"{source} {text!r} is not a size: give bytes or a number with K, M, G or T (e.g. 2G)")
        value = int(float(match[1]) * _UNITS[match[2].lower()])
    if value < 0:
        raise ConfigError(f"{source} must be 0 or more bytes, got {value}")
    return value


def max_size(option: str | int | None = None) -> int:
    """The cap: `option` if given, else $MATTEX_CACHE_MAX_SIZE, else DEFAULT_MAX_SIZE."""
    if option is not None:
        return parse_size(option, "the cache's maximum size")
    if os.environ.get(MAX_SIZE_ENV, "").strip():
        return parse_size(os.environ[MAX_SIZE_ENV], MAX_SIZE_ENV)
    return DEFAULT_MAX_SIZE


def entry_key(model: Path) -> str:
    """The entry of a model file: its resolved path, size and modification time (a rewritten
    file gets a new entry; the old one ages out). The C++ runtime computes the same."""
    stat = model.stat()
    identity = f"{model.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return f"{model.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


@contextlib.contextmanager
def use_entry(model: str | Path, cache_dir: Path) -> Iterator[Path]:
    """The entry folder for `model`, created if new, held (a shared lock: no eviction) while the
    caller compiles or reads it, and marked used now."""
    model = Path(model)
    folder = cache_dir / entry_key(model)
    for _ in range(3):  # a pruner may rename the folder away between mkdir and the lock
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_SH)
        if (folder / LOCK).exists() and os.path.samestat(os.fstat(fd), os.stat(folder / LOCK)):
            break
        os.close(fd)
    else:
        raise ConfigError(f"the model cache {cache_dir} keeps losing the entry for {model.name}: is it shared oddly?")
    try:
        _write_marker(folder, model)
        yield folder
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_marker(folder: Path, model: Path) -> None:
    """What the entry holds, written to a temporary name and renamed; its mtime is the last use."""
    partial = folder / f"{MARKER}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    partial.write_text(json.dumps({"model": str(model.resolve()), "used": time.time()}))
    os.replace(partial, folder / MARKER)


@dataclass(frozen=True)
class Entry:
    path: Path
    model: str  # the model file it was compiled from ("" for a loose blob of an earlier mattex)
    size: int  # bytes
    last_used: float  # seconds since the epoch

    def to_dict(self) -> dict:
        return {"entry": self.path.name, "model": self.model, "bytes": self.size, "last_used": self.last_used}


def entries(cache_dir: Path) -> list[Entry]:
    """Every entry, least recently used first."""
    found = []
    if not cache_dir.is_dir():
        return found
    for child in cache_dir.iterdir():
        if child.is_symlink() or child.name.startswith(_TRASH_PREFIX):
            continue
        if child.is_dir() and (child / MARKER).is_file():
            try:
                model = json.loads((child / MARKER).read_text()).get("model", "")
            except (OSError, ValueError):
                model = ""
            found.append(Entry(child, str(model), _folder_size(child), (child / MARKER).stat().st_mtime))
        elif child.is_file() and child.suffix == ".blob":  # an earlier mattex compiled into the root
            stat = child.stat()
            found.append(Entry(child, "", stat.st_size, stat.st_mtime))
    return sorted(found, key=lambda e: e.last_used)


def _folder_size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):  # os.walk follows no link into another folder
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def prune(cache_dir: Path, limit: int, keep: tuple[Path, ...] = ()) -> list[Entry]:
    """Remove least recently used entries until the cache holds at most `limit` bytes; entries
    in use by any process (their lock held) and those in `keep` stay. Returns what was removed."""
    if not cache_dir.is_dir():
        return []
    removed = []
    with _exclusive(cache_dir / _PRUNE_LOCK, blocking=True):  # one pruner at a time
        for trash in cache_dir.glob(f"{_TRASH_PREFIX}*"):  # a pruner stopped between rename and delete
            shutil.rmtree(trash, ignore_errors=True)
        listed = entries(cache_dir)
        total = sum(e.size for e in listed)
        for entry in listed:
            if total <= limit:
                break
            if entry.path in keep or not _remove(entry, cache_dir):
                continue
            removed.append(entry)
            total -= entry.size
    return removed


def clear(cache_dir: Path) -> list[Entry]:
    """Remove every entry not in use."""
    return prune(cache_dir, 0)


def _remove(entry: Entry, cache_dir: Path) -> bool:
    if entry.path.is_file():  # a loose blob
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
        return True
    try:
        with _exclusive(entry.path / LOCK, blocking=False):
            trash = cache_dir / f"{_TRASH_PREFIX}{uuid.uuid4().hex}"
            os.rename(entry.path, trash)  # gone for every other process at once
    except (BlockingIOError, FileNotFoundError):  # in use, or another process removed it
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


@contextlib.contextmanager
def _exclusive(path: Path, blocking: bool) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield
    finally:
        os.close(fd)
