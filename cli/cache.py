"""`mattex cache`: the compiled-model cache (OpenVINO) listed, pruned to its cap, or cleared."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .common import JSON_OPTION, console, emit_json, user_errors

app = typer.Typer(
    help="Example: mattex cache list\n\nThe compiled-model cache: list, prune to its cap, clear.",
    no_args_is_help=True,
)
CACHE_DIR_HELP = "The cache folder (default: $MATTEX_CACHE or ~/.cache/mattex, then openvino/)."


def _folder(cache_dir: Path | None) -> Path:
    """The cache folder, refused by name where it cannot be used (a file, read-only)."""
    from mattex.runtime.model_cache import check_usable, openvino_cache_dir

    folder = cache_dir if cache_dir is not None else openvino_cache_dir()
    check_usable(folder)
    return folder


@app.command("list")
@user_errors()
def list_entries(
    cache_dir: Path | None = typer.Option(None, help=CACHE_DIR_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex cache list

    Every entry (one per model file) with its size and last use, least recently used first,
    and the cache's total against its cap ($MATTEX_CACHE_MAX_SIZE, default 2 GiB).
    """
    from mattex.runtime.model_cache import entries, max_size

    folder = _folder(cache_dir)
    found = entries(folder)
    summary = {
        "cache_dir": str(folder),
        "bytes": sum(e.size for e in found),
        "max_bytes": max_size(),
        "entries": [e.to_dict() for e in found],
    }
    if emit_json(summary, json_output):
        return
    for e in found:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        console.print(f"{_mb(e.size):>10}  {used}  {e.path.name}  {e.model or '(loose blob)'}", highlight=False)
    console.print(f"{folder}: {len(found)} entries, {_mb(summary['bytes'])} of {_mb(summary['max_bytes'])}")


@app.command("prune")
@user_errors()
def prune_entries(
    max_size: str | None = typer.Option(None, help="Prune to this size (bytes, or e.g. 500M, 2G); default the cap."),
    cache_dir: Path | None = typer.Option(None, help=CACHE_DIR_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex cache prune --max-size 1G

    Remove least recently used entries until the cache fits; entries another process is
    compiling or reading stay.
    """
    from mattex.runtime import model_cache

    _report(model_cache.prune(_folder(cache_dir), model_cache.max_size(max_size)), json_output)


@app.command("clear")
@user_errors()
def clear_entries(
    cache_dir: Path | None = typer.Option(None, help=CACHE_DIR_HELP),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex cache clear

    Remove every entry not in use; the next launch of each model compiles it again.
    """
    from mattex.runtime.model_cache import clear

    _report(clear(_folder(cache_dir)), json_output)


def _report(removed: list, json_output: bool) -> None:
    freed = sum(e.size for e in removed)
    if not emit_json({"removed": [e.to_dict() for e in removed], "freed_bytes": freed}, json_output):
        console.print(f"removed {len(removed)} entries, freed {_mb(freed)}")


def _mb(size: int) -> str:
    return f"{size / 1024**2:.1f} MB"
