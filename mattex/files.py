"""File helpers every component shares (standard library only, so the runtime can use them):
content hashes, and the one way mattex writes an artifact: to a temporary name beside it,
renamed over it only once complete, so a failure leaves the previous file or nothing.

A temporary is named `.<name>.<pid>.<random>.partial`, carrying the pid of the process writing
it: a process killed outright (kill -9, a lost machine) cannot remove its own, so the next
write of the same name removes those whose process is gone (remove_dead_partials)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mattex.errors import OutputPathError


def check_model_file(path: str | Path) -> Path:
    """A model file a user names exists and is not empty (an interrupted export, build or copy);
    ModelFileError otherwise. The readers behind it name everything else that can be wrong."""
    from .errors import ModelFileError

    path = Path(path)
    try:
        status = path.stat()  # follows links: a link to /dev/zero is a device
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ModelFileError(f"{path} is a symbolic link loop, not a model file") from None
        raise ModelFileError(f"no such model file: {path}") from None
    if not stat.S_ISREG(status.st_mode):
        raise ModelFileError(_not_a_model_file(path, status.st_mode))
    if status.st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): an interrupted export, build or copy?")
    return path


def _not_a_model_file(path: Path, mode: int) -> str:
    """What a path that is not a regular file is (the C++ runtime's checkModelFile says the same).
    Reading a FIFO would wait for a writer forever and a device never ends: neither is opened."""
    if stat.S_ISDIR(mode):
        return f"no such model file: {path} (a folder)"
    kind = _kind_of_mode(mode) or "not a regular file"
    return f"{path} is {kind}, not a model file"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_error(path: str | Path, error: OSError) -> OutputPathError:
    """The typed error for an OSError met while writing `path` (read-only folder, full disk...)."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    hint = {
        errno.ENOSPC: ": free some space or write elsewhere",
        errno.EDQUOT: ": over the disk quota",
        errno.EACCES: ": the folder is not writable",
        errno.EPERM: ": the folder is not writable",
        errno.EROFS: ": the file system is read-only",
    }.get(error.errno, "")
    return OutputPathError(f"cannot write {path}: {reason}{hint}; nothing was left behind")


# What exists at an output path and is neither a regular file nor a folder: never written over
# (a FIFO would block or swallow the output, a device would be replaced by a plain file).
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


def special_kind(path: str | Path) -> str | None:
    """What `path` is when it exists and is neither a regular file nor a folder (following
    links): "a FIFO (named pipe)", "a character device"...; None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, a link loop (named by the caller), a NUL byte
        return None
    return _kind_of_mode(mode)


def _kind_of_mode(mode: int) -> str | None:
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), None)


def _written_path(path: str | Path, folder: bool = False) -> Path:
    """The path a write of `path` lands on, refused (OutputPathError) where nothing may be
    written there. One rule for every output: a path ending in a separator names a folder; a
    symbolic link is written through (the link stays, its target gets the new content, as
    open(path, "w") would do), so the checks apply to the target; a FIFO, device or socket
    is refused by name, never replaced."""
    if isinstance(path, str) and path.endswith(_SEPARATORS) and not folder:
        raise OutputPathError(f"cannot write {path}: a path ending in {path[-1]} names a folder; give a file name")
    given = path = Path(path)
    if path.is_symlink():
        try:
            path = Path(os.path.realpath(path, strict=True))
        except FileNotFoundError:  # a link to a file not written yet: written through, created
            path = Path(os.path.realpath(path))
        except OSError as e:  # a loop (ELOOP)
            reason = e.strerror or type(e).__name__
            raise OutputPathError(f"cannot write {path}: a symbolic link that cannot be followed ({reason})") from None
    _check_output(path, folder, shown=f"{given} (a link to {path})" if path != given else None)
    return path


def output_file(path: str | Path) -> Path:
    """`path` as a file output, refused now where no file can be written there (see
    _written_path): a library entry point calls this before converting its argument, since
    Path() drops the trailing separator that says the user meant a folder."""
    _written_path(path)
    return Path(path)


def check_not_input(output: str | Path, inputs: dict[str, str | Path | None]) -> None:
    """OutputPathError when writing `output` would replace one of the command's own inputs
    (`inputs`, by role): the same file under any name (a link, a hard link, another relative
    path), or a file inside `output` when that is a folder the command replaces. Never allowed,
    whatever `force` or `replace` says: the command would destroy what it reads."""
    target = Path(os.path.realpath(output))
    for role, given in inputs.items():
        if given is None:
            continue
        source = Path(os.path.realpath(given))
        same = _same_file(source, target)
        if same or target in source.parents:
            where = "it is" if same else "it holds"
            raise OutputPathError(
                f"cannot write {output}: {where} the {role} this command reads ({given}); write the output "
                "elsewhere (an input is never replaced, even when told to replace files)"
            )


def check_distinct_outputs(outputs: dict[str, str | Path | None]) -> None:
    """OutputPathError when two of a command's outputs (`outputs`, by role) are one file under any
    name: the second written would replace the first, and the command would report both."""
    seen: dict[Path, tuple[str, str | Path]] = {}
    for role, given in outputs.items():
        if given is None:
            continue
        target = Path(os.path.realpath(given))
        for other, (first_role, first_given) in seen.items():
            if _same_file(other, target):
                raise OutputPathError(
                    f"cannot write {given} as the {role}: it is also the {first_role} ({first_given}); "
                    "give each output its own path"
                )
        seen[target] = (role, given)


def _same_file(a: Path, b: Path) -> bool:
    """Whether two real paths are one file: the same path, or a hard link (one that does not
    exist yet is the same only by path)."""
    try:
        return a == b or os.path.samefile(a, b)
    except OSError:
        return False


def _check_output(path: Path, folder: bool = False, shown: str | None = None) -> None:
    kind = special_kind(path)
    if kind is not None:
        raise OutputPathError(f"cannot write {shown or path}: it is {kind}, not a regular file; give another path")
    if path.is_dir() and not folder:
        raise OutputPathError(f"cannot write {path}: it is a folder; give a file name")
    if path.exists() and folder and not path.is_dir():
        raise OutputPathError(f"cannot write the folder {path}: a file has that name")


def check_writable(path: str | Path) -> None:
    """Raise OutputPathError now where `path` could not be written later (it is a folder, its
    folder is read-only): before minutes of work, not after. Leaves nothing behind (a folder
    that does not exist yet is left to be made by the write itself)."""
    path = _written_path(path)
    if path.parent.is_dir():
        discard(temporary_beside(path))


_PARTIAL_SUFFIX = ".partial"


def _partial_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _process_alive(pid: int) -> bool:
    """Whether a process `pid` exists; where that cannot be told, it is taken to exist."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's; not a pid at all
        return True
    return True


