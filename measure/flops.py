"""Arithmetic of a frame: the FLOPs of mattex's model, split into the base network and the refiner.
What `benchmarks/refiner_efficiency.py` and `refiner_profile.py` divide times by.

The base network is counted once with PyTorch's FLOP counter (convolutions and matrix products;
gathers, resizes and pastes count zero). The refiner counts the published model's arithmetic:
its four convolutions on k patches, which any implementation computes. What mattex's graph adds
or saves to run them fast (zero channels up to a whole block, the upsample folded into conv3,
the per-patch resizing products) is left out, so GFLOP/s compare across graph versions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameFlops:
    base: float  # GFLOP: backbone, ASPP, decoder
    refiner: float  # GFLOP: the refiner's convolutions and its per-patch resizing products

    @property
    def total(self) -> float:
        return self.base + self.refiner


def count_flops(config) -> FrameFlops:
    """GFLOP of one frame (batch 1) at `config`'s trace size with k patches refined (the sampling
    mode refines exactly k, whatever the frame)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mattex.model.sources import WeightsSource, build_model

    model = build_model(WeightsSource("random", seed=0), **config.model_kwargs()).eval()
    src = torch.rand(1, 3, config.height, config.width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(src, src * 0.9)
    counts = {name: sum(by_op.values()) / 1e9 for name, by_op in counter.get_flop_counts().items()}
    total = counts.get("Global", 0.0)
    counted_refiner = counts.get(f"{type(model).__name__}.refiner", 0.0)
    refiner = published_refiner_gflop(model.refiner, config.k) if config.refine_mode == "sampling" else counted_refiner
    return FrameFlops(base=total - counted_refiner, refiner=refiner)


def published_refiner_gflop(refiner, k: int) -> float:
    """The refiner's four unpadded convolutions on k patches, as the published model runs them:
    stage 1 on 8x8 half-resolution windows (2x2 for kernel size 1), stage 2 on 8x8 (4x4)."""
    K = refiner.kernel_size
    stage1, stage2 = (8, 8) if K == 3 else (2, 4)
    convs = (
        (refiner.conv1, stage1),
        (refiner.conv2, stage1 - K + 1),
        (refiner.conv3, stage2),
        (refiner.conv4, stage2 - K + 1),
    )
    per_patch = sum(2 * c.in_channels * c.out_channels * K * K * (size - K + 1) ** 2 for c, size in convs)
    return per_patch * k / 1e9
