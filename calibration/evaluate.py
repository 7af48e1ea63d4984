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


def onnx_matter(path: Path, providers: list[str] | None = None) -> Matter:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])

    def run(src, bgr):
        pha, fgr = session.run(["pha", "fgr"], {"src": src, "bgr": bgr})
        return pha, fgr

    return run


def checkpoint_matter(path: Path | None, **model_kwargs) -> Matter:
    """A PyTorch matter from a checkpoint (None: the shipped demo weights)."""
    import torch

    from mattex.exporter.weights import demo_weights_path
    from mattex.model.checkpoint import load_matting_refine

    if path is None:
        path = demo_weights_path("mobilenetv2")
        if path is None:
            raise ConfigError("no checkpoint given and no demo weights shipped")
    model = load_matting_refine(path, **model_kwargs)

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
