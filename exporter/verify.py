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
from mattex.files import atomic_write_text, sha256_file

from mattex.runtime.backends.onnxruntime import disabled_optimizers_for
from mattex.runtime.io_spec import float_to_input, frames_to_input

from .config import BUDGETS, ExportConfig
from .export import read_metadata
from .onnx_file import load_onnx, require_mattex_export
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
    patch_mismatch: float = 0.0  # share of patches differing outside the ties
    patch_budget: float = 0.0
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
            out["outputs"][name]["ok"] = diff.ok
        return out

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))


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
    if recorded.kind == "demo":  # a checkpoint given must be those weights
        path = checkpoint or demo_weights_path(config_from_metadata(meta).backbone)
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
    tie_break: str = "lowest_index",
    backend: str = "onnxruntime",
    inference_precision: str = "f32",
) -> VerifyReport:
    """Compare the file against PyTorch fp32 on `inputs` (an iterable of (src, bgr) numpy
    pairs) or on `samples` random pairs at `height`x`width` (default: the trace size), within
    the budget of the file's precision (or of `budget`, another precision's name).

    Patches the two sides select differently where their errors lie within the precision's
    tie band of the k-th largest (or of 0) are interchangeable: reported as tie flips and left
    out of the value comparison. Any other difference in selection counts against the patch
    budget, and patches selected alike are compared in full. PyTorch breaks exact ties as the file does
    (`tie_break` "lowest_index"); "torch" keeps the reference's torch.topk."""
    path = Path(path)
    meta = file_metadata(path)
    if "tensorrt_plugins" in meta:
        names = ", ".join(p["name"] for p in json.loads(meta["tensorrt_plugins"]))
        raise BackendUnavailableError(
            f"{path.name} calls the TensorRT plugin {names} (exported with --topk plugin): it runs on "
            "TensorRT only, so ONNX Runtime cannot verify it; verify the --topk onnx export of the "
            "same model (the two graphs differ only in how the top-k is taken)")
    config = config_from_metadata(meta)
    precision = budget or budget_name(meta.get("precision", "fp32"), backend, inference_precision)
    if precision not in BUDGETS:
        raise ConfigError(f"no accuracy budget declared for precision {precision!r}; "
                          f"known: {', '.join(BUDGETS)}")
    budget = BUDGETS[precision]
    reference = reference_model(meta, checkpoint, tie_break)
    runner = _runner(path, meta, backend, providers, inference_precision)
    selection = runner.selection
    _check_names(runner)

    if inputs is None:
        size = (height or config.height, width or config.width)
        if meta.get("precision", "fp32") == "fp32":
            inputs = random_pairs(samples, batch, *size)
        else:
            # Reduced-precision budgets are declared for matting inputs (calibrated ranges);
            # uniform noise lies outside them and would fail a faithful file.
            inputs = synthetic_pairs(samples, batch, *size)
    diffs: dict[str, list[np.ndarray]] = {}
    mismatched, flipped, total_patches, count, shape = 0, 0, 0, 0, []
    names = runner.outputs[: len(runner.outputs) - 2 * len(selection)]
    io_dtype = runner.io_dtype
    for src, bgr in inputs:
        # The file sees the frames in its own input format (float16-rounded, or stored as uint8
        # frames), as its callers would send them; PyTorch sees the same values in float32.
        feeds = {"src": float_to_input(src, io_dtype), "bgr": float_to_input(bgr, io_dtype)}
        if io_dtype == np.uint8:
            src, bgr = (frames_to_input(feeds[n], np.float32) for n in ("src", "bgr"))
        results = runner.run(feeds)
        got = {n: v.astype(np.float32) for n, v in zip(names, results)}
        with torch.no_grad():
            want = dict(zip(("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm"),
                            (t.numpy() for t in reference(torch.from_numpy(src), torch.from_numpy(bgr)))))
        _check_shapes(got, want)
        differs = _differing_patches(got, want, budget.patch_tolerance)
        flips = np.zeros_like(differs)
        if selection:  # which patches the file refined, read from the file itself
            scores, indices = results[len(names):]
            selected_differently = (file_selection(scores, indices, config.prevent_oversampling)
                                    != (want["ref_sm"] > 0).reshape(scores.shape)).reshape(differs.shape)
            flips = selected_differently & interchangeable_patches(
                want["err_sm"], differs.shape[1:], config, budget.tie_band)
            differs = (differs | selected_differently) & ~flips
        for name in names:
            diffs.setdefault(name, []).append(_compared(np.abs(got[name].astype(np.float64) - want[name]),
                                                        flips))
        mismatched += int(differs.sum())
        flipped += int(flips.sum())
        total_patches += differs.size
        count, shape = count + 1, list(src.shape)
    if not count:
        raise ConfigError("no input pairs to verify with")
    report = _judge(path, precision, budget, diffs, mismatched / total_patches, count, shape)
    report.tie_flips, report.tie_band = flipped / total_patches, budget.tie_band
    return report


