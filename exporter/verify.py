"""`mattex verify`: run an exported file and the PyTorch model on the same inputs and hold the
differences to the budget declared for the file's precision (names, then shapes, then values)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from mattex.errors import BackendUnavailableError, CheckpointError, ConfigError, MattexError
from mattex.files import sha256_file

from mattex.runtime.onnxruntime_backend import disabled_optimizers_for

from .config import BUDGETS, ExportConfig, PrecisionBudget
from .export import read_metadata
from .weights import WeightsSource, build_model, demo_weights_path, find_checkpoint


class VerifyError(MattexError):
    """The file's interface does not match the PyTorch model (names or shapes)."""


@dataclass
class OutputDiff:
    max_abs: float
    mean_abs: float
    budget_max_abs: float
    budget_mean_abs: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.budget_max_abs and self.mean_abs <= self.budget_mean_abs


@dataclass
class VerifyReport:
    file: str
    precision: str
    samples: int
    shape: list[int]
    outputs: dict[str, OutputDiff] = field(default_factory=dict)
    patch_mismatch: float = 0.0
    patch_budget: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        out = asdict(self)
        out["passed"] = self.passed
        for name, diff in self.outputs.items():
            out["outputs"][name]["ok"] = diff.ok
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def config_from_metadata(meta: dict[str, str]) -> ExportConfig:
    if "export_config" not in meta:
        raise VerifyError("the file has no mattex export metadata (export_config); was it "
                          "exported by `mattex export`?")
    return ExportConfig(**json.loads(meta["export_config"]))


def weights_for(meta: dict[str, str], checkpoint: Path | None) -> WeightsSource:
    """The weights the file was exported with; a checkpoint must match the recorded sha256."""
    recorded = WeightsSource.parse(meta["weights"])
    if recorded.kind == "random":
        if meta.get("torch_version") != torch.__version__:
            raise ConfigError(
                f"the file holds random weights drawn by torch {meta.get('torch_version')}; this "
                f"is torch {torch.__version__}, so they cannot be redrawn: pass --checkpoint")
        return recorded
    if recorded.kind == "demo":
        path = demo_weights_path(config_from_metadata(meta).backbone)
    else:
        path = checkpoint or find_checkpoint(config_from_metadata(meta).backbone)
    if path is None:
        raise CheckpointError("the file was exported from a checkpoint: pass it with --checkpoint")
    digest = sha256_file(path)
    if digest != recorded.sha256:
        raise CheckpointError(
            f"{path} (sha256 {digest[:12]}...) is not the checkpoint the file was exported "
            f"from (sha256 {recorded.sha256[:12]}...)")
    return WeightsSource(recorded.kind, Path(path), digest)


def random_pairs(samples: int, batch: int, height: int, width: int, seed: int = 0):
    """Frames and backgrounds that differ like a capture: src uniform, bgr = src + noise."""
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        src = rng.random((batch, 3, height, width), dtype=np.float32)
        noise = rng.normal(0, 0.25, src.shape).astype(np.float32)
        yield src, np.clip(src + noise, 0, 1).astype(np.float32)


def synthetic_pairs(samples: int, batch: int, height: int, width: int, seed: int = 0):
    """Synthetic portraits composited over textured backgrounds with the paper's capture
    perturbations (the data pipeline's stand-in for PhotoMatte85), batched."""
    from mattex.calibration.composite import Perturbation, composite, perturb_background
    from mattex.calibration.synthetic import synth_background, synth_portrait

    rng = np.random.default_rng(seed)
    for _ in range(samples):
        pairs = []
        for _ in range(batch):
            fgr, pha = synth_portrait(rng, height, width)
            background = synth_background(rng, height, width)
            pairs.append((composite(fgr, pha, background),
                          perturb_background(background, rng, Perturbation())))
        yield (np.stack([p[0] for p in pairs]).astype(np.float32),
               np.stack([p[1] for p in pairs]).astype(np.float32))


def verify_onnx(
    path: str | Path,
    inputs=None,
    checkpoint: Path | None = None,
    samples: int = 2,
    batch: int = 1,
    height: int | None = None,
    width: int | None = None,
    providers: list[str] | None = None,
    budget: str | None = None,
) -> VerifyReport:
    """Compare the file against PyTorch fp32 on `inputs` (an iterable of (src, bgr) numpy
    pairs) or on `samples` random pairs at `height`x`width` (default: the trace size), within
    the budget of the file's precision (or of `budget`, another precision's name)."""
    import onnxruntime as ort

    path = Path(path)
    meta = file_metadata(path)
    if "tensorrt_plugins" in meta:
        names = ", ".join(p["name"] for p in json.loads(meta["tensorrt_plugins"]))
        raise BackendUnavailableError(
            f"{path.name} calls the TensorRT plugin {names} (exported with --topk plugin): it runs on "
            "TensorRT only, so ONNX Runtime cannot verify it; verify the --topk onnx export of the "
            "same model (the two graphs differ only in how the top-k is taken)")
    config = config_from_metadata(meta)
    precision = budget or meta.get("precision", "fp32")
    if precision not in BUDGETS:
        raise ConfigError(f"no accuracy budget declared for precision {precision!r}; "
                          f"known: {', '.join(BUDGETS)}")
    budget = BUDGETS[precision]
    reference = build_model(weights_for(meta, checkpoint), **config.model_kwargs())
    options = ort.SessionOptions()
    options.log_severity_level = 3  # optimizer notices are not findings
    # The session settings the runtime uses for this file's precision.
    session = ort.InferenceSession(str(path), options,
                                   disabled_optimizers=disabled_optimizers_for(meta.get("precision")),
                                   providers=providers or ["CPUExecutionProvider"])
    _check_names(session, config)

    if inputs is None:
        size = (height or config.height, width or config.width)
        if meta.get("precision", "fp32") == "fp32":
            inputs = random_pairs(samples, batch, *size)
        else:
            # Reduced-precision budgets are declared for matting inputs (calibrated ranges);
            # uniform noise lies outside them and would fail a faithful file.
            inputs = synthetic_pairs(samples, batch, *size)
    diffs: dict[str, list[np.ndarray]] = {}
    mismatched_patches, total_patches, count, shape = 0, 0, 0, []
    names = [o.name for o in session.get_outputs()]
    io_dtype = np.float16 if "float16" in session.get_inputs()[0].type else np.float32
    for src, bgr in inputs:
        # A float16-I/O file sees the same frames rounded to float16, as its callers would send.
        feeds = {"src": src.astype(io_dtype), "bgr": bgr.astype(io_dtype)}
        got = {n: v.astype(np.float32) for n, v in zip(names, session.run(None, feeds))}
        with torch.no_grad():
            want = dict(zip(("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm"),
                            (t.numpy() for t in reference(torch.from_numpy(src), torch.from_numpy(bgr)))))
        _check_shapes(got, want)
        for name in names:
            diffs.setdefault(name, []).append(np.abs(got[name].astype(np.float64) - want[name]))
        bad, total = _patch_mismatch(got, want, budget)
        mismatched_patches, total_patches = mismatched_patches + bad, total_patches + total
        count, shape = count + 1, list(src.shape)
    if not count:
        raise ConfigError("no input pairs to verify with")
    return _judge(path, precision, budget, diffs, mismatched_patches / total_patches, count, shape)


