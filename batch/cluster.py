"""`mattex batch --ray`: the jobs on a Ray cluster. A pool of actors, each opening the model
once (its bytes from Ray's object store, so no node needs the model on a shared file system)
and running jobs as tasks; sources and outputs live on a path every node sees.

A worker lost mid-job (its process, or its whole node): Ray restarts the actor where the
cluster has room (`max_restarts`), and the job goes back to the queue for whichever worker is
free first (tasks are not retried on the lost actor itself, `max_task_retries=0`: a restart
that finds no room would hold the job forever). Ray fails a task that was running when its
actor was lost, but not one still queued for it (an actor lost while it was being created, or
just before the task reached it): that task waits for the restart, forever where no node has
room. So the pool also asks Ray's control store how each busy worker stands: a worker
restarting or dead, on a node that is dead, or not started for `WORKERS_GONE_TIMEOUT_S`, has
lost its job (cancelled there, so that a later restart does not run it too). A job whose
worker is lost more than `retries` times fails alone, as a job whose clip is broken does."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mattex.errors import ConfigError

from .execute import JobOutcome, run_job
from .jobs import Job

# How long every worker may stay lost (restarting, or waiting for room) before the jobs left fail,
# and how long a worker holding a job may stay not started before the job counts as lost
WORKERS_GONE_TIMEOUT_S = 300.0
_POLL_S = 0.25
_STATE_POLL_S = 1.0  # how often the busy workers' states are asked of Ray


class MatteWorker:
    """One worker of the pool: the model opened once, from bytes, then job after job. Threaded
    (two calls at once), so the driver can ask how many frames the running job has done."""

    def __init__(self, model_name: str, model_refs: list, cpus: float, options: dict):
        import ray

        from mattex.runtime.backends.base import THREADS_VARIABLE
        from mattex.runtime.matter import Matter

        context = ray.get_runtime_context()
        gpus = context.get_accelerator_ids().get("GPU")
        self.name = f"node {context.get_node_id()[:8]} pid {os.getpid()}"
        if gpus:
            self.name += f", GPU {','.join(map(str, gpus))}"
        else:
            # a CPU worker uses the cores Ray gave it, not one thread per core of the node (the
            # node's own MATTEX_THREADS, where it sets one, stays)
            threads = os.environ.setdefault(THREADS_VARIABLE, str(max(1, int(cpus))))
            self.name += f", {threads} thread{'s' if threads != '1' else ''}"
        self.model = Path(model_name)
        # the model (and an engine's sidecar) from the object store, into this node's temp folder
        files = dict(zip((self.model.name, f"{self.model.name}.json"), ray.get(model_refs)))
        folder = Path(tempfile.mkdtemp(prefix="mattex-batch-model-"))
        try:  # the backends read the file while opening it, never after: it is removed at once
            for name, data in files.items():
                (folder / name).write_bytes(data)
            self.matter = Matter.open(folder / self.model.name, sharing_cores=True, **options)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.job: str | None = None
        self.frames_done = 0

    def ready(self) -> str:
        return self.name

    def frames(self) -> tuple[str | None, int]:
        return self.job, self.frames_done

    def run(self, job: Job, folder: str) -> JobOutcome:
        self.job, self.frames_done = job.out, 0

        def count(n: int) -> None:
            self.frames_done += n

        try:
            outcome = run_job(self.matter, self.model, job, Path(folder), count)
        finally:
            self.job = None
        outcome.worker = self.name
        return outcome


@dataclass
class Plan:
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    def facts(self, ray) -> dict:
        resources = ray.cluster_resources()
        nodes = sum(1 for node in ray.nodes() if node["Alive"])
        return {
            "nodes": nodes,
            "cpus": resources.get("CPU", 0.0),
            "gpus": resources.get("GPU", 0.0),
            "workers": self.workers,
            "cpus_per_worker": self.cpus_per_worker,
            "gpus_per_worker": self.gpus_per_worker,
        }


def plan_workers(nodes: list[dict], workers, gpus_per_worker, cpus_per_worker) -> Plan:
    """The pool for a cluster whose alive nodes have `nodes` resources (Ray's {"CPU": 8.0,
    "GPU": 1.0, ...} each): by default one worker per GPU where it has GPUs, else one per node
    with its share of the CPUs (no more than a node has). Refused (ConfigError) where the
    cluster cannot hold it: the actors would wait for room forever."""
    cpus, gpus = (sum(node.get(kind, 0.0) for node in nodes) for kind in ("CPU", "GPU"))
    if workers is None:
        workers = int(gpus) if gpus >= 1 else max(1, len(nodes))
    if workers < 1:
        raise ConfigError(f"`workers` must be at least 1, got {workers}")
    if gpus_per_worker is None:
        gpus_per_worker = min(1.0, gpus / workers) if gpus else 0.0
    largest_node = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
    if cpus_per_worker is None:
        cpus_per_worker = 1.0 if gpus_per_worker else max(1.0, min(float(int(cpus // workers)), largest_node))
    for name, value in (("gpus_per_worker", gpus_per_worker), ("cpus_per_worker", cpus_per_worker)):
        if not value >= 0:
            raise ConfigError(f"`{name}` must be 0 or more, got {value}")
    for kind, each, total in (("CPUs", cpus_per_worker, cpus), ("GPUs", gpus_per_worker, gpus)):
        if workers * each > total + 1e-9:
            raise ConfigError(
                f"{workers} workers x {each:g} {kind} is more than the cluster's {total:g} {kind}: "
                "fewer `workers` or less per worker"
            )
    if cpus_per_worker > largest_node:
        raise ConfigError(f"a worker of {cpus_per_worker:g} CPUs fits no node (the largest has {largest_node:g})")
    return Plan(workers, cpus_per_worker, gpus_per_worker)


def run_on_ray(
    model: Path, jobs: list[Job], folder: Path, address: str, workers, gpus_per_worker, cpus_per_worker, retries,
    on_frames, finished, open_options,
) -> tuple[list[JobOutcome], dict]:  # fmt: skip
    """Connect to the cluster at `address`, run `jobs` on a pool of MatteWorker actors and
    disconnect (the actors go with the connection)."""
    import ray

    owned = not ray.is_initialized()
    if owned:
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {e}") from None
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        plan = plan_workers(nodes, workers, gpus_per_worker, cpus_per_worker)
        facts = plan.facts(ray)
        if not jobs:
            return [], facts
        pool = _start_pool(ray, model, plan, retries, open_options)
        return _Dispatcher(ray, pool, folder, retries, on_frames, finished).run(jobs), facts
    finally:
        if owned:
            ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """ConfigError now where nothing answers at HOST:PORT: ray.init would retry for minutes.
    `auto` (and a ray:// client address) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address:
        return
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"`ray` takes HOST:PORT (the head's GCS port, 6379 by default) or auto, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {reason} (is `ray start --head` running there?)"
        ) from None


