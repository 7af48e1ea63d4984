"""`mattex batch`: every job of a jobs file, on this machine (one model load) or on a Ray
cluster (batch/cluster.py), each finished job recorded in DIR's manifest so that a second run
does only what is left."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mattex.errors import ConfigError
from mattex.files import check_model_file, check_output_folder, output_error, remove_dead_partials, sha256_file

from .execute import JobOutcome, run_job
from .jobs import Job, read_jobs
from .manifest import Manifest

LOCK_NAME = ".mattex-batch.lock"


@dataclass
class BatchProgress:
    """What a display hears: the jobs to run (and those skipped), frames as they are matted, and
    each job as it ends."""

    on_start: Callable[[int, int], None] = lambda to_run, skipped: None
    on_frames: Callable[[int], None] = lambda n: None
    on_job: Callable[[JobOutcome], None] = lambda outcome: None


@dataclass
class BatchResult:
    jobs: list[JobOutcome]
    seconds: float
    where: str  # "this machine", or the Ray cluster's address
    workers: int
    cluster: dict = field(default_factory=dict)  # with Ray: nodes, CPUs, GPUs, what each worker took

    @property
    def frames(self) -> int:
        return sum(job.frames for job in self.jobs if job.status == "done")

    @property
    def failed(self) -> list[JobOutcome]:
        return [job for job in self.jobs if job.status == "failed"]

    def count(self, status: str) -> int:
        return sum(job.status == status for job in self.jobs)

    def to_dict(self) -> dict:
        return {
            "where": self.where,
            "workers": self.workers,
            "cluster": self.cluster,
            "jobs": {status: self.count(status) for status in ("done", "skipped", "failed")},
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.frames / self.seconds, 3) if self.seconds else 0.0,
            "results": [job.to_dict() for job in sorted(self.jobs, key=lambda j: j.line)],
        }


def run_batch(
    model: str | Path,
    jobs_file: str | Path,
    out: str | Path,
    ray: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None,
    retries: int = 2,
    progress: BatchProgress | None = None,
    **open_options,
) -> BatchResult:
    """Run every job of `jobs_file` (batch/jobs.py) into `out`/<job's out>. Without `ray`, here
    with one model load; with `ray` (an address, or "auto"), on that cluster's actor pool
    (batch/cluster.py). Every line is checked and the model file too before any work. A job
    that fails for its own reason fails alone (the result's `failed`); jobs the manifest has
    with intact files are skipped. Options for Matter.open (backend, ...) pass through."""
    progress = progress or BatchProgress()
    if ray is not None:
        from mattex.extras import require

        require("ray", "`ray` (running the jobs on a Ray cluster)")
        from .cluster import check_reachable

        check_reachable(ray)
    if retries < 0:
        raise ConfigError(f"`retries` must be 0 or more, got {retries}")
    model = check_model_file(model)
    jobs = read_jobs(jobs_file)
    folder = check_output_folder(out)
    started = time.perf_counter()
    with _only_batch_in(folder):
        manifest = Manifest(folder, sha256_file(model))
        todo = [job for job in jobs if not manifest.finished(job.out, job.spec())]
        skipped = [_skipped(job, manifest) for job in jobs if job not in todo]
        for job in todo:  # what a killed run left: no one else writes here while we hold the lock
            remove_dead_partials(folder / job.out, writers_elsewhere=True)
        progress.on_start(len(todo), len(skipped))

        by_out = {job.out: job for job in todo}

        def finished(outcome: JobOutcome) -> None:
            if outcome.status == "done":
                job = by_out[outcome.out]
                manifest.record(job.out, job.spec(), outcome.outputs, outcome.frames)
            progress.on_job(outcome)

        if ray is None:
            outcomes = _run_here(model, todo, folder, progress.on_frames, finished, open_options)
            where, worker_count, cluster = "this machine", 1, {}
        else:
            from .cluster import run_on_ray

            try:
                outcomes, cluster = run_on_ray(
                    model, todo, folder, ray, workers, gpus_per_worker, cpus_per_worker, retries,
                    progress.on_frames, finished, open_options,
                )  # fmt: skip
            finally:  # a lost worker's temporary folder (its job done again elsewhere), or those of
                # the workers an interruption stopped (they went with the connection)
                for job in todo:
                    remove_dead_partials(folder / job.out, writers_elsewhere=True)
            where, worker_count = ray, cluster["workers"]
    return BatchResult(skipped + outcomes, time.perf_counter() - started, where, worker_count, cluster)


def _skipped(job: Job, manifest: Manifest) -> JobOutcome:
    record = manifest.jobs[job.out]
    return JobOutcome(job.out, job.line, "skipped", record["frames"], outputs=record["outputs"])


def _run_here(model: Path, jobs: list[Job], folder: Path, on_frames, finished, open_options) -> list[JobOutcome]:
    """The jobs one after another with one open model, the pipeline of `mattex run`."""
    if not jobs:
        return []
    from mattex.runtime.matter import Matter

    matter = Matter.open(model, sharing_cores=True, **open_options)
    outcomes = []
    for job in jobs:
        outcome = run_job(matter, model, job, folder, on_frames)
        outcome.worker = "local"
        outcomes.append(outcome)
        finished(outcome)
    return outcomes


@contextmanager
def _only_batch_in(folder: Path) -> Iterator[None]:
    """The output folder, made if missing, held by this run alone (a lock file beside the jobs'
    folders, removed at the end): two batches writing one folder would remove each other's
    temporaries and rewrite each other's manifest."""
    import fcntl  # POSIX: imported here, so that `mattex --help` runs anywhere

    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise output_error(folder / LOCK_NAME, e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise output_error(folder / LOCK_NAME, e) from None
            busy = f"another mattex batch is writing into {folder}; wait for it or write elsewhere"
            raise ConfigError(busy) from None
        try:
            yield
        finally:
            (folder / LOCK_NAME).unlink(missing_ok=True)
    except BaseException:
        for made in created:  # deepest first: a refused run leaves no empty folder it made
            if made.is_dir() and not any(made.iterdir()):
                made.rmdir()
        raise
    finally:
        os.close(fd)
