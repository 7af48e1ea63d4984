"""Backends planted to fail, registered by tests/measure/test_doctor.py: one raises on every run,
one returns an alpha 0.05 off (a file over its budget)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from fake_backend import FakeBackend  # noqa: E402


class RaisingBackend(FakeBackend):
    kind = "raising"

    def _run(self, src, bgr) -> dict:
        raise RuntimeError("planted: this backend fails every run")


class OffBudgetBackend(FakeBackend):
    kind = "off-budget"

    def _run(self, src, bgr) -> dict:
        outputs = super()._run(src, bgr)
        outputs["pha"] = outputs["pha"] * 0.9 + 0.05
        return outputs