def _start_pool(ray, model: Path, plan: Plan, retries: int, open_options: dict) -> list:
    from mattex.runtime.sidecar import sidecar_path

    sidecar = sidecar_path(model)
    # once into the object store, each worker fetching them; passed inside a list, so that the
    # actor asks for them itself and a restarted actor finds them again (the driver holds them)
    model_refs = [ray.put(model.read_bytes())] + ([ray.put(sidecar.read_bytes())] if sidecar.is_file() else [])
    actor = ray.remote(MatteWorker).options(
        num_cpus=plan.cpus_per_worker,
        num_gpus=plan.gpus_per_worker,
        max_restarts=retries,
        max_task_retries=0,
        max_concurrency=2,
        scheduling_strategy="SPREAD",
    )
    return [actor.remote(model.name, model_refs, plan.cpus_per_worker, open_options) for _ in range(plan.workers)]


class _Dispatcher:
    """Hands jobs to free workers, gives a lost worker's job to the next free one, and reports
    frames and jobs as they complete."""

    def __init__(self, ray, pool: list, folder: Path, retries: int, on_frames, finished) -> None:
        self.ray, self.folder, self.retries = ray, str(folder), retries
        self.on_frames, self.finished = on_frames, finished
        self.idle = deque(pool)
        self.running: dict = {}  # task ref -> (actor, job, attempt)
        self.not_started: dict = {}  # task ref -> since when its worker has been seen not started
        self.next_check = 0.0  # when the busy workers' states are asked next
        self.recovering: dict = {}  # ready() ref -> actor lost mid-job, back when it answers
        self.polls: dict = {}  # frames() ref -> actor
        self.shown: dict[int, int] = {}  # id(actor) -> frames shown for its running job
        self.outcomes: list[JobOutcome] = []

    def run(self, jobs: list[Job]) -> list[JobOutcome]:
        queue = deque((job, 1) for job in jobs)
        gone_since = None
        while queue or self.running:
            while queue and self.idle:
                actor = self.idle.popleft()
                job, attempt = queue.popleft()
                self.running[actor.run.remote(job, self.folder)] = (actor, job, attempt)
                self.shown[id(actor)] = 0
            if queue and not self.running and not self.idle:
                gone_since = gone_since or time.monotonic()
                if not self.recovering or time.monotonic() - gone_since > WORKERS_GONE_TIMEOUT_S:
                    self._fail_all(queue, "no worker left: every worker was lost and none could be started again")
                    break
            else:
                gone_since = None
            self._wait(queue)
        return self.outcomes

    def _wait(self, queue: deque) -> None:
        ray = self.ray
        refs = [*self.running, *self.recovering]
        ready, _ = ray.wait(refs, num_returns=1, timeout=_POLL_S) if refs else ([], [])
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if ready else (ready, None)
        for ref in ready:
            if ref in self.recovering:
                actor = self.recovering.pop(ref)
                try:
                    ray.get(ref)
                    self.idle.append(actor)
                except ray.exceptions.RayError:  # gone for good (restarts used up)
                    pass
            else:
                self._task_ended(ref, queue)
        self._find_lost(queue)
        self._show_frames()

    def _task_ended(self, ref, queue: deque) -> None:
        ray = self.ray
        actor, job, attempt = self.running.pop(ref)
        self.not_started.pop(ref, None)
        shown = self.shown.pop(id(actor), 0)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # the worker or its node was lost mid-job
            self._lost(actor, job, attempt, shown, queue, type(e).__name__)
            return
        except ray.exceptions.RayTaskError as e:  # not a MattexError: a fault of its own, named
            cause = e.cause if e.cause is not None else e
            self.on_frames(-shown)
            self.idle.append(actor)
            error = f"{type(cause).__name__}: {cause}"
            self._report(JobOutcome(job.out, job.line, "failed", error=error, attempts=attempt))
            return
        self.idle.append(actor)
        self.on_frames(outcome.frames - shown if outcome.status == "done" else -shown)
        outcome.attempts = attempt
        self._report(outcome)

    def _lost(self, actor, job: Job, attempt: int, shown: int, queue: deque, why: str) -> None:
        """The job's worker was lost: the job goes back to the queue (or fails, its retries used
        up), the worker back to the pool once it answers again."""
        self.on_frames(-shown)  # its frames are done again elsewhere
        self.recovering[actor.ready.remote()] = actor
        if attempt > self.retries:
            reason = f"the worker running it was lost {attempt} times (last: {why})"
            self._report(JobOutcome(job.out, job.line, "failed", error=f"WorkerLost: {reason}", attempts=attempt))
        else:
            queue.appendleft((job, attempt + 1))

    def _find_lost(self, queue: deque) -> None:
        """The jobs whose worker Ray shows lost while no answer comes for the task: a task still
        queued for an actor that is restarting (or waiting for room to restart) is never failed
        by Ray itself. Such a task is cancelled, its job given back to the queue."""
        now = time.monotonic()
        if not self.running or now < self.next_check:
            return
        self.next_check = now + _STATE_POLL_S
        alive_nodes = None
        for ref, (actor, job, attempt) in list(self.running.items()):
            info = _actor_state(self.ray, actor)
            if not info:  # Ray cannot say: its own answer for the task is awaited
                continue
            state, node = info.get("State"), (info.get("Address") or {}).get("NodeID", "")
            why = None
            if state in ("RESTARTING", "DEAD"):
                why = f"worker {state.lower()}"
            elif node and node.strip("f0"):  # placed on a node (ids of 0s or fs: none yet)
                if alive_nodes is None:
                    alive_nodes = _alive_nodes(self.ray)
                if alive_nodes is not None and node not in alive_nodes:
                    why = "its node dead"
            if why is None and state != "ALIVE":  # not started (yet): waiting for room, or loading
                since = self.not_started.setdefault(ref, now)
                if now - since > WORKERS_GONE_TIMEOUT_S:
                    why = f"worker not started in {WORKERS_GONE_TIMEOUT_S:g} s"
            elif why is None:
                self.not_started.pop(ref, None)
            if why is None:
                continue
            del self.running[ref]
            self.not_started.pop(ref, None)
            try:  # so that a restart of the worker does not run it as well
                self.ray.cancel(ref)
            except Exception:  # noqa: BLE001 - gone already, or not cancellable: its answer is ignored
                pass
            self._lost(actor, job, attempt, self.shown.pop(id(actor), 0), queue, why)

    def _report(self, outcome: JobOutcome) -> None:
        self.outcomes.append(outcome)
        self.finished(outcome)

    def _fail_all(self, queue: deque, reason: str) -> None:
        while queue:
            job, attempt = queue.popleft()
            self._report(JobOutcome(job.out, job.line, "failed", error=f"WorkerLost: {reason}", attempts=attempt))

    def _show_frames(self) -> None:
        """Ask each busy worker how far its job is (one question at a time per worker)."""
        ray = self.ray
        busy = {id(actor): (actor, job) for actor, job, _ in self.running.values()}
        if self.polls:
            answered, _ = ray.wait(list(self.polls), num_returns=len(self.polls), timeout=0)
            for ref in answered:
                actor = self.polls.pop(ref)
                try:
                    out, done = ray.get(ref)
                except ray.exceptions.RayError:
                    continue
                key = id(actor)
                if key in busy and busy[key][1].out == out and done > self.shown.get(key, 0):
                    self.on_frames(done - self.shown[key])
                    self.shown[key] = done
        asked = {id(actor) for actor in self.polls.values()}
        for key, (actor, _) in busy.items():
            if key not in asked:
                self.polls[actor.frames.remote()] = actor


def _actor_state(ray, actor) -> dict | None:
    """What Ray's control store holds of `actor` ("State": ALIVE, RESTARTING, ...; "Address"
    with its "NodeID"), or None where it cannot say."""
    try:
        return ray._private.state.actors(actor_id=actor._actor_id.hex()) or None
    except Exception:  # noqa: BLE001 - an older or newer Ray, the store unreachable: no answer
        return None


def _alive_nodes(ray) -> set[str] | None:
    try:
        return {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    except Exception:  # noqa: BLE001 - as above
        return None
