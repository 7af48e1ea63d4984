"""`mattex evaluate`: the paper's table (SAD, MSE, Grad, Conn, FG MSE) for a checkpoint or an
exported ONNX file on PhotoMatte-layout composites, and the naive difference-matte baseline."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mattex.errors import ConfigError

from .metrics import MatteScores, mean_scores, score

# A matter: (src, bgr) float32 (B, 3, H, W) in [0, 1] -> every output by name, float32.
Matter = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


@dataclass
class EvaluationReport:
    model: str
    size: tuple[int, int]
    images: list[str] = field(default_factory=list)
    per_image: list[MatteScores] = field(default_factory=list)

    @property
    def mean(self) -> MatteScores:
        return mean_scores(self.per_image)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "size": list(self.size),
            "count": len(self.per_image),
            "mean": self.mean.to_dict(),
            "per_image": {n: s.to_dict() for n, s in zip(self.images, self.per_image)},
        }


def difference_matte(src: np.ndarray, bgr: np.ndarray, gain: float) -> np.ndarray:
    """The naive baseline: alpha = clip(sum over channels of |src - bgr| * gain, 0, 1)."""
    return np.clip(np.abs(src - bgr).sum(axis=-3, keepdims=True) * gain, 0, 1)


def difference_matter(gain: float) -> Matter:
    return lambda src, bgr: {"pha": difference_matte(src, bgr, gain), "fgr": src}


def tune_difference_gain(samples: Iterable[dict], gains=np.geomspace(0.5, 64, 29)) -> float:
    """The gain with the lowest mean SAD + MSE on `samples` (the training composites)."""
    samples = list(samples)
    best, best_cost = None, np.inf
    for gain in gains:
        scores = [score(difference_matte(s["src"], s["bgr"], gain)[0], s["pha"][0]) for s in samples]
        cost = np.mean([sc.sad for sc in scores]) + np.mean([sc.mse for sc in scores])
        if cost < best_cost:
            best, best_cost = float(gain), cost
    return best


def evaluate(
    matter: Matter,
    composites: Iterable[dict],
    name: str,
    size: tuple[int, int],
    progress: Callable[[], None] = lambda: None,
) -> EvaluationReport:
    report = EvaluationReport(name, size)
    for item in composites:
        out = matter(item["src"], item["bgr"])
        report.images.append(item["name"])
        report.per_image.append(score(out["pha"][0], item["pha"][0], out["fgr"][0], item["fgr"][0]))
        progress()
    if not report.per_image:
        raise ConfigError("no composites to evaluate")
    return report


METRIC_NAMES = ("sad", "mse", "grad", "conn", "fgr_mse")


@dataclass
class MetricBudgetCheck:
    """A reduced-precision file's metrics against those of PyTorch fp32 on the same composites."""

    precision: str
    ratio_budget: float
    floor: float
    reference: MatteScores
    ratios: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "ratio_budget": self.ratio_budget,
            "floor": self.floor,
            "reference_fp32": self.reference.to_dict(),
            "ratios": self.ratios,
            "failures": self.failures,
            "passed": self.passed,
        }


def check_metric_budget(report: EvaluationReport, reference: EvaluationReport, precision: str) -> MetricBudgetCheck:
    """Each mean metric must stay within budget.ratio x fp32's (plus `floor`, for metrics
    near zero)."""
    from .budgets import BUDGETS

    if precision not in BUDGETS:
        raise ConfigError(f"no accuracy budget declared for precision {precision!r}")
    budget = BUDGETS[precision].metrics
    got, want = report.mean.to_dict(), reference.mean.to_dict()
    check = MetricBudgetCheck(precision, budget.ratio, budget.floor, reference.mean)
    for name in METRIC_NAMES:
        if got.get(name) is None or want.get(name) is None:
            continue
        if want[name]:
            check.ratios[name] = got[name] / want[name]
        else:  # fp32 is exact here: any error is infinitely worse, none is equal
            check.ratios[name] = float("inf") if got[name] > 0 else 1.0
        if got[name] > want[name] * budget.ratio + budget.floor:
            check.failures.append(
                f"{name} {got[name]:.4g} vs fp32 {want[name]:.4g} "
                f"(ratio {check.ratios[name]:.4f}, budget {budget.ratio})"
            )
    return check


@dataclass
class Evaluation:
    """`mattex evaluate`'s result: the file's (or checkpoint's) scores and, for an fp16/int8
    file, PyTorch fp32's on the same composites and the metric budget check."""

    report: EvaluationReport
    label: str  # the row's name: "pytorch" or the budget's precision
    check: MetricBudgetCheck | None = None

    def to_dict(self) -> dict:
        out = self.report.to_dict()
        if self.check is not None:
            out["budget"] = self.check.to_dict()
        return out


def evaluate_model(
    model: Path | None,
    data: Path,
    backgrounds: Path | None = None,
    size: tuple[int, int] = (1080, 1920),
    limit: int | None = None,
    seed: int = 0,
    checkpoint: Path | None = None,
    budget: bool = True,
    backend: str = "onnxruntime",
    inference_precision: str | None = None,
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
) -> Evaluation:
    """Score `model` (an exported file, a checkpoint, or None for the demo weights) on `data`'s
    composites at `size`; an fp16/int8 file (or an fp32 one run at a lower arithmetic) also
    against PyTorch fp32 on the same composites, within its precision's metric budget (unless
    `budget` is False)."""
    from mattex.calibration.composite import Composites
    from mattex.contract import ONNX_SUFFIXES
    from mattex.exporter.onnx_file import read_export_metadata

    from .reference import checkpoint_matter, reference_model, torch_matter
    from .verify import budget_name

    is_file = model is not None and Path(model).suffix.lower() in ONNX_SUFFIXES
    if (backend != "onnxruntime" or inference_precision is not None) and not is_file:
        raise ConfigError("`backend` and `inference_precision` apply to an exported .onnx model")
    reference, precision, label = None, "fp32", "pytorch"
    if is_file:
        meta = read_export_metadata(model)  # a missing, corrupt or foreign file is named before any work
        from mattex.runtime import Matter as Session
        from mattex.runtime.backends import BACKENDS

        options = {"inference_precision": inference_precision} if inference_precision else {}
        session = Session.open(model, backend=backend, check_values=False, **BACKENDS[backend].cpu_options, **options)
        matter = session.matte_floats
        label = precision = budget_name(meta.precision, session.arithmetic)
        if not budget:
            precision = "fp32"  # score the file alone
        elif precision != "fp32":  # an fp32 file is verified against PyTorch by `mattex verify`
            reference = torch_matter(reference_model(meta, checkpoint))
    else:
        from mattex.exporter.config import preset_for_size

        matter = checkpoint_matter(model, backbone_scale=preset_for_size(*size).backbone_scale)
    if checkpoint is not None and reference is None:
        raise ConfigError(
            "`checkpoint` is the fp32 reference of an fp16/int8 ONNX file; pass a checkpoint to evaluate as the model"
        )
    composites = Composites(data, size, backgrounds, seed=seed, limit=limit)

    def counter(stage: str):
        done = iter(range(1, len(composites) + 1))
        return lambda: progress(stage, next(done), len(composites))

    report = evaluate(matter, composites, str(model or "demo weights"), size, counter("evaluating"))
    check = None
    if precision != "fp32":
        fp32 = evaluate(reference, composites, "pytorch fp32", size, counter("scoring PyTorch fp32"))
        check = check_metric_budget(report, fp32, precision)
    return Evaluation(report, label, check)
