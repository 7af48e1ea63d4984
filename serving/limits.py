"""The bounds of every number `mattex serve` (ServeConfig) and `mattex triton-repo`
(RepositoryConfig) take, in one place; docs/serving.md lists them. Past a bound a setting is a
typo or a machine brought down, never a deployment: it is refused by name before anything starts.
"""

from __future__ import annotations

import ipaddress
import os
import re

from mattex.errors import ConfigError

PORTS = (1, 65535)
# Frames a batch holds; Triton sends requests of up to this many frames each, and holds that many
# frames of every output per request in memory. 256 frames of 4K are 6 GB of uint8 input alone.
MAX_BATCH = 256
# The largest batch Triton forms unless told (`mattex serve` and `mattex triton-repo` alike).
DEFAULT_MAX_BATCH = 4
# How long a request may wait for a batch to fill: 10 s (latency, not throughput, past that).
MAX_QUEUE_DELAY_US = 10_000_000
# Requests waiting in the queue: each holds its frames in memory (100,000 of 720p: 276 GB).
MAX_QUEUE_SIZE = 100_000
# How long a request may wait in the queue before it is rejected: an hour.
MAX_QUEUE_TIMEOUT_US = 3_600_000_000
# The largest frame a server may be told to take: 16384 x 16384 (the largest texture a GPU
# handles, 805 MB of uint8 RGB a frame and background).
MAX_PIXELS = 16384 * 16384
# How long Triton may wait for requests in flight when stopping.
MAX_EXIT_TIMEOUT_S = 600
# A repository's instances per device: each holds its own copy of the model in that device's
# memory; `mattex triton-repo` writes for another machine, so its bound is not this machine's.
MAX_REPOSITORY_INSTANCES = 64


def max_serving_instances() -> int:
    """The most model instances `mattex serve` runs here: twice the cores this process may use.
    Each instance is a Matter in this process and a Python stub process of Triton's; past two per
    core they only queue for the cores (a GPU backend overlaps a copy with a run, hence two)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 2 * cores


def check_whole(option: str, value, low: int, high: int, meaning: str = "") -> None:
    """ConfigError naming `option` unless `value` is a whole number from `low` to `high`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"`{option}` must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"`{option}` must be {low}-{high}{meaning}, got {value}")


def check_port(option: str, value) -> None:
    check_whole(option, value, *PORTS, " (a TCP port)")


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_address(option: str, address) -> None:
    """ConfigError unless `address` is an IP address or has the form of a host name (labels of
    letters, digits and hyphens, the last not all digits: 999.1.1.1 is neither). Whether this
    machine resolves it and has it is for the bind (serve's port check) to say."""
    if not isinstance(address, str) or not address:
        raise ConfigError(f"`{option}` must be an IP address or a host name, got {address!r}")
    try:
        ipaddress.ip_address(address)
        return
    except ValueError:
        pass
    labels = address.removesuffix(".").split(".")
    if len(address) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ConfigError(f"`{option}` {address!r} is neither an IP address nor a host name")
