"""`mattex verify`'s defaults, where the CLI can read them at startup (the verification itself
imports torch): `verify_file` and the command's options both take theirs from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VerifyOptions:
    samples: int = 2  # generated input pairs: random for fp32 files, synthetic composites for fp16/int8
    batch: int = 1  # pairs per call (random inputs)
    backend: str = "onnxruntime"  # the reference runtime; any registered backend