def _check_names(session, config: ExportConfig) -> None:
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != ["src", "bgr"]:
        raise VerifyError(f"inputs are {inputs}, expected ['src', 'bgr']")
    if outputs[:2] != ["pha", "fgr"]:
        raise VerifyError(f"outputs are {outputs}, expected pha and fgr first")


def _check_shapes(got: dict, want: dict) -> None:
    for name, value in got.items():
        if value.shape != want[name].shape:
            raise VerifyError(f"output {name} has shape {value.shape}, PyTorch gives {want[name].shape}")


def _patch_mismatch(got: dict, want: dict, budget: PrecisionBudget) -> tuple[int, int]:
    """Patches (4x4 blocks) selected differently or whose alpha differs beyond the budget."""
    pha_diff = np.abs(got["pha"] - want["pha"])
    B, _, H, W = pha_diff.shape
    block = pha_diff.reshape(B, H // 4, 4, W // 4, 4).max(axis=(2, 4))
    bad = block > budget.patch_tolerance
    if "ref_sm" in got:
        bad |= got["ref_sm"][:, 0] != want["ref_sm"][:, 0]
    return int(bad.sum()), bad.size


def _judge(path, precision, budget, diffs, patch_share, count, shape) -> VerifyReport:
    report = VerifyReport(str(path), precision, count, shape,
                          patch_mismatch=patch_share, patch_budget=budget.patch_mismatch)
    for name, parts in diffs.items():
        b = budget.outputs[name]
        report.outputs[name] = OutputDiff(
            max_abs=float(max(p.max() for p in parts)),
            mean_abs=float(np.mean([p.mean() for p in parts])),
            budget_max_abs=b.max_abs, budget_mean_abs=b.mean_abs)
    for name, diff in report.outputs.items():
        if not diff.ok:
            report.failures.append(
                f"{name}: max abs diff {diff.max_abs:.3g} (budget {diff.budget_max_abs:.3g}), "
                f"mean {diff.mean_abs:.3g} (budget {diff.budget_mean_abs:.3g})")
    if patch_share > budget.patch_mismatch:
        report.failures.append(
            f"patches: {patch_share:.3%} selected or refined differently "
            f"(budget {budget.patch_mismatch:.3%})")
    return report



def frame_pairs(images: Path, background: Path):
    """(src, bgr) pairs, batch 1, from every image in `images` over one captured background,
    cropped to a multiple of 4 (the model's requirement)."""
    from mattex.calibration.images import DataError, image_files, open_image, to_float

    files = image_files(Path(images))
    if not files:
        raise DataError(f"no images in {images}")
    bgr = to_float(open_image(Path(background)), "RGB")
    for file in files:
        src = to_float(open_image(file), "RGB")
        if src.shape != bgr.shape:
            raise DataError(f"{file.name} is {src.shape[2]}x{src.shape[1]} but the background "
                            f"is {bgr.shape[2]}x{bgr.shape[1]}: they must match")
        h, w = src.shape[1] // 4 * 4, src.shape[2] // 4 * 4
        yield src[None, :, :h, :w].copy(), bgr[None, :, :h, :w].copy()


def composite_pairs(model: Path, data: Path, backgrounds: Path | None = None,
                    height: int | None = None, width: int | None = None):
    """(src, bgr) pairs from PhotoMatte-layout composites at `height`x`width` (default: the
    file's trace size)."""
    from mattex.calibration.composite import Composites

    config = config_from_metadata(file_metadata(model))
    size = (height or config.height, width or config.width)
    return ((item["src"], item["bgr"]) for item in Composites(data, size, backgrounds))


def reference_matter(meta: dict[str, str], checkpoint: Path | None = None):
    """The PyTorch fp32 model a file (its `meta`) was exported from, as a matter."""
    from mattex.calibration.evaluate import torch_matter

    return torch_matter(build_model(weights_for(meta, checkpoint),
                                    **config_from_metadata(meta).model_kwargs()))


def file_metadata(model: str | Path) -> dict[str, str]:
    """The file's metadata_props, without loading external weight data."""
    return read_metadata(onnx.load(str(model), load_external_data=False))
