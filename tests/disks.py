"""Real small disks for the tests of full disks and unusable caches: a tmpfs mounted for one test
(CI runs as root; where mounting is refused the test skips and says why), always unmounted."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "16k", free: int | None = None, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (made here); with `free`, filled by the file
    `filler` until about `free` bytes are left, so that an output of any size is cut short."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {mounted.stderr.strip() or mounted.returncode}")
    try:
        if free is not None:
            stats = os.statvfs(folder)
            with open(folder / "filler", "wb") as f:
                f.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - free))
        yield folder
    finally:
        # A writer that failed without closing its file keeps the disk busy: detached all the same
        # (lazily), so no test leaves a mount behind.
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


def listing(folder: Path) -> list[str]:
    """Everything under `folder`, hidden files and folders included, as relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
