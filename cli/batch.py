"""`mattex batch`: matte every clip of a jobs file, here or on a Ray cluster, resumably."""

from __future__ import annotations

from pathlib import Path

import typer

from mattex.batch import BatchProgress, BatchResult, job_options, run_batch

from .common import EXIT_FINDING, JSON_OPTION, console, defaults_of, emit_json, err_console, user_errors

SHORT_HELP = "Matte a library of clips (a JSON Lines jobs file), here or on a Ray cluster, resumably."
FLAGS = {"ray": "--ray", "out": "--out"}
Batch = defaults_of(run_batch)


@user_errors(FLAGS)
def command(
    model: Path = typer.Argument(..., help="An exported .onnx or a .engine (with its sidecar)."),
    jobs: Path = typer.Argument(
        ...,
        help='JSON Lines, one job a line: {"src": ..., "bgr": ..., "out": NAME} and any option of mattex run '
        f"by its library name ({', '.join(job_options())}).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the jobs' folders and the manifest."),
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Run on a Ray cluster: its address (host:6379), or auto for the one this machine belongs to "
        "(needs the ray extra). Sources and --out must be on a path every node sees.",
    ),
    workers: int | None = typer.Option(
        None, min=1, help="With --ray: workers, each opening the model once (default: one per GPU, else per node)."
    ),
    gpus_per_worker: float | None = typer.Option(
        None, min=0, help="With --ray: GPUs each worker takes (default: the cluster's GPUs shared out, at most 1)."
    ),
    cpus_per_worker: float | None = typer.Option(
        None, min=0, help="With --ray: CPUs each worker takes, and its threads (default: the CPUs shared out)."
    ),
    retries: int = typer.Option(
        Batch.retries, min=0, help="With --ray: times a job is run again when its worker or node is lost."
    ),
    backend: str | None = typer.Option(None, help="Run an .onnx on onnxruntime or openvino (as mattex run)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex batch bgm_mobilenetv2_hd_fp32.onnx jobs.jsonl --out matted/

    Every line of JOBS is checked before any work. Each job runs mattex run's pipeline into a
    temporary folder renamed to OUT/NAME when it ends; OUT/manifest.json records each finished
    job (outputs, frames, sha256), so a second run skips what is done and intact. A job that
    fails on its own (a broken clip) fails alone: named in the summary, exit 1.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    options = {"backend": backend} if backend else {}
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=json_output) as bar:
        job_bar = bar.add_task("jobs", total=None, count="")
        frame_bar = bar.add_task("frames", total=None, count="")

        def start(to_run: int, skipped: int) -> None:
            bar.update(job_bar, total=to_run, count=f"0/{to_run}" + (f" ({skipped} done before)" if skipped else ""))

        def frames(n: int) -> None:
            bar.update(frame_bar, advance=n)
            bar.update(frame_bar, count=f"{int(bar.tasks[frame_bar].completed)}")

        def job(outcome) -> None:
            bar.update(job_bar, advance=1)
            task = bar.tasks[job_bar]
            bar.update(job_bar, count=f"{int(task.completed)}/{int(task.total or 0)}")

        result = run_batch(
            model, jobs, out, ray=ray, workers=workers, gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker, retries=retries, progress=BatchProgress(start, frames, job), **options,
        )  # fmt: skip
    if not emit_json(result.to_dict(), json_output):
        console.print(_summary(model, result))
    if result.failed:
        raise typer.Exit(EXIT_FINDING)


def _summary(model: Path, result: BatchResult):
    from rich.markup import escape
    from rich.table import Table

    counts = ", ".join(f"{result.count(s)} {s}" for s in ("done", "skipped", "failed"))
    fps = result.frames / result.seconds if result.seconds else 0.0
    caption = f"{counts}; {result.frames} frames in {result.seconds:.1f} s ({fps:.2f} frames/s)"
    caption += f" on {result.where}, {result.workers} worker{'s' if result.workers != 1 else ''}"
    table = Table(title=f"mattex batch {model.name}", caption=caption)
    for name in ("line", "out", "status", "frames", "frames/s", "worker", "error"):
        table.add_column(name, overflow="fold", justify="right" if name in ("line", "frames", "frames/s") else "left")
    for job in sorted(result.jobs, key=lambda j: j.line):
        retried = f" ({job.attempts} tries)" if job.attempts > 1 else ""
        status = {"failed": "[red]failed[/]", "done": "done"}.get(job.status, job.status) + retried
        fps = f"{job.fps:.2f}" if job.status == "done" else ""
        table.add_row(str(job.line), job.out, status, str(job.frames), fps, job.worker or "", escape(job.error or ""))
    return table
