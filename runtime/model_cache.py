"""OpenVINO's compiled models, kept between launches so that a second launch skips compiling,
under a size cap with least-recently-used eviction (`mattex cache`).

    <cache>/openvino/                      $MATTEX_CACHE, else $XDG_CACHE_HOME/mattex (~/.cache/mattex)
        bgm_resnet50_hd-3f2a9c0e1b7d4e65/  one entry per model file (its path, size and mtime)
            .mattex-entry                  what the entry holds (JSON); its mtime is the entry's last use
            .lock                          held shared while OpenVINO compiles or reads the entry
            12169406709070268746.blob      OpenVINO's compiled model(s), one per compile setting

A cache folder that cannot be used (read-only, a file, a full disk) costs only time: the model
compiles without it, and a warning says so once per process; `mattex cache` refuses it by name.

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
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from mattex.errors import ConfigError, OutputPathError

CACHE_ENV = "MATTEX_CACHE"
MAX_SIZE_ENV = "MATTEX_CACHE_MAX_SIZE"
# A resnet50 4K model compiles to about 160 MB, an HD mobilenetv2 to about 20 MB: 2 GiB keeps a
# dozen models, and a full disk is not where a user finds the cache.
DEFAULT_MAX_SIZE = 2 * 1024**3
# The largest cap a setting may give: 1 PiB, more than any disk a cache sits on, and far inside
# the 64-bit sizes the file system and OpenVINO count in.
LARGEST_MAX_SIZE = 1024**5
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
    """Bytes from 2147483648, 2G, 2GB, 2GiB, 500M, 1.5g: 0 to LARGEST_MAX_SIZE; ConfigError
    naming `source` otherwise. Only ASCII digits count ('٣' is not 3), as for every number."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]+)(?:\.([0-9]+))?\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE | re.ASCII)
        if not match:
            raise ConfigError(
                f"{source} {_shown(text)} is not a size: give bytes or a number with K, M, G or T (e.g. 2G)"
            )
        whole = match[1].lstrip("0") or "0"
        # The length bounds the number before it is converted (exact: no float to overflow).
        value = (
            LARGEST_MAX_SIZE + 1
            if len(whole) > 20
            else int(Fraction(f"{whole}.{(match[2] or '0')[:20]}") * _UNITS[match[3].lower()])
        )
    if not 0 <= value <= LARGEST_MAX_SIZE:
        raise ConfigError(f"{source} {_shown(text)}: give 0 to {LARGEST_MAX_SIZE} bytes (1024T, 1 PiB)")
    return value


def _shown(text: str | int, most: int = 40) -> str:
    """A setting as a message quotes it: a pasted megabyte of digits is cut."""
    shown = repr(text)
    return shown if len(shown) <= most else f"{shown[:most]}... ({len(str(text))} characters)"


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


def _reason(error: OSError) -> str:
    return os.strerror(error.errno) if error.errno else str(error)


def unusable(cache_dir: Path, reason: str) -> OutputPathError:
    return OutputPathError(
        f"cannot use the model cache {cache_dir}: {reason}; point ${CACHE_ENV} (or --cache-dir) at a writable folder"
    )


def check_usable(cache_dir: Path) -> None:
    """OutputPathError naming `cache_dir` and why where the cache cannot be written (a file
    where a folder must be, a read-only file system); creates nothing that was not there."""
    existing = next(p for p in (cache_dir, *cache_dir.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise unusable(cache_dir, f"{existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise unusable(cache_dir, _reason(e)) from None


_warned_unusable = False


def _warn_unusable(cache_dir: Path, reason: str) -> None:
    """Once per process: the model runs on without the cache, which only saves compile time."""
    global _warned_unusable
    if _warned_unusable:
        return
    _warned_unusable = True
    warnings.warn(
        f"the model cache {cache_dir} cannot be used ({reason}): the model runs without it and is "
        f"compiled again at each launch; point ${CACHE_ENV} at a writable folder to keep compiled models",
        RuntimeWarning,
        stacklevel=4,
    )


@contextlib.contextmanager
def use_entry(model: str | Path, cache_dir: Path) -> Iterator[Path | None]:
    """The entry folder for `model`, created if new, held (a shared lock: no eviction) while the
    caller compiles or reads it, and marked used now; None where the cache folder cannot be
    used (read-only, a file, a full disk): the caller compiles without it, warned once."""
    model = Path(model)
    try:
        folder, fd = _hold_entry(model, cache_dir)
    except OSError as e:
        _warn_unusable(cache_dir, _reason(e))
        yield None
        return
    try:
        _write_marker(folder, model)
    except OSError as e:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        _drop_if_empty(folder, cache_dir)
        _warn_unusable(cache_dir, _reason(e))
        yield None
        return
    try:
        yield folder
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def check_filled(entry: Path, cache_dir: Path) -> bool:
    """Whether OpenVINO wrote a compiled model into `entry` (called once its lock is released).
    It writes none, and says nothing, where the disk is full: the entry is removed (no empty
    entry stays) and a warning says the model ran without the cache."""
    if _drop_if_empty(entry, cache_dir):
        _warn_unusable(cache_dir, "OpenVINO could not write the compiled model into it: a full disk?")
        return False
    return True


def _drop_if_empty(folder: Path, cache_dir: Path) -> bool:
    """Remove an entry holding no compiled model, unless another process holds it, and the
    cache folders this process made for it, if empty; True if it held none."""
    try:
        if any(child.name not in (MARKER, LOCK) for child in folder.iterdir()):
            return False
        _remove(Entry(folder, "", 0, 0.0), cache_dir)
    except OSError:  # a read-only or vanished folder: nothing more to tidy
        pass
    for made in sorted(_made_here, key=lambda p: len(p.parts), reverse=True):  # deepest first
        with contextlib.suppress(OSError):  # not empty: another entry, another process's
            made.rmdir()
            _made_here.discard(made)
    return True


# The cache folders this process created (not the entries): removed again if left empty by a
# cache that turned out unusable (a full disk), so an unusable cache leaves no empty folder.
_made_here: set[Path] = set()


def _hold_entry(model: Path, cache_dir: Path) -> tuple[Path, int]:
    """The entry's folder and a file descriptor holding its shared lock."""
    folder = cache_dir / entry_key(model)
    _made_here.update(p for p in (cache_dir, *cache_dir.parents) if not p.exists())
    for _ in range(3):  # a pruner may rename the folder away between mkdir and the lock
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_SH)
        if (folder / LOCK).exists() and os.path.samestat(os.fstat(fd), os.stat(folder / LOCK)):
            return folder, fd
        os.close(fd)
    raise ConfigError(f"the model cache {cache_dir} keeps losing the entry for {model.name}: is it shared oddly?")


def _write_marker(folder: Path, model: Path) -> None:
    """What the entry holds, written to a temporary name and renamed; its mtime is the last use.
    A failure (a full disk) leaves no temporary."""
    partial = folder / f"{MARKER}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        partial.write_text(json.dumps({"model": str(model.resolve()), "used": time.time()}))
        os.replace(partial, folder / MARKER)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


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