def budget_name(file_precision: str, backend: str, inference_precision: str) -> str:
    """The budget a file is held to on `backend`: its own precision's, or bf16's where an fp32
    file runs with OpenVINO's bf16 arithmetic."""
    if backend == "openvino" and inference_precision == "bf16" and file_precision == "fp32":
        return "bf16"
    return file_precision


@dataclass
class _Runner:
    """A file ready to run: its input and output names, input dtype, the selection tensors
    appended to its outputs, and `run(feeds) -> [arrays]` in output order."""

    inputs: list[str]
    outputs: list[str]
    io_dtype: np.dtype
    selection: list[dict]
    run: object


def _runner(path: Path, meta: dict[str, str], backend: str, providers: list[str] | None,
            inference_precision: str) -> _Runner:
    """The file on `backend`, with the settings the runtime uses for its precision and, where
    the exporter recorded them, the top-k selection's scores and indices as extra outputs."""
    selection = json.loads(meta.get("selection", "[]"))[:1]  # BGMv2 has one top-k
    extra = [name for entry in selection for name in (entry["scores"], entry["indices"])]
    if backend == "openvino":
        from mattex.runtime.backends.openvino import OpenVinoBackend

        if providers is not None:
            raise ConfigError("providers are ONNX Runtime's; the OpenVINO backend takes none")
        ov = OpenVinoBackend(path, inference_precision=inference_precision, extra_outputs=extra,
                             allow_int8=True)  # verify is where that refusal is measured
        outputs = ov.output_names + extra
        return _Runner(["src", "bgr"], outputs, ov.io_dtype, selection,
                       lambda feeds: list(ov.run(feeds["src"], feeds["bgr"]).values()))
    if backend != "onnxruntime":
        raise ConfigError(f"mattex verify runs .onnx files on onnxruntime or openvino, not {backend!r}; "
                          "an engine is checked with `mattex check --build`")
    if inference_precision != "f32":
        raise ConfigError("--inference-precision is OpenVINO's; ONNX Runtime runs the file's own precision")
    session = _ort_session(path, meta, providers, selection)
    io_dtype = next(t for name, t in (("uint8", np.uint8), ("float16", np.float16), ("float", np.float32))
                    if name in session.get_inputs()[0].type)
    return _Runner([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()],
                   np.dtype(io_dtype), selection, lambda feeds: session.run(None, feeds))


def _ort_session(path: Path, meta: dict[str, str], providers: list[str] | None, selection: list[dict]):
    import onnxruntime as ort

    model = load_onnx(path)
    for entry in selection:
        model.graph.output.extend([
            onnx.helper.make_tensor_value_info(entry["scores"], onnx.TensorProto.FLOAT, None),
            onnx.helper.make_tensor_value_info(entry["indices"], onnx.TensorProto.INT64, None)])
    options = ort.SessionOptions()
    options.log_severity_level = 3  # optimizer notices are not findings
    return ort.InferenceSession(model.SerializeToString(), options,
                                disabled_optimizers=disabled_optimizers_for(meta.get("precision")),
                                providers=providers or ["CPUExecutionProvider"])


def file_selection(scores: np.ndarray, indices: np.ndarray, prevent_oversampling: bool) -> np.ndarray:
    """(B, N) True for the patches a file refines: its top-k `indices` (B, k) of `scores`
    (B, N), less those with zero error under prevent_oversampling (as the refiner keeps them)."""
    selected = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(selected, indices, True, axis=1)
    if prevent_oversampling:
        selected &= scores > 0
    return selected


def reference_model(meta: dict[str, str], checkpoint: Path | None = None, tie_break: str = "lowest_index"):
    """The PyTorch fp32 model a file (its `meta`) was exported from, by default breaking ties at
    the k-th error lowest index first as the file's selection does."""
    return build_model(weights_for(meta, checkpoint), **config_from_metadata(meta).model_kwargs(),
                       refine_tie_break=tie_break)


