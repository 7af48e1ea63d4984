"""`mattex evaluate`: the paper's table (SAD, MSE, Grad, Conn, FG MSE) for a checkpoint or an
exported ONNX file on PhotoMatte-layout composites, and the naive difference-matte baseline."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mattex.errors import ConfigError

from .metrics import MatteScores, mean_scores, score

Matter = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


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
        return {"model": self.model, "size": list(self.size), "count": len(self.per_image),
                "mean": self.mean.to_dict(),
                "per_image": {n: s.to_dict() for n, s in zip(self.images, self.per_image)}}


def onnx_matter(path: Path, providers: list[str] | None = None, backend: str = "onnxruntime",
                **options) -> Matter:
    """An exported file through mattex's runtime backend (ONNX Runtime on the CPU unless
    `providers` say, or OpenVINO with `options` such as inference_precision): the session
    settings users get (int8 files included), inputs in the file's format (cast, or uint8
    frames), outputs float32."""
    from mattex.runtime.backends import BACKENDS
    from mattex.runtime.io_spec import float_to_input

    if backend == "onnxruntime":
        options["providers"] = providers or ["CPUExecutionProvider"]
    elif providers is not None:
        raise ConfigError(f"providers are ONNX Runtime's; backend {backend} takes none")
    runner = BACKENDS[backend].open(path, **options)

    def run(src, bgr):
        pha, fgr = runner(float_to_input(src, runner.io_dtype), float_to_input(bgr, runner.io_dtype))
        return pha.astype(np.float32), fgr.astype(np.float32)

    return run


def checkpoint_matter(path: Path | None, **model_kwargs) -> Matter:
    """A PyTorch matter from a checkpoint (None: the shipped demo weights)."""
    from mattex.exporter.weights import demo_weights_path
    from mattex.model.checkpoint import load_matting_refine

    if path is None:
        path = demo_weights_path("mobilenetv2")
        if path is None:
            raise ConfigError("no checkpoint given and no demo weights shipped")
    return torch_matter(load_matting_refine(path, **model_kwargs))


def torch_matter(model) -> Matter:
    """A PyTorch MattingRefine as a (src, bgr) -> (pha, fgr) numpy matter."""
    import torch

    def run(src, bgr):
        with torch.no_grad():
            pha, fgr = model(torch.from_numpy(src), torch.from_numpy(bgr))[:2]
        return pha.numpy(), fgr.numpy()

    return run


def difference_matte(src: np.ndarray, bgr: np.ndarray, gain: float) -> np.ndarray:
    """The naive baseline: alpha = clip(sum over channels of |src - bgr| * gain, 0, 1)."""
    return np.clip(np.abs(src - bgr).sum(axis=-3, keepdims=True) * gain, 0, 1)


def difference_matter(gain: float) -> Matter:
    return lambda src, bgr: (difference_matte(src, bgr, gain), src)


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


def evaluate(matter: Matter, composites: Iterable[dict], name: str, size: tuple[int, int],
             progress: Callable[[], None] = lambda: None) -> EvaluationReport:
    report = EvaluationReport(name, size)
    for item in composites:
        pha, fgr = matter(item["src"], item["bgr"])
        report.images.append(item["name"])
        report.per_image.append(score(pha[0], item["pha"][0], fgr[0], item["fgr"][0]))
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
        return {"precision": self.precision, "ratio_budget": self.ratio_budget,
                "floor": self.floor, "reference_fp32": self.reference.to_dict(),
                "ratios": self.ratios, "failures": self.failures, "passed": self.passed}


def check_metric_budget(report: EvaluationReport, reference: EvaluationReport,
                        precision: str) -> MetricBudgetCheck:
    """Each mean metric must stay within budget.ratio x fp32's (plus `floor`, for metrics
    near zero)."""
    from mattex.exporter.config import BUDGETS

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
            check.failures.append(f"{name} {got[name]:.4g} vs fp32 {want[name]:.4g} "
                                  f"(ratio {check.ratios[name]:.4f}, budget {budget.ratio})")
    return check
