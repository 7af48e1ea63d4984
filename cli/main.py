"""The `mattex` command line: a thin Typer layer, one module per command, each over one library
function. Heavy imports (torch, onnx) happen inside commands so that `mattex --help` stays instant."""

from __future__ import annotations

import signal

import typer

import mattex

from . import (
    batch,
    bench,
    build,
    cache,
    check,
    data,
    doctor,
    evaluate,
    export,
    info,
    plate,
    run,
    serve,
    triton_repo,
    verify,
)
from .common import console, show_flags_as_flags

show_flags_as_flags()

app = typer.Typer(
    name="mattex",
    help="Example: mattex export --backbone mobilenetv2 --height 240 --width 320 --sample-pixels 16000 -o m.onnx\n\n"
    "BackgroundMattingV2 to exact ONNX and TensorRT engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # reflow docstring paragraphs
)
for name, module in (
    ("info", info),
    ("export", export),
    ("check", check),
    ("build", build),
    ("verify", verify),
    ("run", run),
    ("plate", plate),
    ("batch", batch),
    ("bench", bench),
    ("evaluate", evaluate),
    ("serve", serve),
    ("triton-repo", triton_repo),
    ("doctor", doctor),
):
    app.command(name, short_help=module.SHORT_HELP)(module.command)
app.add_typer(data.app, name="data")
app.add_typer(cache.app, name="cache")


def _version(value: bool) -> None:
    if value:
        console.print(f"mattex {mattex.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """BackgroundMattingV2 to exact ONNX and TensorRT engines."""


def _terminate(signum, frame) -> None:
    """SIGTERM (a container stop, a scheduler) stops a command as Ctrl-C does: whatever it was
    writing is removed, and `mattex run` keeps the frames done."""
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
