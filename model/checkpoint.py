"""Reading the published BGMv2 checkpoints safely and checking them against the model.

`.pth` state_dicts load with `torch.load(weights_only=True)`: tensors only, no Python objects,
so a checkpoint can never run code. TorchScript archives (`torchscript_<backbone>_fp32.pth`)
load through `torch.jit.load`, whose unpickler only rebuilds TorchScript types; mattex keeps
only their state_dict.
"""

from __future__ import annotations

import functools
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import torch

from mattex.contract import BACKBONES
from mattex.errors import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError
from mattex.files import sha256_file

from .matting import MattingRefine

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def is_torchscript_archive(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (a zip with code/); CheckpointError for a zip
    too damaged to list."""
    try:
        if not zipfile.is_zipfile(path):  # may itself raise BadZipFile on a damaged end record
            return False
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
    except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError) as e:  # bad names: ValueError
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (a damaged zip archive: {type(e).__name__}: {e})"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.pth` state_dict or TorchScript archive, as float32 on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if is_torchscript_archive(path):
        state = _read_torchscript(path)
    else:
        state = _read_weights_only(path)
    # The published fp16 TorchScript files hold half weights; the reference model is fp32.
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _read_weights_only(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names a refused global on one line ("... unsupported GLOBAL posix.system ...");
        # any other unpickling failure is a corrupt or foreign file.
        culprit = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), None)
        if culprit is None:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint") from None
        raise UnsafeCheckpointError(
            f"{path} pickles Python objects, not just tensors; mattex loads checkpoints with "
            "torch.load(weights_only=True) and never runs code from them. Re-save a plain "
            f"state_dict: torch.save(model.state_dict(), path). ({culprit})"
        ) from None
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state_dict of tensors "
            "(save one with torch.save(model.state_dict(), path))"
        )
    return dict(obj)


def _read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    # A damaged archive: RuntimeError mostly; bad UTF-8 (ValueError), a missing record (IndexError,
    # KeyError) or a damaged size field (std::bad_alloc: MemoryError) from torch's C++ reader.
    except (RuntimeError, ValueError, IndexError, KeyError, OSError, EOFError, MemoryError) as e:
        raise CheckpointError(
            f"{path} is not a loadable TorchScript archive: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
        ) from None
    return dict(module.state_dict())


def infer_backbone(state: dict[str, torch.Tensor]) -> str:
    """Tell the backbone from the state_dict's keys as a whole (the published checkpoints carry
    no other hint): MobileNetV2 keeps its layers under backbone.features.*, the ResNets under
    backbone.layer*.*, and resnet101's layer3 has 23 blocks to resnet50's 6. Counting every key,
    not looking for one, so that a checkpoint missing a key still names its backbone (the key
    check then lists what is missing)."""
    mobilenet = sum(k.startswith("backbone.features.") for k in state)
    resnet = [k.split(".") for k in state if k.startswith("backbone.layer")]
    if mobilenet > len(resnet):
        return "mobilenetv2"
    if resnet:
        deep = any(p[1] == "layer3" and len(p) > 2 and p[2].isdigit() and int(p[2]) >= 6 for p in resnet)
        return "resnet101" if deep else "resnet50"
    raise CheckpointError(
        "cannot tell the backbone from the checkpoint's keys (no backbone.features.* or "
        f"backbone.layer*.*); pass the backbone explicitly (one of {', '.join(BACKBONES)})"
    )


@dataclass
class KeyReport:
    """How a state_dict compares with MattingRefine(backbone)'s."""

    backbone: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def raise_if_mismatched(self, source: str = "checkpoint") -> None:
        if not self.ok:
            raise CheckpointMismatchError(self.backbone, self.missing, self.unexpected, self.mismatched, source)


@functools.cache
def expected_shapes(backbone: str) -> Mapping[str, tuple[int, ...]]:
    """MattingRefine(backbone)'s state_dict keys (in order) and shapes; built once per backbone
    (a resnet50 costs 0.6 s to initialise, and every checkpoint load compares against it)."""
    return MappingProxyType({k: tuple(v.shape) for k, v in MattingRefine(backbone).state_dict().items()})


def compare_keys(state: dict[str, torch.Tensor], backbone: str) -> KeyReport:
    expected = expected_shapes(backbone)
    report = KeyReport(backbone)
    report.missing = [k for k in expected if k not in state]
    report.unexpected = [k for k in state if k not in expected]
    report.mismatched = [
        (k, tuple(state[k].shape), shape)
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    return report


def count_parameters(state: dict[str, torch.Tensor]) -> int:
    """Learnable parameters of a state_dict (BatchNorm statistics are buffers, not counted)."""
    return sum(v.numel() for k, v in state.items() if not k.endswith(_BUFFER_SUFFIXES))


def load_matting_refine(path: str | Path, backbone: str | None = None, **refine_kwargs) -> MattingRefine:
    """MattingRefine in eval mode with the checkpoint's weights; the backbone is inferred from
    the keys unless given. Raises CheckpointMismatchError listing every key difference."""
    state = read_state_dict(path)
    backbone = backbone or infer_backbone(state)
    compare_keys(state, backbone).raise_if_mismatched(str(path))
    model = MattingRefine(backbone, **refine_kwargs)
    model.load_state_dict(state)
    return model.eval()


def describe_checkpoint(path: str | Path, backbone: str | None = None) -> dict:
    """What `mattex info` shows: format, sha256, backbone, parameter count and the key check."""
    path = Path(path)
    state = read_state_dict(path)
    inferred = backbone is None
    backbone = backbone or infer_backbone(state)
    report = compare_keys(state, backbone)
    return {
        "file": str(path),
        "format": "torchscript" if is_torchscript_archive(path) else "state_dict",
        "sha256": sha256_file(path),
        "backbone": backbone,
        "backbone_inferred": inferred,
        "keys": len(state),
        "parameters": count_parameters(state),
        "keys_match": report.ok,
        "missing": report.missing,
        "unexpected": report.unexpected,
        "mismatched": [{"key": k, "checkpoint": list(got), "model": list(want)} for k, got, want in report.mismatched],
    }
