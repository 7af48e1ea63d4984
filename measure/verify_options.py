"""`mattex verify`'s defaults, where the CLI can read them at startup (the verification itself
imports torch): `verify_file` and the command's options both take theirs from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VerifyOptions:
    # Generated input pairs: random for fp32 files, captured as footage for fp16/int8. 16 keep the
    # mean's 95% upper bound, which the gate judges, within about 1.5x of the mean on int8's
    # heavy-tailed footage errors (docs/precision.md: the spread measured).
    samples: int = 16
    batch: int = 1  # pairs per call (random inputs)
    backend: str = "onnxruntime"  # the reference runtime; any registered backend
