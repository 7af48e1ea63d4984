"""What a build is asked for: profiles, target GPUs, and the options of the backends' builds
(each build says which it takes: `backends`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mattex.contract import parse_size
from mattex.errors import BackendUnavailableError, ConfigError
from mattex.runtime.io_spec import Profile
from mattex.runtime.sidecar import HARDWARE_COMPAT


def parse_profile(text: str, max_batch: int = 1) -> Profile:
    """`hd`, `4k`, `HxW` (one size) or `HxW-HxW` (a range; opt = the larger) -> a Profile with
    batch 1..max_batch (opt max_batch)."""
    if max_batch < 1:
        raise ConfigError(f"the largest batch (`batch`) must be at least 1, got {max_batch}")
    parts = text.lower().split("-")
    if len(parts) not in (1, 2):
        raise ConfigError(f"`profile` {text!r}: expected one size or a min-max range (hd, 4k, HxW, HxW-HxW)")
    sizes = [parse_size(part, "profile") for part in parts]
    low, high = sizes[0], sizes[-1]
    if low[0] > high[0] or low[1] > high[1]:
        raise ConfigError(f"`profile` {text!r}: the minimum exceeds the maximum")
    return Profile((1, *low), (max_batch, *high), (max_batch, *high))


def parse_compute_capabilities(text: str | None) -> list[str] | None:
    """`8.6,8.9,12.0` (or `current`: the GPU of this machine) -> ['8.6', '8.9', '12.0'];
    None or empty: TensorRT for RTX's default targets."""
    if not text:
        return None
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    for value in values:
        if value != "current" and not re.fullmatch(r"\d+\.\d+", value):
            raise ConfigError(f"`compute_capabilities` {value!r}: expected MAJOR.MINOR (e.g. 8.6) or current")
    if "current" in values and len(values) > 1:
        raise ConfigError(
            "`compute_capabilities` current targets this machine's GPU alone; do not combine it with others"
        )
    if len(set(values)) != len(values):
        raise ConfigError(f"`compute_capabilities` {text!r} names a compute capability twice")
    return values


def _gpu_visible() -> bool:
    from mattex.runtime.cuda import device_count

    try:
        return device_count() > 0
    except BackendUnavailableError:
        return False


@dataclass
class BuildOptions:
    """How to build. The workspace is every build's; the others are one backend's (TensorRT:
    timing cache, version-compatible and hardware-compatible plans; TensorRT for RTX: the
    target compute capabilities), which its build checks (`EngineBuild.validate`)."""

    workspace_gib: float = 4.0
    timing_cache: Path | None = None
    version_compatible: bool = False
    hardware_compat: str = "none"
    compute_capabilities: list[str] | None = None

    def validate(self, backend: str) -> None:
        if self.workspace_gib <= 0:
            raise ConfigError(f"`workspace_gib` must be positive, got {self.workspace_gib} GiB")
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise ConfigError(f"`hardware_compat` must be one of {', '.join(HARDWARE_COMPAT)}")
        from .backends import engine_build

        engine_build(backend).validate(self)
