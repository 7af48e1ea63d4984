"""Where a model's weights come from: a checkpoint, the demo weights shipped in `weights/`, or a
seed; recorded in an exported file's metadata so the PyTorch side can be rebuilt exactly."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mattex.errors import CheckpointError, CheckpointMismatchError
from mattex.files import sha256_file

from .checkpoint import compare_keys, read_state_dict
from .matting import MattingRefine

RANDOM_SEED = 0


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "checkpoint" | "demo" | "random"
    path: Path | None = None
    sha256: str | None = None
    seed: int | None = None

    def describe(self) -> str:
        """The metadata value: `checkpoint <sha256>`, `demo <sha256>` or `random seed=<n>`."""
        if self.kind == "random":
            return f"random seed={self.seed}"
        return f"{self.kind} {self.sha256}"

    @classmethod
    def parse(cls, text: str) -> WeightsSource:
        kind, _, rest = text.partition(" ")
        if kind == "random":
            return cls("random", seed=int(rest.split("=", 1)[1]))
        return cls(kind, sha256=rest)


def demo_weights_path(backbone: str) -> Path | None:
    """The small demo state_dict shipped in the package for `backbone`, if there is one."""
    path = Path(__file__).resolve().parent / "weights" / f"demo_{backbone}.pth"
    return path if path.is_file() else None


def find_checkpoint(backbone: str, search: list[Path] | None = None) -> Path | None:
    """`pytorch_<backbone>.pth` in the working directory, then in $MATTEX_HOME."""
    if search is None:
        search = [Path.cwd()]
        if os.environ.get("MATTEX_HOME"):
            search.append(Path(os.environ["MATTEX_HOME"]))
    for folder in search:
        candidate = folder / f"pytorch_{backbone}.pth"
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(backbone: str, checkpoint: Path | None = None) -> WeightsSource:
    """The weights an export without a checkpoint uses, in the documented order."""
    if checkpoint is None:
        checkpoint = find_checkpoint(backbone)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise CheckpointError(
                f"checkpoint not found: {checkpoint}" + (" (a folder)" if Path(checkpoint).is_dir() else "")
            )
        return WeightsSource("checkpoint", Path(checkpoint), sha256_file(checkpoint))
    demo = demo_weights_path(backbone)
    if demo is not None:
        return WeightsSource("demo", demo, sha256_file(demo))
    return WeightsSource("random", seed=RANDOM_SEED)


def build_model(source: WeightsSource, **model_kwargs) -> MattingRefine:
    """MattingRefine(**model_kwargs) in eval mode with the source's weights (random: seeded,
    reproducible with the same torch version)."""
    backbone = model_kwargs["backbone"]
    if source.kind == "random":
        torch.manual_seed(source.seed)
        return MattingRefine(**model_kwargs).eval()
    path = source.path
    if path is None and source.kind == "demo":
        path = demo_weights_path(backbone)
    if path is None:
        raise CheckpointError(f"the {source.kind} weights' file is not known; pass the checkpoint")
    if source.sha256 is not None and sha256_file(path) != source.sha256:
        raise CheckpointError(f"{path} is not the {source.kind} weights recorded (sha256 {source.sha256[:12]}...)")
    state = read_state_dict(path)
    compare_keys(state, backbone).raise_if_mismatched(str(path))
    model = MattingRefine(**model_kwargs)
    want = model.state_dict()
    mismatched = [
        (k, tuple(v.shape), tuple(want[k].shape)) for k, v in state.items() if k in want and v.shape != want[k].shape
    ]
    if mismatched:  # the keys fit, an option does not: name it
        kernel = next((got[-1] for k, got, _ in mismatched if k.startswith("refiner.") and len(got) == 4), None)
        hint = (
            f" (its refiner kernels are {kernel}x{kernel}: use `kernel_size` {kernel})"
            if kernel is not None and kernel != model_kwargs.get("refine_kernel_size", 3)
            else ""
        )
        raise CheckpointMismatchError(backbone, [], [], mismatched, source=f"{path}{hint}")
    model.load_state_dict(state)
    return model.eval()
