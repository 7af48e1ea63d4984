"""One job of a batch, the same on this machine and on a Ray worker: `mattex run`'s pipeline
(matte_media) with an open model, into a temporary folder beside the job's folder, renamed to
it only when the job ends. A worker lost mid-job leaves the temporary (removed by the next run
that holds the folder's lock), never a job folder with half its outputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mattex.files import commit, discard, temporary_folder_beside
from mattex.runtime.pipeline import matte_media

from .jobs import Job
from .manifest import output_hash


@dataclass
class JobOutcome:
    out: str
    line: int
    status: str  # done, skipped (the manifest has it), failed (its own fault, or workers lost)
    frames: int = 0
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)  # file or folder under the job's folder -> sha256
    error: str | None = None  # "MediaError: ..." for a failed job
    partial: str | None = None  # with keep_partial: why the source stopped short
    worker: str | None = None  # where it ran: "local", or a Ray worker's node and pid
    attempts: int = 1

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3), "fps": round(self.fps, 3)}


def run_job(
    matter, model: Path, job: Job, folder: Path, progress: Callable[[int], None] = lambda n: None
) -> JobOutcome:
    """Matte `job` with the open `matter` into `folder/job.out`. A job that fails for its own
    reason (a broken clip: a MattexError, or any exception a decoder raises on it) is a failed
    outcome with nothing left, named by its type; an interruption removes the temporary folder
    and is raised (a job is never half-recorded)."""
    final = Path(folder) / job.out
    tmp = temporary_folder_beside(final)
    started = time.perf_counter()
    try:
        result = matte_media(model, job.src, job.bgr, tmp, progress=progress, matter=matter, **job.options)
        if result.stats.interrupted:  # mattex run keeps the frames done; a batch job is all or nothing
            raise KeyboardInterrupt
        outputs = {Path(path).name: output_hash(Path(path)) for path in result.outputs.values()}
        commit(tmp, final)
    except Exception as e:  # a MattexError (a broken clip), or a decoder's own: this job's alone
        discard(tmp)
        error = f"{type(e).__name__}: {e}"
        return JobOutcome(job.out, job.line, "failed", seconds=time.perf_counter() - started, error=error)
    except BaseException:
        discard(tmp)
        raise
    seconds = time.perf_counter() - started
    partial = result.source.get("partial")
    return JobOutcome(job.out, job.line, "done", result.stats.frames, seconds, outputs, partial=partial)
