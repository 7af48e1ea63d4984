"""How int8 ranges are calibrated, as declared data: standard library only, so the command line
reads its defaults without importing the export toolchain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mattex.errors import ConfigError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class CalibrationSettings:
    data: Path
    backgrounds: Path | None = None
    samples: int = 32
    method: str = "minmax"
    seed: int = 0
    weight_bits: int = 7  # 8 only for TensorRT-only files: x86 CPUs without VNNI saturate

    def validate(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(
                f"unknown calibration `method` {self.method!r}; choose one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.weight_bits not in (7, 8):
            raise ConfigError(f"`weight_bits` must be 7 or 8, got {self.weight_bits}")
        if self.samples < 1:
            raise ConfigError(f"calibration `samples` must be at least 1, got {self.samples}")
