"""Triton's processes as `mattex serve` sees them: the server and its Python stubs (one per model
instance), known by the PyTriton workspace folder that each has in its command line, so that
nothing else this process started is ever taken for them (Linux's /proc; Triton runs only there).

While Triton starts, `StartWatch` notices its server exiting (a port taken since mattex checked
it, for one) and ends the start at once; PyTriton alone would wait out its 120 s startup timeout
and then say only "timed out". On every stop, `TritonProcesses.stop_survivors` kills what outlived
Triton and removes the shared memory it held: when a model instance does not unload within
Triton's exit timeout, Triton exits anyway and leaves that instance's stub running, orphaned,
holding PyTriton's shared memory (seen with two OpenVINO instances: "Found 1 live models", then
"Exit timeout expired").
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import threading
import time
from pathlib import Path

SHM_PREFIX_OPTION = b"python,shm-region-prefix-name="  # tritonserver's --backend-config value


WORKSPACE_FORM = "workspace_mattex_{pid}_"  # then WORKSPACE_TOKEN_BYTES random bytes in hex
WORKSPACE_TOKEN_BYTES = 4


def workspace_prefix(pid: int) -> str:
    """How the PyTriton workspaces of serve() in process `pid` are named (then a random part)."""
    return WORKSPACE_FORM.format(pid=pid)


def workspace_name(pid: int) -> str:
    """A new workspace name for serve() in process `pid`."""
    return workspace_prefix(pid) + secrets.token_hex(WORKSPACE_TOKEN_BYTES)


def remove_dead_workspaces(home: Path) -> list[Path]:
    """Remove the PyTriton workspaces (in `home`) of mattex servers that were killed outright (kill
    -9, a lost container): PyTriton removes its workspace on a clean stop only, and each holds a
    copy of tritonserver (22 MB). Only names of serve()'s own form (workspace_name) are touched,
    and only where no process runs with that pid and none names the workspace in its command line
    (a Triton orphaned by the kill still uses it); with them the shared memory PyTriton named
    after that process (`pytrtion<pid>-...`). Every other workspace stays. Returns those removed."""
    pid_part = re.escape(WORKSPACE_FORM).replace(re.escape("{pid}"), "([0-9]{1,10})")
    own = re.compile(pid_part + f"[0-9a-f]{{{2 * WORKSPACE_TOKEN_BYTES}}}")
    try:
        candidates = [(p, int(m[1])) for p in home.iterdir() if (m := own.fullmatch(p.name)) and not p.is_symlink()]
    except OSError:  # no PyTriton home yet: nothing to remove
        return []
    dead = [(p, pid) for p, pid in candidates if not running(pid)]
    if not dead:
        return []
    in_use = [arg for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) for arg in command_line(pid)]
    removed = []
    for workspace, pid in dead:
        if any(os.fsencode(workspace) in arg for arg in in_use):
            continue
        shutil.rmtree(workspace, ignore_errors=True)
        _remove_shared_memory(f"pytrtion{pid}-")
        removed.append(workspace)
    return removed


def _remove_shared_memory(*prefixes: str) -> None:
    """Unlink the shared memory segments whose names start with one of `prefixes`."""
    for name in os.listdir("/dev/shm") if prefixes and os.path.isdir("/dev/shm") else ():
        if name.startswith(prefixes):
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except OSError:
                pass


def descendants(pid: int) -> set[int]:
    """The processes below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = set(), list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.add(current)
        todo += children.get(current, [])
    return found


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead and waiting for its parent to reap it, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def command_line(pid: int) -> list[bytes]:
    """The arguments `pid` runs with (none for a zombie or a process that is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    except OSError:
        return []


class TritonProcesses:
    """The processes of the Triton whose PyTriton workspace is `workspace`, as far as seen (by
    the start's watch thread, then, once it has ended, by the main thread: never both at once)."""

    def __init__(self, workspace: Path):
        self._marker = os.fsencode(workspace)
        self.seen: dict[int, list[bytes]] = {}  # pid -> its command line

    def scan(self) -> bool:
        """Record this Triton's running processes; whether its server is among them."""
        server_runs = False
        for pid in descendants(os.getpid()):
            argv = command_line(pid)
            if any(self._marker in arg for arg in argv) and running(pid):
                self.seen.setdefault(pid, argv)
                server_runs |= argv[0].endswith(b"/bin/tritonserver")
        return server_runs

    def stop_survivors(self) -> None:
        """Kill the recorded processes still running (each checked to be the same program: a
        pid may have been reused) and remove the shared memory segments named after the server's
        prefix (PyTriton unlinks them only on a clean shutdown)."""
        killed = []
        for pid, argv in self.seen.items():
            if running(pid) and command_line(pid) == argv:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 5  # a killed process releases its memory before it is gone
        while any(running(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(0.05)
        prefixes = {
            os.fsdecode(a.removeprefix(SHM_PREFIX_OPTION))
            for v in self.seen.values()
            for a in v
            if a.startswith(SHM_PREFIX_OPTION)
        }
        _remove_shared_memory(*prefixes)


class TritonExited(SystemExit):
    """Raised in the main thread when tritonserver exits while starting. A SystemExit, which no
    `except Exception` in PyTriton swallows and which gevent's hub (under tritonclient's HTTP
    client, where the signal may land) hands to the waiting code without printing it."""


class StartWatch:
    """A thread that, while Triton starts, records its processes every 0.2 s and raises
    `TritonExited` in the main thread (by SIGUSR1) once its server has run and stopped."""

    def __init__(self, processes: TritonProcesses):
        self.processes = processes
        self._lock = threading.Lock()
        self._done = False
        self._thread = threading.Thread(target=self._watch, name="mattex-triton-start", daemon=True)

    def __enter__(self) -> StartWatch:
        self._previous = signal.signal(signal.SIGUSR1, self._raise)
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        with self._lock:  # no signal after this
            self._done = True
        self._thread.join()
        signal.signal(signal.SIGUSR1, self._previous)
        self.processes.scan()  # every stub is up once the model has loaded

    @staticmethod
    def _raise(*_) -> None:
        raise TritonExited

    def _watch(self) -> None:
        server_ran = False
        while True:
            time.sleep(0.2)
            server_runs = self.processes.scan()
            with self._lock:
                if self._done:
                    return
                server_ran |= server_runs
                if server_ran and not server_runs:
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
                    return
