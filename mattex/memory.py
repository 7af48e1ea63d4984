"""Whether a buffer can be allocated, asked before allocating it (standard library only, so the
runtime can ask too): a size too large for this machine is a ResourceError naming the size and
the bytes it needs, not numpy's MemoryError half-way through a command, or a machine swapping."""

from __future__ import annotations

from mattex.errors import ResourceError


def available_bytes() -> int | None:
    """The memory this process can still take: the least of the machine's available memory
    (Linux's MemAvailable), the room left in its cgroup (a container's limit) and the room left
    under its address-space limit (RLIMIT_AS); None where none of them can be read."""
    room = [r for r in (_meminfo_available(), _cgroup_room(), _address_space_room()) if r is not None]
    return min(room) if room else None


def require_memory(what: str, needed: int) -> None:
    """ResourceError when `needed` bytes are more than this process can take (`available_bytes`);
    `what` names the size that needs them ("verify at 40000x40000, batch 1")."""
    available = available_bytes()
    if available is not None and needed > available:
        raise ResourceError(
            f"{what} needs at least {_gib(needed)} of memory for its buffers, and this process can take "
            f"{_gib(available)}: choose a smaller size or batch"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB ({n:,} bytes)"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return int(limit) - int(f.read())
    except (OSError, ValueError):
        return None


def _address_space_room() -> int | None:
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = 0
    try:
        with open("/proc/self/status") as f:
            used = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:")), 0)
    except (OSError, ValueError):
        pass
    return soft - used
