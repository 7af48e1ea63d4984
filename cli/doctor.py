"""`mattex doctor`: prove this machine end to end and write one report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from .common import EXIT_FINDING, JSON_OPTION, console, emit_json, progress, user_errors

SHORT_HELP = "Prove this machine end to end: backends found, files built, run, verified and timed; one report."


@user_errors(requires=("export", "mattex doctor"))
def command(
    out: Path = typer.Option(
        Path("mattex-doctor"),
        "--out",
        "-o",
        help="Folder for the report (doctor.json, doctor.md) and the files it made.",
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="The short plan: mobilenetv2 only, fp32 and fp16, verified "
        "at 256x256, one timed round (under 5 minutes on 2 CPU cores).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex doctor --quick --out doctor/

    Step by step, never stopping at the first failure: the machine (CPU and instruction sets,
    memory, GPU, CUDA, package versions); exports (the demo-weights file, mobilenetv2's HD and
    4K presets, fp32 and fp16, uint8 frames; the full plan adds int8 and resnet50); for every
    backend present a build where it builds (TensorRT for RTX ahead of time, TensorRT on a GPU),
    a load and a run held to PyTorch with mattex verify's budgets; timings beside PyTorch eager
    (mattex bench's machinery); TensorRT for RTX's runtime cache on a GPU. Exit 0 when everything
    present passed, 1 when a check failed; steps that cannot run here say why.
    """
    from mattex.measure.doctor import doctor, full_plan, quick_plan

    with progress("doctor", disable=json_output) as update:
        report = doctor(out, quick_plan() if quick else full_plan(), progress=lambda step, i, n: update(step, i, n))
    if not emit_json(report.to_dict(), json_output):
        _print(report, out)
    if not report.passed:
        raise typer.Exit(EXIT_FINDING)


def _print(report, out: Path) -> None:
    """A short table: every check that ran, and what could not run grouped by its reason."""
    from rich.table import Table

    colours = {"passed": "green", "failed": "red", "skipped": "yellow"}
    table = Table(title=f"mattex doctor ({report.plan}): {report.seconds:.0f} s")
    for column in ("step", "subject", "backend", "status", "detail"):
        table.add_column(column, overflow="fold")
    skipped: dict[str, list] = {}
    for r in report.rows:
        if r.status == "skipped":
            skipped.setdefault(r.detail, []).append(r)
            continue
        detail = r.detail if len(r.detail) <= 90 else r.detail[:87] + "..."
        table.add_row(
            r.step, escape(r.subject), r.backend or "-", f"[{colours[r.status]}]{r.status}[/]", escape(detail)
        )
    for detail, rows in skipped.items():
        backends = ", ".join(sorted({r.backend for r in rows if r.backend})) or "-"
        table.add_row(
            ", ".join(sorted({r.step for r in rows})),
            f"{len(rows)} rows",
            backends,
            "[yellow]skipped[/]",
            escape(detail if len(detail) <= 90 else detail[:87] + "..."),
        )
    console.print(table)
    counts = {s: sum(r.status == s for r in report.rows) for s in colours}
    console.print(
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped; "
        f"report: {out / 'doctor.md'}, {out / 'doctor.json'}",
        highlight=False,
    )
