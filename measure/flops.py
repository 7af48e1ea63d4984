"""Arithmetic of a frame: the FLOPs of mattex's model, counted once with PyTorch's FLOP counter
(convolutions and matrix products; gathers, resizes and pastes count zero), split into the base
network and the refiner. What `benchmarks/refiner_efficiency.py` divides times by."""

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
    refiner = counts.get(f"{type(model).__name__}.refiner", 0.0)
    return FrameFlops(base=total - refiner, refiner=refiner)
