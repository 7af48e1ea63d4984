"""`mattex bench`: ms per frame, frames/s and memory of every backend that can run the given
files here, side by side in one process, interleaved round by round so machine noise hits all
alike.

Rows: each `.onnx` file on ONNX Runtime's CPU provider (and its CUDA and TensorRT providers
where present); each engine on TensorRT or TensorRT for RTX where a GPU is; PyTorch eager with
the weights of the first `.onnx` file (mattex's model and, with `reference=True`, the reference
implementation's patch method) on the CPU and, where present, on CUDA. What cannot run here is
listed with the reason instead of silently missing.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mattex.contract import ENGINE_SUFFIXES, ONNX_SUFFIXES
from mattex.errors import ConfigError, MattexError
from mattex.extras import missing
from mattex.memory import require_memory
from mattex.runtime.backends.base import checked_threads

from .machine import describe_machine


@dataclass
class BenchRow:
    runner: str
    backend: str
    device: str
    file: str | None
    size: tuple[int, int]
    batch: int
    ms_per_frame: float = 0.0
    fps: float = 0.0
    min_ms_per_frame: float = 0.0
    rss_added_mib: float = 0.0  # resident memory the runner added when it was opened and warmed up
    peak_rss_mib: float = 0.0  # the process's resident memory at its peak while the runner ran
    gpu_peak_mib: float | None = None
    rounds: int = 0


@dataclass
class BenchReport:
    machine: dict
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"machine": self.machine, "rows": [asdict(r) for r in self.rows], "skipped": self.skipped}


def rss_mib() -> float:
    """This process's resident memory, MiB (Linux /proc; 0 where unknown)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRss:
    """Samples resident memory every few milliseconds while a runner runs."""

    def __enter__(self):
        self.peak, self._stop = rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def parse_batches(text: str) -> list[int]:
    try:
        batches = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"`batch` {text!r}: expected numbers like 1,4") from None
    if not batches or any(b < 1 for b in batches):
        raise ConfigError(f"`batch` {text!r}: every batch must be at least 1")
    return batches


# What one frame's pixel costs at least, in bytes: the uint8 src and bgr (6), a runner's float32
# inputs (24) and its pha and fgr (16). The model's own activations come on top.
BYTES_PER_PIXEL = 6 + 24 + 16


def _inputs(size: tuple[int, int], batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames (B, H, W, 3): a random scene and its capture with noise."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 256, (batch, *size, 3), dtype=np.uint8)
    bgr = np.clip(src.astype(np.int16) + rng.integers(-40, 41, src.shape), 0, 255).astype(np.uint8)
    return src, bgr


Runner = Callable[[], object]


def _file_runners(
    path: Path, src, bgr, threads: int | None, skipped: list
) -> list[tuple[BenchRow, Callable[[], Runner]]]:
    """(row, opener) for each way each backend that opens `path`'s kind of file can run it
    (`BACKENDS.for_suffix`, each backend's bench variants); openers return the timed call, and
    one that cannot run here raises a MattexError that says why. An engine runs on the backend
    its sidecar names only."""
    from mattex.runtime import Matter
    from mattex.runtime.backends import BACKENDS
    from mattex.runtime.sidecar import load_sidecar

    size, batch = src.shape[1:3], src.shape[0]
    entries = BACKENDS.for_suffix(path.suffix)
    if path.suffix.lower() in ENGINE_SUFFIXES:
        built_for = load_sidecar(path).backend
        entries = [e for e in entries if e.name == built_for]

    def opener(backend: str, options: dict):
        def open_it():
            matter = Matter.open(path, backend=backend, **options)
            return lambda: matter.matte_frames(src, bgr)

        return open_it

    found = []
    for entry in entries:
        for variant in entry.bench_variants:
            options = dict(variant.options)
            if threads and variant.device == "cpu":
                options["threads"] = threads
            label = f"{entry.name} {variant.label}".strip()
            found.append(
                (BenchRow(label, entry.name, variant.device, str(path), size, batch), opener(entry.name, options))
            )
    return found


def _torch_runners(
    path: Path, src, bgr, reference: bool, threads: int | None, skipped: list
) -> list[tuple[BenchRow, Callable[[], Runner]]]:
    """PyTorch eager with the weights `path` was exported from (mattex's model, and the
    reference's patch method), on the CPU and on CUDA where present."""
    import torch

    from mattex.exporter.onnx_file import read_export_metadata
    from mattex.model.reference_method import as_reference_formulation
    from mattex.runtime.io_spec import frames_to_input

    from .reference import reference_model

    if threads:
        torch.set_num_threads(threads)
    meta = read_export_metadata(path)
    size, batch = src.shape[1:3], src.shape[0]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if len(devices) == 1:
        skipped.append({"runner": "pytorch cuda", "why": "no CUDA GPU visible to PyTorch"})
    found = []
    for device in devices:
        for label, reference_method in (("mattex model", False), ("reference patch method", True)):
            if reference_method and not reference:
                continue

            def open_it(device=device, reference_method=reference_method):
                model = reference_model(meta)
                if reference_method:
                    model = as_reference_formulation(model)
                model = model.to(device)
                s = torch.from_numpy(frames_to_input(src, np.float32)).to(device)
                b = torch.from_numpy(frames_to_input(bgr, np.float32)).to(device)

                def call():
                    with torch.no_grad():
                        out = model(s, b)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    return out

                return call

            found.append((BenchRow(f"pytorch {device}, {label}", "pytorch", device, str(path), size, batch), open_it))
    return found


# keep_freed_memory(True) for a process not started yet: glibc reads these at start-up.
KEEP_FREED_MEMORY_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}
# Whether freed memory is kept in this process (glibc has no call that reads the setting back).
_kept = all(os.environ.get(k) == v for k, v in KEEP_FREED_MEMORY_ENV.items())


