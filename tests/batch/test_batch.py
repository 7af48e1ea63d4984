"""`mattex batch`: a jobs file checked before any work, the jobs run here with one model load,
each job's outputs those of `mattex run`, a rerun skipping what the manifest has, a broken clip
or an unforeseen failure failing alone, Ctrl-C mid-job, and the Ray path without a cluster (Ray
missing, a cluster not there, a worker lost every time). On a real two-node cluster:
test_batch_cluster.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from batch_helpers import BACKEND, CLIPS, FRAMES, free_port, library_jobs, tree_bytes, write_jobs
from typer.testing import CliRunner

from mattex.batch import BatchProgress, read_jobs, run_batch
from mattex.cli.main import app

runner = CliRunner()


def test_a_bad_jobs_file_is_refused_before_any_work_naming_each_line(library, small_file, tmp_path):
    folder, _ = library
    lines = [
        json.dumps({"src": "walk.mp4", "bgr": "walk.png", "out": "a"}),
        "{not json",
        json.dumps({"src": "walk.mp4", "bgr": "walk.png", "out": "a"}),  # a's already
        json.dumps({"src": "gone.mp4", "bgr": "walk.png", "out": "b"}),
        json.dumps({"src": "walk.mp4", "bgr": "walk.png", "out": "../c"}),
        json.dumps({"src": "walk.mp4", "bgr": "walk.png", "out": "d", "rgba": True}),  # the CLI's name, not the API's
        json.dumps({"src": "walk.mp4", "bgr": "walk.png", "out": "e", "png": "yes"}),
        json.dumps({"src": "walk.mp4", "out": "f"}),
        "[1, 2]",
        json.dumps({"src": "walk.mp4", "bgr": "walk.png", "out": ".g"}),  # the temporaries' form
        json.dumps({"src": "walk.mp4", "bgr": "walk.png", "out": "manifest.json"}),
        json.dumps({"src": "walk.mp4", "bgr": "walk.png", "out": "h", "composite": "beach.jpg"}),
    ]
    jobs = folder / "bad.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["batch", str(small_file), str(jobs), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert message.startswith("error: ConfigError:") and "(nothing was run)" in message
    for expected in (
        "line 2: not JSON",
        "line 3: out 'a' is line 1's already",
        f"line 4: no such src: {folder / 'gone.mp4'}",
        "line 5: out must be a plain folder name",
        "line 6: unknown option rgba (options: align, batch, composite, crf, keep_partial, outputs, png, preset, "
        "resize_bgr, rgba_fgr)",
        "line 7: png must be like false",
        "line 8: missing bgr",
        "line 9: a job is a JSON object, not list",
        "line 10: out must be a plain folder name",
        "line 11: out 'manifest.json' is the batch's manifest file",
        f"line 12: no such composite image: {folder / 'beach.jpg'}",
    ):
        assert expected in message, (expected, message)
    assert "line 1:" not in message  # the good line is not named
    assert not (tmp_path / "out").exists()  # refused before any work: not even the folder


def test_here_one_model_load_outputs_of_mattex_run_a_broken_clip_alone_and_a_rerun_skips(
    library, small_file, tmp_path, monkeypatch
):
    from mattex.runtime.matter import Matter

    folder, reference = library
    monkeypatch.setenv("MATTEX_THREADS", "1")
    opened = []
    real_open = Matter.open.__func__
    monkeypatch.setattr(Matter, "open", classmethod(lambda cls, *a, **k: opened.append(a) or real_open(cls, *a, **k)))
    jobs = write_jobs(folder / "here.jsonl", library_jobs(folder))
    args = ["batch", str(small_file), str(jobs), "--out", str(tmp_path / "out"), "--backend", BACKEND]
    # a worker lost on another machine left its temporary folder; its pid means nothing here (this
    # process's own: alive), yet no one writes there while the batch holds the folder: removed
    (tmp_path / "out" / f".walk.{os.getpid()}.abcdefgh.partial" / "pha").mkdir(parents=True)
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 1, first.output  # the broken clip
    summary = json.loads(first.output)
    assert len(opened) == 1 and summary["where"] == "this machine"
    assert summary["jobs"] == {"done": 2, "skipped": 0, "failed": 1}
    assert summary["frames"] == 2 * FRAMES
    broken = next(r for r in summary["results"] if r["out"] == "broken")
    assert broken["error"].startswith("MediaError: ") and "broken.mp4" in broken["error"]
    for name in CLIPS:
        assert tree_bytes(tmp_path / "out" / name) == reference[name], name
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json", *sorted(CLIPS)]  # no broken/, no temporaries
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["jobs"]["walk"]["frames"] == FRAMES and set(manifest["jobs"]["walk"]["outputs"]) == {
        "com.mp4",
        "pha.mp4",
        "fgr.mp4",
    }

    # the rerun: the finished jobs skipped (files untouched), the broken one tried and failed again
    touched = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file() and p.suffix != ".json"}
    table = runner.invoke(app, args, terminal_width=200)
    assert table.exit_code == 1
    assert "2 skipped, 1 failed" in " ".join(table.output.split()) and "MediaError" in table.output
    assert {p: p.stat().st_mtime_ns for p in touched} == touched
    # a job whose file changed since is done again; the others stay skipped
    (tmp_path / "out" / "sway" / "pha" / "000003.png").write_bytes(b"edited")
    again = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert {r["out"]: r["status"] for r in again["results"]} == {"walk": "skipped", "sway": "done", "broken": "failed"}
    assert tree_bytes(tmp_path / "out" / "sway") == reference["sway"]
    # done with another model, or with other options, is not done
    from mattex.batch.manifest import Manifest
    from mattex.files import sha256_file

    walk = next(job for job in read_jobs(jobs) if job.out == "walk")
    assert Manifest(tmp_path / "out", sha256_file(small_file)).finished("walk", walk.spec())
    assert not Manifest(tmp_path / "out", "another model").finished("walk", walk.spec())
    other_options = {**walk.spec(), "options": {"crf": 20}}
    assert not Manifest(tmp_path / "out", sha256_file(small_file)).finished("walk", other_options)


def test_ctrl_c_mid_job_keeps_the_jobs_done_and_the_next_run_does_the_rest(library, small_file, tmp_path, monkeypatch):
    """SIGINT while the second job is matting (as Ctrl-C): the first job's folder and record stay,
    nothing of the second is left, and the next run skips the first and does the second."""
    folder, reference = library
    monkeypatch.setenv("MATTEX_THREADS", "1")  # as the reference was matted
    jobs = write_jobs(folder / "interrupted.jsonl", library_jobs(folder, broken=False))
    matted = []

    def frames(n: int) -> None:
        matted.append(n)
        if sum(matted) == FRAMES + 2:  # in the second job
            os.kill(os.getpid(), signal.SIGINT)

    options = {"backend": BACKEND, "progress": BatchProgress(on_frames=frames)}
    with pytest.raises(KeyboardInterrupt):
        run_batch(small_file, jobs, tmp_path / "out", **options)
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json", "walk"]  # no temporary, no lock
    assert list(json.loads((tmp_path / "out" / "manifest.json").read_text())["jobs"]) == ["walk"]
    rerun = run_batch(small_file, jobs, tmp_path / "out", backend=BACKEND)
    assert [(j.out, j.status) for j in rerun.jobs] == [("walk", "skipped"), ("sway", "done")]
    assert tree_bytes(tmp_path / "out" / "sway") == reference["sway"]


def test_an_unforeseen_failure_of_one_job_fails_it_alone(library, small_file, tmp_path, monkeypatch):
    """Not only MattexError: whatever one job raises (a decoder's own exception) is that job's,
    named by its type, with nothing of it left; the next job runs."""
    import mattex.batch.execute

    folder, _ = library
    real = mattex.batch.execute.matte_media

    def exploding_on_walk(model, src, *args, **kwargs):
        if Path(src).name == "walk.mp4":
            raise RuntimeError("the decoder's own failure")
        return real(model, src, *args, **kwargs)

    monkeypatch.setattr(mattex.batch.execute, "matte_media", exploding_on_walk)
    jobs = write_jobs(folder / "unforeseen.jsonl", library_jobs(folder, broken=False))
    result = run_batch(small_file, jobs, tmp_path / "out", backend=BACKEND)
    assert [(j.out, j.status, j.error) for j in result.jobs] == [
        ("walk", "failed", "RuntimeError: the decoder's own failure"),
        ("sway", "done", None),
    ]
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json", "sway"]


def test_ray_missing_names_the_extra(library, small_file, tmp_path):
    folder, _ = library
    jobs = write_jobs(folder / "one.jsonl", library_jobs(folder, broken=False))
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if ray were not installed
        "from mattex.cli.main import main\n"
        f"sys.argv = ['mattex', 'batch', {str(small_file)!r}, {str(jobs)!r}, '--out', {str(tmp_path / 'out')!r}, "
        "'--ray', 'auto']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "error: ExtraNotInstalledError:" in done.stderr and 'pip install "mattex[ray]"' in done.stderr
    assert not (tmp_path / "out").exists()


def test_refusals_before_any_work_a_cluster_not_there_a_pool_it_cannot_hold_a_folder_in_use(
    library, small_file, tmp_path
):
    import fcntl

    from mattex.batch.cluster import plan_workers
    from mattex.batch.runner import LOCK_NAME
    from mattex.errors import ConfigError

    folder, _ = library
    jobs = write_jobs(folder / "one.jsonl", library_jobs(folder, broken=False)[:1])
    args = ["batch", str(small_file), str(jobs), "--out", str(tmp_path / "out")]
    started = time.monotonic()
    nobody = runner.invoke(app, [*args, "--ray", f"127.0.0.1:{free_port()}"])
    assert nobody.exit_code == 2 and time.monotonic() - started < 10  # not ray.init's minutes of retries
    assert "error: ConfigError: cannot reach the Ray cluster at 127.0.0.1:" in nobody.output
    assert "Connection refused" in nobody.output
    assert "--ray takes HOST:PORT" in runner.invoke(app, [*args, "--ray", "head-node"]).output

    # the pool: one worker per node with the CPUs shared out, one per GPU where there are GPUs
    four = {"CPU": 4.0}
    assert plan_workers([four, four], None, None, None).__dict__ == {
        "workers": 2,
        "cpus_per_worker": 4.0,
        "gpus_per_worker": 0.0,
    }
    assert plan_workers([four, four], 1, None, None).cpus_per_worker == 4.0  # no more than a node has
    gpu_nodes = [{"CPU": 8.0, "GPU": 2.0}, {"CPU": 8.0, "GPU": 2.0}]
    assert plan_workers(gpu_nodes, None, None, None).__dict__ == {
        "workers": 4,
        "cpus_per_worker": 1.0,
        "gpus_per_worker": 1.0,
    }
    one = {"CPU": 1.0}
    with pytest.raises(ConfigError, match=r"3 workers x 1 CPUs is more than the cluster's 2 CPUs"):
        plan_workers([one, one], 3, None, None)
    with pytest.raises(ConfigError, match=r"2 workers x 1 GPUs is more than the cluster's 1 GPUs"):
        plan_workers([{"CPU": 2.0, "GPU": 1.0}], 2, 1.0, None)
    with pytest.raises(ConfigError, match=r"a worker of 2 CPUs fits no node \(the largest has 1\)"):
        plan_workers([one, one], 1, None, 2.0)

    # a folder another batch holds, and a manifest.json that is not a manifest
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / LOCK_NAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = runner.invoke(app, args)
    assert busy.exit_code == 2 and "another mattex batch is writing into" in busy.output
    (tmp_path / "out" / "manifest.json").write_text("[]")
    foreign = runner.invoke(app, args)
    assert foreign.exit_code == 2 and "is not a mattex batch manifest" in foreign.output
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json"]  # nothing run, the lock file gone


class FakeRay:
    """Just what the dispatcher calls of Ray, every call answered at once: to count its retries
    exactly (the cluster test below shows a real lost node)."""

    class exceptions:
        class RayError(Exception):
            pass

        class RayActorError(RayError):
            pass

        class RayTaskError(RayError):
            cause = None

    def wait(self, refs, num_returns=1, timeout=None):
        return list(refs)[:num_returns], list(refs)[num_returns:]

    def get(self, ref):
        if isinstance(ref.value, BaseException):
            raise ref.value
        return ref.value


class FakeRef:
    def __init__(self, value):
        self.value = value


class FakeWorker:
    """Dies (a lost worker) on every job named `poison`; does every other one."""

    def __init__(self):
        self.tries = []
        self.run = SimpleNamespace(remote=self._run)
        self.ready = SimpleNamespace(remote=lambda: FakeRef("back"))
        self.frames = SimpleNamespace(remote=lambda: FakeRef((None, 0)))

    def _run(self, job, folder):
        from mattex.batch.execute import JobOutcome

        self.tries.append(job.out)
        if job.out == "poison":
            return FakeRef(FakeRay.exceptions.RayActorError("the worker died"))
        return FakeRef(JobOutcome(job.out, job.line, "done", frames=3))


def test_a_job_that_loses_its_worker_every_time_fails_alone_after_the_retries():
    from mattex.batch.cluster import _Dispatcher
    from mattex.batch.jobs import Job

    worker, shown, ended = FakeWorker(), [], []
    jobs = [Job(1, Path("a"), Path("b"), "poison"), Job(2, Path("a"), Path("b"), "fine")]
    outcomes = _Dispatcher(FakeRay(), [worker], Path("out"), 2, shown.append, ended.append).run(jobs)
    assert worker.tries.count("poison") == 3 and worker.tries.count("fine") == 1  # once, and 2 retries
    assert {o.out: o.status for o in outcomes} == {"poison": "failed", "fine": "done"} and ended == outcomes
    poison = next(o for o in outcomes if o.out == "poison")
    assert poison.attempts == 3
    assert poison.error == "WorkerLost: the worker running it was lost 3 times (last: RayActorError)"
    assert sum(shown) == 3  # the fine job's frames