def interchangeable_patches(err_sm: np.ndarray, grid: tuple[int, int], config: ExportConfig,
                            band: float) -> np.ndarray:
    """(B, *grid) True where a patch's error, upsampled to the (H/4, W/4) patch `grid` as the
    refiner selects on it, lies
    within `band` of a selection boundary: the k-th largest error per image and, under
    prevent_oversampling, 0 (sampling); the threshold (thresholding). Full refinement has none.
    Which of these patches a file refines depends on float noise in its error map, not on
    whether it is faithful."""
    B = err_sm.shape[0]
    grid = tuple(grid)
    if config.refine_mode == "full":
        return np.zeros((B, *grid), dtype=bool)
    err = torch.nn.functional.interpolate(torch.from_numpy(err_sm), grid, mode="bilinear",
                                          align_corners=False).flatten(1)  # (B, N)
    if config.refine_mode == "thresholding":
        near = (err - config.threshold).abs() <= band
    else:
        kth = err.topk(min(config.k, err.shape[1]), dim=1).values[:, -1:]  # sorted: k-th last
        near = (err - kth).abs() <= band
        if config.prevent_oversampling:
            near |= err <= band
    return near.view(B, *grid).numpy()


def _check_names(runner: _Runner) -> None:
    if runner.inputs != ["src", "bgr"]:
        raise VerifyError(f"inputs are {runner.inputs}, expected ['src', 'bgr']")
    if runner.outputs[:2] != ["pha", "fgr"]:
        raise VerifyError(f"outputs are {runner.outputs}, expected pha and fgr first")


def _check_shapes(got: dict, want: dict) -> None:
    for name, value in got.items():
        if value.shape != want[name].shape:
            raise VerifyError(f"output {name} has shape {value.shape}, PyTorch gives {want[name].shape}")


def _differing_patches(got: dict, want: dict, tolerance: float) -> np.ndarray:
    """(B, H/4, W/4) True for patches (4x4 blocks) selected differently or whose alpha or
    foreground differs by more than `tolerance`."""
    B, _, H, W = got["pha"].shape
    bad = np.zeros((B, H // 4, W // 4), dtype=bool)
    for name in ("pha", "fgr"):
        diff = np.abs(got[name] - want[name]).max(axis=1)                      # (B, H, W)
        bad |= diff.reshape(B, H // 4, 4, W // 4, 4).max(axis=(2, 4)) > tolerance
    if "ref_sm" in got:
        bad |= got["ref_sm"][:, 0] != want["ref_sm"][:, 0]
    return bad


def _compared(diff: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """The differences of one output outside the patches flipped at ties (flattened): at full
    resolution their 4x4 blocks, on the patch grid (ref_sm) their cells; a low-resolution
    output is compared whole."""
    B, _, H, W = diff.shape
    grid = flips.shape[1:]
    if (H, W) == grid:
        return diff[np.broadcast_to(~flips[:, None], diff.shape)]
    if (H, W) == (grid[0] * 4, grid[1] * 4):
        keep = ~np.repeat(np.repeat(flips, 4, axis=1), 4, axis=2)[:, None]
        return diff[np.broadcast_to(keep, diff.shape)]
    return diff.ravel()


def _judge(path, precision, budget, diffs, patch_share, count, shape) -> VerifyReport:
    report = VerifyReport(str(path), precision, count, shape,
                          patch_mismatch=patch_share, patch_budget=budget.patch_mismatch)
    for name, parts in diffs.items():
        b = budget.outputs[name]
        values = np.concatenate(parts)
        report.outputs[name] = OutputDiff(
            max_abs=float(values.max(initial=0.0)), mean_abs=float(values.mean()) if values.size else 0.0,
            budget_max_abs=b.max_abs, budget_mean_abs=b.mean_abs)
    for name, diff in report.outputs.items():
        if not diff.ok:
            report.failures.append(
                f"{name}: max abs diff {diff.max_abs:.3g} (budget {diff.budget_max_abs:.3g}), "
                f"mean {diff.mean_abs:.3g} (budget {diff.budget_mean_abs:.3g})")
    if patch_share > budget.patch_mismatch:
        report.failures.append(
            f"patches: {patch_share:.3%} selected or refined differently outside the ties "
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

    return torch_matter(reference_model(meta, checkpoint))


def file_metadata(model: str | Path) -> dict[str, str]:
    """The metadata_props of a file `mattex export` wrote (without loading external weight
    data); ModelFileError for a missing, empty, corrupt or foreign file."""
    return require_mattex_export(read_metadata(load_onnx(model, load_external_data=False)), model)
