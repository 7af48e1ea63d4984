"""The PyTorch side every measurement compares against: the fp32 model a file was exported from,
rebuilt from its metadata, and the one adapter that runs a PyTorch model on numpy (src, bgr)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mattex.errors import CheckpointError, ConfigError
from mattex.exporter.config import ExportConfig
from mattex.files import sha256_file
from mattex.metadata import ExportMetadata, is_mattex_export
from mattex.model.checkpoint import load_matting_refine
from mattex.model.sources import WeightsSource, build_model, demo_weights_path, find_checkpoint


def weights_for(meta: ExportMetadata, checkpoint: Path | None) -> WeightsSource:
    """The weights the file was exported with; a checkpoint must match the recorded sha256."""
    recorded = WeightsSource.parse(meta.weights)
    if recorded.kind == "random":
        if meta.torch_version != torch.__version__:
            raise ConfigError(
                f"the file holds random weights drawn by torch {meta.torch_version}; this is torch "
                f"{torch.__version__}, so they cannot be redrawn: pass the `checkpoint`"
            )
        return recorded
    if recorded.kind == "demo":  # a checkpoint given must be those weights
        path = checkpoint or demo_weights_path(meta.backbone)
    else:
        path = checkpoint or find_checkpoint(meta.backbone)
    if path is None:
        raise CheckpointError("the file was exported from a checkpoint: pass it (`checkpoint`)")
    digest = sha256_file(path)
    if digest != recorded.sha256:
        raise CheckpointError(
            f"{path} (sha256 {digest[:12]}...) is not the checkpoint the file was exported "
            f"from (sha256 {recorded.sha256[:12]}...)"
        )
    return WeightsSource(recorded.kind, Path(path), digest)


def reference_model(meta: ExportMetadata, checkpoint: Path | None = None, tie_break: str = "lowest_index"):
    """The PyTorch fp32 model a file (its `meta`) was exported from, by default breaking ties at
    the k-th error lowest index first as the file's selection does."""
    config = ExportConfig.from_metadata(meta)
    return build_model(weights_for(meta, checkpoint), **config.model_kwargs(), refine_tie_break=tie_break)


def torch_matter(model):
    """A PyTorch MattingRefine as a numpy (src, bgr) -> every output by name, float32."""
    from mattex.contract import MODEL_OUTPUTS

    def run(src: np.ndarray, bgr: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outputs = model(torch.from_numpy(src), torch.from_numpy(bgr))
        return {name: t.numpy() for name, t in zip(MODEL_OUTPUTS, outputs)}

    return run


def checkpoint_matter(path: Path | None, **model_kwargs):
    """torch_matter of a checkpoint (None: the shipped demo weights)."""
    if path is None:
        path = demo_weights_path("mobilenetv2")
        if path is None:
            raise ConfigError("no checkpoint given and no demo weights shipped")
    return torch_matter(load_matting_refine(path, **model_kwargs))


def file_metadata(path: Path) -> ExportMetadata:
    """What a file records of its export: an ONNX file's metadata_props, or the export metadata
    an engine's sidecar carries (its ONNX file is not needed to verify it)."""
    from mattex.contract import ENGINE_SUFFIXES
    from mattex.errors import ModelFileError
    from mattex.exporter.onnx_file import read_export_metadata
    from mattex.runtime.sidecar import load_sidecar

    path = Path(path)
    if path.suffix.lower() not in ENGINE_SUFFIXES:
        return read_export_metadata(path)

    props = load_sidecar(path).export_metadata
    if not is_mattex_export(props):
        raise ModelFileError(f"{path.name}'s sidecar carries no mattex export metadata: build it with mattex build")
    return ExportMetadata.from_props(props, path.name)
