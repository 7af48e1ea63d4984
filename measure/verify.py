"""`mattex verify`: run an exported file and the PyTorch model on the same inputs and hold the
differences to the budget declared for the file's precision (names, then shapes, then values).

The file runs through the runtime's backend registry (`Matter.open`), on any backend; where the
exporter recorded the top-k selection's tensors, they are added to a temporary copy of the graph
as outputs, so the gate reads which patches the file itself selected."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from mattex.contract import ENGINE_SUFFIXES, INPUTS, MODEL_OUTPUTS, OUTPUTS, PATCH
from mattex.errors import BackendUnavailableError, ConfigError, MattexError, VerifyError
from mattex.exporter.config import ExportConfig
from mattex.exporter.onnx_file import load_onnx
from mattex.metadata import ExportMetadata
from mattex.runtime import Matter
from mattex.runtime.backends import BACKENDS
from mattex.runtime.io_spec import float_to_input, frames_to_input

from .budgets import BUDGETS, COMPOSITES, FOOTAGE, budget_for
from .inputs import footage_pairs, gate_sizes, random_pairs, require_pair_memory
from .reference import file_metadata, reference_model
from .verify_options import VerifyOptions
from .verify_report import VerifyReport, judge


def verify_onnx(
    path: str | Path,
    inputs=None,
    checkpoint: Path | None = None,
    samples: int = VerifyOptions.samples,
    batch: int = VerifyOptions.batch,
    height: int | None = None,
    width: int | None = None,
    providers: list[str] | None = None,
    budget: str | None = None,
    tie_break: str = "lowest_index",
    backend: str = VerifyOptions.backend,
    inference_precision: str | None = None,
    kind: str = COMPOSITES,
    **options,
) -> VerifyReport:
    """Compare the file against PyTorch fp32 on `inputs` (an iterable of (src, bgr) numpy
    pairs, of `kind`: composites or footage) or on `samples` generated pairs at `height`x`width`
    (default: the trace size and two others), within the budget of the file's precision for
    those inputs (or of `budget`, another precision's name). The file runs
    on `backend` with `options` (ONNX Runtime's `providers`, OpenVINO's `inference_precision`...).

    Patches the two sides select differently where their errors lie within the precision's
    tie band of the k-th largest (or of 0) are interchangeable: reported as tie flips and left
    out of the value comparison. Any other difference in selection counts against the patch
    budget, and patches selected alike are compared in full. PyTorch breaks exact ties as the file does
    (`tie_break` "lowest_index"); "torch" keeps the reference's torch.topk."""
    if providers is not None:
        options["providers"] = providers
    if inference_precision is not None:
        options["inference_precision"] = inference_precision
    with Verifier(path, checkpoint, budget, tie_break, backend, **options) as verifier:
        return verifier.verify(inputs, samples, batch, height, width, kind)


class Verifier:
    """A file and its PyTorch reference, opened once and verified on as many input sets (sizes)
    as asked: `with Verifier(path) as v: v.verify(pairs_at_one_size); v.verify(pairs_at_another)`."""

    def __init__(
        self,
        path: str | Path,
        checkpoint: Path | None = None,
        budget: str | None = None,
        tie_break: str = "lowest_index",
        backend: str = VerifyOptions.backend,
        **options,
    ) -> None:
        self.path = Path(path)
        self.meta = file_metadata(self.path)
        engine = self.path.suffix.lower() in ENGINE_SUFFIXES
        if self.meta.tensorrt_plugins and not engine:
            names = ", ".join(p["name"] for p in self.meta.tensorrt_plugins)
            raise BackendUnavailableError(
                f"{self.path.name} calls the TensorRT plugin {names} (exported with `topk` plugin): it runs on "
                "TensorRT only, so ONNX Runtime cannot verify it; verify the `topk` onnx export of the "
                "same model (the two graphs differ only in how the top-k is taken)"
            )
        self.config = ExportConfig.from_metadata(self.meta)
        self.reference = reference_model(self.meta, checkpoint, tie_break)
        # An engine runs on the backend its sidecar names, with the outputs it was built with.
        self._opened = _opened(self.path, self.meta, None if engine else backend, options)
        self.matter, self.selection = self._opened.__enter__()
        self.precision = budget or budget_name(self.meta.precision, self.matter.arithmetic)
        if self.precision not in BUDGETS:
            self.close()
            raise ConfigError(
                f"no accuracy budget declared for precision {self.precision!r}; known: {', '.join(BUDGETS)}"
            )

    def verify(
        self,
        inputs=None,
        samples: int = VerifyOptions.samples,
        batch: int = VerifyOptions.batch,
        height: int | None = None,
        width: int | None = None,
        kind: str = COMPOSITES,
    ) -> VerifyReport:
        """The report on `inputs` of `kind` (their budget applies), or on `samples` generated
        pairs: at `height`x`width` where given, else cycling through the trace size and two
        others (`gate_sizes`)."""
        if inputs is None:
            sizes = [(height or self.config.height, width or self.config.width)]
            if height is None and width is None:
                sizes = gate_sizes(*sizes[0])
            require_pair_memory(batch, *sizes[0])
            if self.meta.precision == "fp32":  # no calibrated ranges: uniform noise is its hardest input
                inputs, kind = random_pairs(samples, batch, *sizes[0]), COMPOSITES
            else:  # reduced precisions are held to what footage carries
                inputs, kind = footage_pairs(samples, batch, sizes), FOOTAGE
        return _compare(
            self.path, self.matter, self.selection, self.reference, self.config, self.precision, inputs, kind
        )

    def close(self) -> None:
        self._opened.__exit__(None, None, None)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _compare(path, matter, selection, reference, config, precision, inputs, kind=COMPOSITES) -> VerifyReport:
    budget = budget_for(precision, kind)
    _check_names(matter.output_names)
    diffs: dict[str, list[np.ndarray]] = {}
    mismatched, flipped, total_patches, count, shape, sizes = 0, 0, 0, 0, [], {}
    patch_shares = []
    names = [n for n in matter.output_names if n in MODEL_OUTPUTS]
    for src, bgr in inputs:
        # The file sees the frames in its own input format (float16-rounded, or stored as uint8
        # frames), as its callers would send them; PyTorch sees the same values in float32.
        feeds = {"src": float_to_input(src, matter.io_dtype), "bgr": float_to_input(bgr, matter.io_dtype)}
        if matter.io_dtype == np.uint8:
            src, bgr = (frames_to_input(feeds[n], np.float32) for n in INPUTS)
        results = matter.run(feeds["src"], feeds["bgr"])
        got = {n: results[n].astype(np.float32) for n in names}
        with torch.no_grad():
            want = dict(
                zip(MODEL_OUTPUTS, (t.numpy() for t in reference(torch.from_numpy(src), torch.from_numpy(bgr))))
            )
        _check_shapes(got, want)
        differs = _differing_patches(got, want, budget.patch_tolerance)
        flips = np.zeros_like(differs)
        if selection:  # which patches the file refined, read from the file itself
            scores, indices = results[selection["scores"]], results[selection["indices"]]
            selected_differently = (
                file_selection(scores, indices, config.prevent_oversampling)
                != (want["ref_sm"] > 0).reshape(scores.shape)
            ).reshape(differs.shape)
            flips = selected_differently & interchangeable_patches(
                want["err_sm"], differs.shape[1:], config, budget.tie_band
            )
            differs = (differs | selected_differently) & ~flips
        for name in names:
            diffs.setdefault(name, []).append(_compared(np.abs(got[name].astype(np.float64) - want[name]), flips))
        mismatched += int(differs.sum())
        flipped += int(flips.sum())
        total_patches += differs.size
        patch_shares.append(float(differs.mean()))
        count, shape = count + 1, list(src.shape)
        sizes[tuple(shape[2:])] = None
    if not count:
        raise ConfigError("no input pairs to verify with")
    report = judge(path, precision, budget, diffs, mismatched / total_patches, count, shape, patch_shares)
    report.tie_flips, report.tie_band = flipped / total_patches, budget.tie_band
    report.inputs, report.sizes = kind, [list(size) for size in sizes]
    return report


def budget_name(file_precision: str, arithmetic: str | None) -> str:
    """The budget a file is held to: its own precision's, or that of the lower arithmetic its
    backend was asked to run it at (an fp32 file on OpenVINO's bf16: bf16)."""
    if arithmetic is not None and file_precision == "fp32":
        return arithmetic
    return file_precision


@contextmanager
def _opened(path: Path, meta: ExportMetadata, backend: str, options: dict) -> Iterator[tuple[Matter, dict]]:
    """The file opened on `backend` through the registry, with the settings the runtime uses
    for its precision; where the exporter recorded a top-k selection, from a temporary copy of
    the graph whose outputs include the selection's scores and indices."""
    if path.suffix.lower() in ENGINE_SUFFIXES:  # a built plan gains no outputs: compared strictly
        yield Matter.open(path, check_values=False, **options), {}
        return
    selection = meta.selection[0] if meta.selection else {}  # BGMv2 has one top-k
    options = {**BACKENDS[backend].measure_options, **options}
    if not selection:
        yield Matter.open(path, backend=backend, check_values=False, **options), selection
        return
    import onnx

    model = load_onnx(path)
    model.graph.output.extend(
        [
            onnx.helper.make_tensor_value_info(selection["scores"], onnx.TensorProto.FLOAT, None),
            onnx.helper.make_tensor_value_info(selection["indices"], onnx.TensorProto.INT64, None),
        ]
    )
    with tempfile.TemporaryDirectory(prefix="mattex-verify-") as tmp:
        copy = Path(tmp) / path.name
        onnx.save(model, str(copy))
        try:
            matter = Matter.open(copy, backend=backend, check_values=False, **options)
        except MattexError as e:  # named as the user named the file, not as the temporary copy
            raise type(e)(str(e).replace(str(copy), str(path))) from None
        yield matter, selection


def file_selection(scores: np.ndarray, indices: np.ndarray, prevent_oversampling: bool) -> np.ndarray:
    """(B, N) True for the patches a file refines: its top-k `indices` (B, k) of `scores`
    (B, N), less those with zero error under prevent_oversampling (as the refiner keeps them)."""
    selected = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(selected, indices, True, axis=1)
    if prevent_oversampling:
        selected &= scores > 0
    return selected


def interchangeable_patches(err_sm: np.ndarray, grid: tuple[int, int], config: ExportConfig, band: float) -> np.ndarray:
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
    err = torch.nn.functional.interpolate(torch.from_numpy(err_sm), grid, mode="bilinear", align_corners=False).flatten(
        1
    )  # (B, N)
    if config.refine_mode == "thresholding":
        near = (err - config.threshold).abs() <= band
    else:
        kth = err.topk(min(config.k, err.shape[1]), dim=1).values[:, -1:]  # sorted: k-th last
        near = (err - kth).abs() <= band
        if config.prevent_oversampling:
            near |= err <= band
    return near.view(B, *grid).numpy()


def _check_names(outputs: list[str]) -> None:
    if list(outputs[:2]) != list(OUTPUTS):
        raise VerifyError(f"outputs are {outputs}, expected {' and '.join(OUTPUTS)} first")


def _check_shapes(got: dict, want: dict) -> None:
    for name, value in got.items():
        if value.shape != want[name].shape:
            raise VerifyError(f"output {name} has shape {value.shape}, PyTorch gives {want[name].shape}")


def _differing_patches(got: dict, want: dict, tolerance: float) -> np.ndarray:
    """(B, H/4, W/4) True for patches (4x4 blocks) selected differently or whose alpha or
    foreground differs by more than `tolerance`."""
    B, _, H, W = got["pha"].shape
    bad = np.zeros((B, H // PATCH, W // PATCH), dtype=bool)
    for name in ("pha", "fgr"):
        diff = np.abs(got[name] - want[name]).max(axis=1)  # (B, H, W)
        bad |= diff.reshape(B, H // PATCH, PATCH, W // PATCH, PATCH).max(axis=(2, 4)) > tolerance
    if "ref_sm" in got:
        bad |= got["ref_sm"][:, 0] != want["ref_sm"][:, 0]
    return bad


def _compared(diff: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """The differences of one output outside the patches flipped at ties (flattened): at full
    resolution their PATCH x PATCH blocks, on the patch grid (ref_sm) their cells; a low-resolution
    output is compared whole."""
    B, _, H, W = diff.shape
    grid = flips.shape[1:]
    if (H, W) == grid:
        return diff[np.broadcast_to(~flips[:, None], diff.shape)]
    if (H, W) == (grid[0] * PATCH, grid[1] * PATCH):
        keep = ~np.repeat(np.repeat(flips, PATCH, axis=1), PATCH, axis=2)[:, None]
        return diff[np.broadcast_to(keep, diff.shape)]
    return diff.ravel()


def verify_file(
    model: Path,
    checkpoint: Path | None = None,
    samples: int = VerifyOptions.samples,
    batch: int = VerifyOptions.batch,
    height: int | None = None,
    width: int | None = None,
    images: Path | None = None,
    background: Path | None = None,
    data: Path | None = None,
    backgrounds: Path | None = None,
    budget: str | None = None,
    backend: str = VerifyOptions.backend,
    inference_precision: str | None = None,
    video: Path | None = None,
) -> VerifyReport:
    """`mattex verify`: `verify_onnx` on generated pairs, real frames (`images`, or up to
    `samples` frames of `video`, over `background`: footage, held to its budget) or
    PhotoMatte-layout composites (`data`, with `backgrounds`). An engine (its sidecar carries
    the export metadata) runs on the backend it was built for: on a GPU machine with TensorRT
    or TensorRT for RTX; elsewhere BackendUnavailableError says what is missing."""
    from .inputs import composite_pairs, frame_pairs, video_pairs

    if images is not None and video is not None:
        raise ConfigError("choose `images` or `video`, not both")
    if (images is None and video is None) != (background is None):
        raise ConfigError("`background` goes with `images` or `video`, and they need it")
    if (images is not None or video is not None) and data is not None:
        raise ConfigError("choose `images`, `video` or `data`, not two")
    if backgrounds is not None and data is None:
        raise ConfigError("`backgrounds` goes with `data`")
    if height and width:  # refused before the file and PyTorch are opened
        require_pair_memory(batch, height, width)
    pairs, kind = None, COMPOSITES
    if images is not None:
        pairs, kind = frame_pairs(images, background), FOOTAGE
    elif video is not None:
        pairs, kind = video_pairs(video, background, samples), FOOTAGE
    elif data is not None:
        pairs = composite_pairs(model, data, backgrounds, height, width)
    return verify_onnx(
        model,
        pairs,
        checkpoint,
        samples,
        batch,
        height,
        width,
        budget=budget,
        backend=backend,
        inference_precision=inference_precision,
        kind=kind,
    )
