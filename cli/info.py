"""`mattex info`: a checkpoint's backbone, parameter count and key check."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import EXIT_FINDING, JSON_OPTION, console, emit_json, field_table, user_errors

SHORT_HELP = "Backbone, parameter count and key check of a checkpoint."


@user_errors(requires=("export", "mattex info"))
def command(
    checkpoint: Path = typer.Argument(..., help="A published .pth state_dict or TorchScript file."),
    backbone: str | None = typer.Option(
        None, help="resnet50 | resnet101 | mobilenetv2 (inferred from the keys when omitted)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex info pytorch_resnet50.pth

    Show a checkpoint's backbone, parameter count and whether its keys and shapes match the
    model. Exits 1 when they do not.
    """
    from mattex.model.checkpoint import describe_checkpoint

    facts = describe_checkpoint(checkpoint, backbone)
    if not emit_json(facts, json_output):
        _print(facts)
    if not facts["keys_match"]:
        raise typer.Exit(EXIT_FINDING)


def _print(facts: dict) -> None:
    inferred = " (inferred from keys)" if facts["backbone_inferred"] else ""
    console.print(
        field_table(
            f"mattex info: {facts['file']}",
            [
                ("format", facts["format"]),
                ("sha256", facts["sha256"]),
                ("backbone", facts["backbone"] + inferred),
                ("state_dict entries", str(facts["keys"])),
                ("parameters", f"{facts['parameters']:,}"),
                ("key check", "[green]OK[/]" if facts["keys_match"] else "[red]MISMATCH[/]"),
            ],
        )
    )
    for title, items in (("missing", facts["missing"]), ("unexpected", facts["unexpected"])):
        for key in items:
            console.print(f"  [red]{title}[/] {key}")
    for m in facts["mismatched"]:
        console.print(f"  [red]shape[/] {m['key']}: checkpoint {m['checkpoint']} vs model {m['model']}")
