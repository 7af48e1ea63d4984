"""`mattex verify`'s report: per output the max and the mean of the samples' differences, the
spread of those means and the upper bound the gate judges them by, the patches selected
differently, as JSON and as JUnit XML (CI servers show it as tests)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mattex.files import atomic_write_text

from .budgets import COMPOSITES

# The one-sided confidence of the upper bound the gate judges a mean by.
CONFIDENCE = 0.95


@dataclass
class OutputDiff:
    max_abs: float
    mean_abs: float  # the mean of the samples' mean abs differences
    budget_max_abs: float
    budget_mean_abs: float
    mean_abs_spread: float = 0.0  # the samples' standard deviation about that mean
    mean_abs_upper: float | None = None  # its CONFIDENCE upper bound: what the budget is held to

    @property
    def ok(self) -> bool:
        mean = self.mean_abs if self.mean_abs_upper is None else self.mean_abs_upper
        return self.max_abs <= self.budget_max_abs and mean <= self.budget_mean_abs


@dataclass
class VerifyReport:
    file: str
    precision: str
    samples: int
    shape: list[int]
    outputs: dict[str, OutputDiff] = field(default_factory=dict)
    patch_mismatch: float = 0.0  # share of patches differing outside the ties
    patch_budget: float = 0.0
    patch_mismatch_upper: float = 0.0  # its CONFIDENCE upper bound over the samples: what is judged
    inputs: str = COMPOSITES  # the kind of inputs, whose budget applies (measure/budgets.py)
    sizes: list[list[int]] = field(default_factory=list)  # every (height, width) verified at
    confidence: float = CONFIDENCE
    tie_flips: float = 0.0  # share of patches selected differently among interchangeable ones
    tie_band: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        out = asdict(self)
        out["passed"] = self.passed
        for name, diff in self.outputs.items():
            out["outputs"][name]["ok"] = bool(diff.ok)
        return out

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    def junit_xml(self) -> str:
        """The report as JUnit XML, which CI servers display as tests: one suite for the file,
        one test case per output and one for the patches, each failing with its failure line."""
        from xml.etree import ElementTree as ET

        cases = [*self.outputs, "patches"]
        failed = {line.split(":", 1)[0]: line for line in self.failures}
        suite = ET.Element(
            "testsuite",
            name=f"mattex verify {Path(self.file).name}",
            tests=str(len(cases)),
            failures=str(len(failed)),
            errors="0",
            skipped="0",
        )
        properties = ET.SubElement(suite, "properties")
        for key in ("file", "precision", "inputs", "samples", "confidence"):
            ET.SubElement(properties, "property", name=key, value=str(getattr(self, key)))
        classname = f"mattex.verify.{Path(self.file).stem}"
        for case in cases:
            element = ET.SubElement(suite, "testcase", classname=classname, name=case, time="0")
            if case in failed:
                ET.SubElement(element, "failure", message=failed[case], type="OverBudget").text = failed[case]
        root = ET.Element("testsuites", tests=suite.get("tests"), failures=suite.get("failures"))
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def save_junit(self, path: str | Path) -> None:
        atomic_write_text(path, self.junit_xml())


def upper_bound(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, standard deviation, one-sided `confidence` upper bound of the mean) of per-sample
    values, by the normal approximation: within 7% of Student's t at the default 16 samples,
    and narrower for a handful (t's bound at 2 samples is 4x wider, failing faithful files).
    One sample gives no spread: its value is its own bound."""
    from statistics import NormalDist

    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return mean, 0.0, mean
    spread = float(np.std(values, ddof=1))
    return mean, spread, mean + NormalDist().inv_cdf(confidence) * spread / float(np.sqrt(n))


def judge(path, precision, budget, diffs, patch_share, count, shape, patch_shares) -> VerifyReport:
    """Each output's max over every sample, and its mean judged by the upper bound of the
    samples' means (a file is not passed on the luckiest draw)."""
    report = VerifyReport(
        str(path), precision, count, shape, patch_mismatch=patch_share, patch_budget=budget.patch_mismatch
    )
    report.patch_mismatch_upper = max(patch_share, upper_bound(patch_shares)[2])
    for name, parts in diffs.items():
        b = budget.outputs[name]
        mean, spread, upper = upper_bound([float(p.mean()) if p.size else 0.0 for p in parts])
        report.outputs[name] = OutputDiff(
            max_abs=float(max(p.max(initial=0.0) for p in parts)),
            mean_abs=mean,
            budget_max_abs=b.max_abs,
            budget_mean_abs=b.mean_abs,
            mean_abs_spread=spread,
            mean_abs_upper=upper,
        )
    bound = f"{CONFIDENCE:.0%} upper bound over {count} samples"
    for name, diff in report.outputs.items():
        if not diff.ok:
            report.failures.append(
                f"{name}: max abs diff {diff.max_abs:.3g} (budget {diff.budget_max_abs:.3g}), "
                f"mean {diff.mean_abs:.3g}, {bound} {diff.mean_abs_upper:.3g} (budget {diff.budget_mean_abs:.3g})"
            )
    if report.patch_mismatch_upper > budget.patch_mismatch:
        report.failures.append(
            f"patches: {patch_share:.3%} selected or refined differently outside the ties, "
            f"{bound} {report.patch_mismatch_upper:.3%} (budget {budget.patch_mismatch:.3%})"
        )
    return report
