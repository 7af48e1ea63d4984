"""`mattex batch`: a library of clips matted on this machine or across a Ray cluster, resumable
from a manifest, each job's outputs renamed into place only when the job ends."""

from .execute import JobOutcome
from .jobs import Job, job_options, read_jobs
from .runner import BatchProgress, BatchResult, run_batch

__all__ = ["BatchProgress", "BatchResult", "Job", "JobOutcome", "job_options", "read_jobs", "run_batch"]
