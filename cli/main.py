"""The `mattex` command line: a thin Typer layer over the library.

Heavy imports (torch, onnx) happen inside commands so that `mattex --help` stays instant.
"""

from __future__ import annotations

import json
from functools import wraps
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

import mattex
from mattex.errors import MattexError

app = typer.Typer(
    name="mattex",
    help="BackgroundMattingV2 to exact ONNX and TensorRT engines.\n\n"
    "Example: mattex info pytorch_resnet50.pth",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def user_errors_exit(code: int = 2):
    """Show a MattexError as one clear message and an exit code, never a traceback."""

    def decorate(command):
        @wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except MattexError as e:
                err_console.print(f"[bold red]error:[/] {type(e).__name__}: {e}", highlight=False)
                raise typer.Exit(code) from None

        return run

    return decorate


def _version(value: bool) -> None:
    if value:
        console.print(f"mattex {mattex.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """BackgroundMattingV2 to exact ONNX and TensorRT engines."""


@app.command(short_help="Backbone, parameter count and key check of a checkpoint.")
@user_errors_exit()
def info(
    checkpoint: Path = typer.Argument(..., help="A published .pth state_dict or TorchScript file."),
    backbone: Optional[str] = typer.Option(
        None, help="resnet50 | resnet101 | mobilenetv2 (inferred from the keys when omitted)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Example: mattex info pytorch_resnet50.pth

    Show a checkpoint's backbone, parameter count and whether its keys and shapes match the
    model. Exits 1 when they do not.
    """
    from mattex.model.checkpoint import describe_checkpoint

    facts = describe_checkpoint(checkpoint, backbone)
    if json_output:
        print(json.dumps(facts, indent=2))
    else:
        _print_info(facts)
    if not facts["keys_match"]:
        raise typer.Exit(1)


def _print_info(facts: dict) -> None:
    table = Table(title=f"mattex info: {facts['file']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    inferred = " (inferred from keys)" if facts["backbone_inferred"] else ""
    table.add_row("format", facts["format"])
    table.add_row("sha256", facts["sha256"])
    table.add_row("backbone", facts["backbone"] + inferred)
    table.add_row("state_dict entries", str(facts["keys"]))
    table.add_row("parameters", f"{facts['parameters']:,}")
    table.add_row("key check", "[green]OK[/]" if facts["keys_match"] else "[red]MISMATCH[/]")
    console.print(table)
    for title, items in (("missing", facts["missing"]), ("unexpected", facts["unexpected"])):
        for key in items:
            console.print(f"  [red]{title}[/] {key}")
    for m in facts["mismatched"]:
        console.print(f"  [red]shape[/] {m['key']}: checkpoint {m['checkpoint']} vs model {m['model']}")


if __name__ == "__main__":
    app()
