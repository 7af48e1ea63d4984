"""What every command shares: the consoles, one way to turn a library error into a message and
an exit code, JSON output for CI, and the progress display."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps
from types import SimpleNamespace

import typer
from rich.console import Console
from rich.markup import escape

from mattex.errors import MattexError

console = Console()
err_console = Console(stderr=True)

# Exit codes: 0 success; 1 a finding (over budget, lint errors, a failed build check);
# 2 a user error; 130 interrupted (Ctrl-C, or SIGTERM from a container stop or a scheduler).
EXIT_FINDING, EXIT_USER_ERROR, EXIT_INTERRUPTED = 1, 2, 130

_OPTION = re.compile(r"`([a-z][a-z0-9_]*)`")


# The one `--json` every reporting command takes (`json_output: bool = JSON_OPTION`).
JSON_OPTION = typer.Option(
    False, "--json", help="Print what the command reports as one JSON object on stdout, nothing else (scripts, CI)."
)


def show_flags_as_flags() -> None:
    """Typer prints each option's type beside it, which for a flag reads `--png <bool>` as if it
    took a value; a flag takes none, so none is shown."""
    from typer.core import TyperOption

    if getattr(TyperOption.display_type_rich, "mattex_flags", False):
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.mattex_flags = True
    TyperOption.display_type_rich = display_type_rich


def as_flags(message: str, flags: dict[str, str] | None = None) -> str:
    """Library messages name options in the API's terms, `weight_bits`; on the command line they
    read as the flags that set them, --weight-bits (or what `flags` maps them to)."""
    flags = flags or {}
    return _OPTION.sub(lambda m: flags.get(m[1], "--" + m[1].replace("_", "-")), message)


def user_errors(flags: dict[str, str] | None = None, requires: tuple[str, str] | None = None):
    """Show a MattexError as one line and exit 2, never a traceback; an interruption exits 130
    (the library has already removed whatever it was writing). `requires`: (extra, what needs
    it), checked before the command runs, so a missing extra is named, never an ImportError."""

    def decorate(command: Callable) -> Callable:
        @wraps(command)
        def run(*args, **kwargs):
            try:
                if requires is not None:
                    from mattex.extras import require

                    require(*requires)
                return command(*args, **kwargs)
            except MattexError as e:
                message = escape(as_flags(str(e), flags))  # a message's [brackets] are text, not markup
                err_console.print(f"[bold red]error:[/] {type(e).__name__}: {message}", highlight=False, soft_wrap=True)
                raise typer.Exit(EXIT_USER_ERROR) from None
            except KeyboardInterrupt:
                err_console.print("[bold yellow]interrupted[/]: nothing half-written was left behind")
                raise typer.Exit(EXIT_INTERRUPTED) from None

        return run

    return decorate


def defaults_of(function: Callable) -> SimpleNamespace:
    """A library function's keyword defaults by name: a command's options take their defaults
    from the function it calls, so the two cannot disagree."""
    parameters = inspect.signature(function).parameters.values()
    return SimpleNamespace(**{p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty})


def emit_json(data: dict, json_output: bool) -> bool:
    """Print `data` as JSON when asked; True when it was printed (the caller prints nothing else)."""
    if json_output:
        print(json.dumps(data, indent=2, default=str))
    return json_output


@contextmanager
def progress(description: str, disable: bool = False):
    """A transient progress bar on stderr; yields `update(description=None, done=None, total=None)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=disable,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(description: str | None = None, done: int | None = None, total: int | None = None) -> None:
            fields = {"description": description, "completed": done, "total": total}
            bar.update(task, **{k: v for k, v in fields.items() if v is not None})

        yield update


def field_table(title: str, rows: list[tuple[str, str]]):
    """A two-column table of named fields."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table