def remove_dead_partials(path: str | Path, writers_elsewhere: bool = False) -> list[Path]:
    """Remove the temporaries of `path` that a process no longer running left beside it (killed
    with kill -9 while writing): only names of mattex's own form, `.<name>.<pid>.<8 random
    characters>.partial`, and only where no process has that pid. A running process's
    temporaries (a pid reused since counts as running: they stay) and every other file stay.
    `writers_elsewhere`: the caller knows that no process writes `path` now, wherever its pid
    lives (mattex batch holds its folder's lock; its writers ran on other machines, whose pids
    say nothing here), so every temporary of mattex's form goes."""
    path = Path(path)
    own = re.compile(re.escape(f".{path.name}.") + r"([0-9]{1,10})\.[a-z0-9_]{8}" + re.escape(_PARTIAL_SUFFIX))
    try:
        children = list(path.parent.iterdir())
    except OSError:  # no folder yet, or not readable: nothing of ours to find
        return []
    removed = []
    for child in children:
        match = own.fullmatch(child.name)
        if match and not child.is_symlink() and (writers_elsewhere or not _process_alive(int(match[1]))):
            discard(child)
            removed.append(child)
    return removed


def temporary_beside(path: str | Path) -> Path:
    """A new empty file beside `path` (same folder, so the final rename is atomic), with the
    permissions a plain open() would give (mkstemp's are owner-only). Temporaries of `path` a
    killed process left are removed first."""
    path = _written_path(path)
    remove_dead_partials(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_partial_prefix(path), suffix=_PARTIAL_SUFFIX, dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError as e:
        raise output_error(path, e) from None
    return Path(tmp)


def temporary_folder_beside(path: str | Path) -> Path:
    path = _written_path(path, folder=True)
    remove_dead_partials(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(path), suffix=_PARTIAL_SUFFIX, dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as e:
        raise output_error(path, e) from None
    return tmp


def commit(tmp: Path, path: str | Path) -> Path:
    """Move a finished temporary file or folder to `path`, replacing what was there."""
    path = _written_path(path, folder=Path(tmp).is_dir())
    try:
        if Path(tmp).is_dir() and path.is_dir():  # a folder cannot be renamed over a non-empty one
            old = temporary_folder_beside(path)
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        raise output_error(path, e) from None
    return path


def discard(tmp: Path) -> None:
    if Path(tmp).is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary name beside `path`; rename it to `path` only if the block succeeds."""
    tmp = temporary_beside(path)
    try:
        yield tmp
        commit(tmp, path)
    except OSError as e:  # a full disk or a lost permission while writing: typed, nothing left
        discard(tmp)
        raise output_error(path, e) from None
    except BaseException:
        discard(tmp)
        raise


@contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[tuple[Path, ...]]:
    """Temporary names beside several files that belong together (an engine and its sidecar);
    all are renamed into place, in the order given, only if the block succeeds. A failure
    while renaming removes the ones this call already put in place, so no file is ever left
    beside a partner it does not describe."""
    temporaries: list[Path] = []
    committed: list[Path] = []
    try:
        for path in paths:
            temporaries.append(temporary_beside(path))
        yield tuple(temporaries)
        for tmp, path in zip(temporaries, paths):
            commit(tmp, path)
            committed.append(Path(path))
    except BaseException as e:
        for tmp in temporaries:
            discard(tmp)
        for path in committed:
            Path(path).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, OutputPathError):  # while writing (commit types its own)
            together = f"{paths[0]} (with {', '.join(Path(p).name for p in paths[1:])})" if paths[1:] else paths[0]
            raise output_error(together, e) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def check_output_folder(path: str | Path) -> Path:
    """`path` as a folder outputs can go in, refused now (OutputPathError) where it, or the
    nearest of its parents that exists, is not a folder: a file, a FIFO, a device, a socket."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "it" if existing == path else str(existing)
        kind = special_kind(existing) or "a file"
        raise OutputPathError(f"cannot write into {path}: {what} is {kind}; give a folder")
    return path


@contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """The folder outputs go in, created if missing and removed again if the block fails and
    the folder did not exist before: a failed command leaves no empty folder behind either."""
    path = check_output_folder(path)
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(path, e) from None
    try:
        yield path
    except BaseException:
        for folder in created:  # deepest first; only folders this call made
            shutil.rmtree(folder, ignore_errors=True)
        raise