def keep_freed_memory(keep: bool = True) -> bool:
    """Make glibc keep freed memory for reuse (no mmap for large blocks, no trimming) in this
    process, or (keep=False) go back to glibc's defaults and hand what is free back to the
    system; False where the C library is not glibc.

    PyTorch eager allocates every 4K intermediate anew: by default glibc maps each large block
    and unmaps it when freed, so the next frame faults its pages in again. On the 2-core EPYC
    that was half of the reference method's mobilenetv2 4K frame (1,700 ms, 720,000 page faults;
    770 ms without them), and how much depended on what ran before: a baseline slowed by its
    allocator would flatter every other runner. The runtimes keep arenas of their own; nothing
    else changes. The cost: while kept, the process holds on to its peak memory."""
    import ctypes
    import ctypes.util

    global _kept
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    if keep:
        _kept = bool(mallopt(M_MMAP_MAX, int(KEEP_FREED_MEMORY_ENV["MALLOC_MMAP_MAX_"]))) and bool(
            mallopt(M_TRIM_THRESHOLD, int(KEEP_FREED_MEMORY_ENV["MALLOC_TRIM_THRESHOLD_"]))
        )
        return _kept
    done = bool(mallopt(M_MMAP_MAX, 65536)) and bool(mallopt(M_TRIM_THRESHOLD, 128 * 1024))  # glibc's defaults
    malloc_trim(0)
    _kept = False
    return done


@contextlib.contextmanager
def freed_memory_kept():
    """`keep_freed_memory()` for a block; after it, the process's setting is what it was before
    (a caller that keeps freed memory for its own reasons keeps it)."""
    was_kept = _kept
    keep_freed_memory()
    try:
        yield
    finally:
        if not was_kept:
            keep_freed_memory(False)


def bench(
    files: list[str | Path],
    sizes: list[tuple[int, int]],
    batches: list[int],
    reference: bool = False,
    rounds: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    progress: Callable[[str], None] = lambda step: None,
) -> BenchReport:
    """Time every runner that can run `files` here, at each size and batch."""
    files = [Path(f) for f in files]
    if not files:
        raise ConfigError("give at least one model file to bench")
    for path in files:
        if not path.is_file():
            raise ConfigError(f"no such model file: {path}")
    if rounds < 1 or warmup < 0:
        raise ConfigError(f"`rounds` must be at least 1 and `warmup` at least 0, got {rounds}, {warmup}")
    for height, width in sizes:  # every size asked for, before anything is opened or allocated
        for batch in batches:
            require_memory(f"bench at {height}x{width}, batch {batch}", BYTES_PER_PIXEL * batch * height * width)
    if threads is not None:  # before any runner starts them (PyTorch's pool too, which no backend checks)
        checked_threads(threads)
    report = BenchReport(describe_machine())
    onnx_files = [f for f in files if f.suffix.lower() in ONNX_SUFFIXES]
    # Every runner, PyTorch eager above all, timed without page-fault noise; a library call
    # leaves glibc as it found it (at its defaults: memory handed back).
    with freed_memory_kept():
        _bench_sizes(files, onnx_files, sizes, batches, reference, rounds, warmup, threads, progress, report)
    return report


def _bench_sizes(files, onnx_files, sizes, batches, reference, rounds, warmup, threads, progress, report) -> None:
    for size in sizes:
        for batch in batches:
            src, bgr = _inputs(size, batch)
            candidates = []
            for path in files:
                candidates += _file_runners(path, src, bgr, threads, report.skipped)
            if onnx_files and missing("export"):
                report.skipped.append(
                    {
                        "runner": "pytorch",
                        "why": 'PyTorch is not installed here (the export extra: pip install "mattex[export]")',
                    }
                )
            elif onnx_files:
                candidates += _torch_runners(onnx_files[0], src, bgr, reference, threads, report.skipped)
            elif reference:
                report.skipped.append(
                    {"runner": "pytorch", "why": "PyTorch rows take their weights from an .onnx file"}
                )
            report.rows += _time(candidates, rounds, warmup, report.skipped, progress)


def _time(candidates, rounds: int, warmup: int, skipped: list, progress) -> list[BenchRow]:
    """Open and warm up each runner, then time them interleaved round by round."""
    opened: list[tuple[BenchRow, Runner]] = []
    for row, open_it in candidates:
        progress(f"opening {row.runner} at {row.size[0]}x{row.size[1]}, batch {row.batch}")
        before = rss_mib()
        try:
            call = open_it()
            for _ in range(warmup):
                call()
        except MattexError as e:  # the backend cannot run here (no GPU, no TensorRT): say so
            skipped.append({"runner": row.runner, "file": row.file, "why": str(e)})
            continue
        row.rss_added_mib = round(rss_mib() - before, 1)
        opened.append((row, call))
    samples: dict[int, list[float]] = {id(row): [] for row, _ in opened}
    for index in range(rounds):
        for row, call in opened:
            progress(f"round {index + 1}/{rounds}: {row.runner}")
            with _PeakRss() as peak:
                started = time.perf_counter()
                call()
                samples[id(row)].append(time.perf_counter() - started)
            row.peak_rss_mib = round(max(row.peak_rss_mib, peak.peak), 1)
    for row, _ in opened:
        times = samples[id(row)]
        median = statistics.median(times)
        row.ms_per_frame = round(1000 * median / row.batch, 2)
        row.min_ms_per_frame = round(1000 * min(times) / row.batch, 2)
        row.fps = round(row.batch / median, 3)
        row.rounds = len(times)
        if row.device == "cuda":
            import torch

            row.gpu_peak_mib = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return [row for row, _ in opened]
