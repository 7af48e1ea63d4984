"""Where an export's weights come from: a checkpoint, the shipped demo weights, or a seed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mattex.errors import CheckpointError
from mattex.model import MattingRefine
from mattex.files import sha256_file
from mattex.model.checkpoint import compare_keys, read_state_dict

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
    def parse(cls, text: str) -> "WeightsSource":
        kind, _, rest = text.partition(" ")
        if kind == "random":
            return cls("random", seed=int(rest.split("=", 1)[1]))
        return cls(kind, sha256=rest)


def demo_weights_path(backbone: str) -> Path | None:
    """The small demo state_dict shipped in the package for `backbone`, if there is one."""
    path = Path(__file__).resolve().parent.parent / "model" / "weights" / f"demo_{backbone}.pth"
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
    """The weights an export without --checkpoint uses, in the documented order."""
    if checkpoint is None:
        checkpoint = find_checkpoint(backbone)
    if checkpoint is not None:
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
    model.load_state_dict(state)
    return model.eval()
