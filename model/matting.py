"""MattingBase and MattingRefine: drop-ins for the reference BGMv2 classes.

Same constructor arguments, defaults, outputs and state_dict keys as the published
implementation; correct for any batch size and for k larger than the number of patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattex.contract import BACKBONES, MAX_BACKBONE_SCALE, REFINE_MODES
from mattex.errors import ConfigError, InputShapeError

from .backbones import build_encoder
from .layers import ASPP, Decoder
from .refiner import Refiner

# pha (1) + fgr residual (3) + err (1) + hidden (32)
BASE_OUT_CHANNELS = 1 + 3 + 1 + 32


def check_inputs(src: Tensor, bgr: Tensor, multiple: int = 1) -> None:
    """Raise InputShapeError unless src and bgr are equal (B, 3, H, W) with H, W % multiple == 0."""
    for name, t in (("src", src), ("bgr", bgr)):
        if t.dim() != 4 or t.shape[1] != 3:
            raise InputShapeError(f"{name} must be (B, 3, H, W) RGB, got shape {tuple(t.shape)}")
    if src.shape != bgr.shape:
        raise InputShapeError(f"src {tuple(src.shape)} and bgr {tuple(bgr.shape)} must have the same shape")
    H, W = src.shape[2:]
    if H % multiple or W % multiple:
        raise InputShapeError(
            f"src and bgr height and width must be divisible by {multiple}, got {H}x{W} "
            f"(nearest valid: {H // multiple * multiple}x{W // multiple * multiple})"
        )


class MattingBase(nn.Module):
    """Backbone + ASPP + decoder. forward(src, bgr) -> pha, fgr, err, hid at input size."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
        self.backbone_name = backbone
        self.backbone = build_encoder(backbone, in_channels=6)
        deep, *skips = self.backbone.feature_channels
        self.aspp = ASPP(deep, (3, 6, 9))
        self.decoder = Decoder([256, 128, 64, 48, BASE_OUT_CHANNELS], [*skips, 6])

    def _decode(self, src: Tensor, bgr: Tensor) -> Tensor:
        x4, x3, x2, x1, x0 = self.backbone(torch.cat([src, bgr], dim=1))
        return self.decoder(self.aspp(x4), x3, x2, x1, x0)  # (B, 37, H, W)

    def forward(self, src: Tensor, bgr: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        check_inputs(src, bgr)
        x = self._decode(src, bgr)
        pha = x[:, 0:1].clamp(0.0, 1.0)  # (B, 1, H, W)
        fgr = (x[:, 1:4] + src).clamp(0.0, 1.0)  # (B, 3, H, W)
        err = x[:, 4:5].clamp(0.0, 1.0)  # (B, 1, H, W)
        hid = x[:, 5:].relu()  # (B, 32, H, W)
        return pha, fgr, err, hid


class MattingRefine(MattingBase):
    """Base network at `backbone_scale`, then the refiner at full resolution.

    forward(src, bgr) -> pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm.
    """

    def __init__(
        self,
        backbone: str,
        backbone_scale: float = 1 / 4,
        refine_mode: str = "sampling",
        refine_sample_pixels: int = 80_000,
        refine_threshold: float = 0.1,
        refine_kernel_size: int = 3,
        refine_prevent_oversampling: bool = True,
        refine_tie_break: str = "torch",
    ) -> None:
        if not 0 < backbone_scale <= MAX_BACKBONE_SCALE:
            raise ConfigError(f"backbone_scale must be in (0, 1/2], got {backbone_scale}")
        if refine_mode not in REFINE_MODES:
            raise ConfigError(f"unknown refine_mode {refine_mode!r}; choose one of {', '.join(REFINE_MODES)}")
        if refine_kernel_size not in (1, 3):
            raise ConfigError(f"refine_kernel_size must be 1 or 3, got {refine_kernel_size}")
        if not 0 <= refine_threshold < 1:  # NaN too: the error map lies in [0, 1]; 1 or more refines nothing
            raise ConfigError(f"refine_threshold must be in [0, 1), got {refine_threshold!r}")
        if refine_sample_pixels < 16:
            raise ConfigError(f"refine_sample_pixels must be at least 16 (one 4x4 patch), got {refine_sample_pixels}")
        super().__init__(backbone)
        self.backbone_scale = backbone_scale
        self.refiner = Refiner(
            refine_mode,
            refine_sample_pixels,
            refine_threshold,
            refine_kernel_size,
            refine_prevent_oversampling,
            refine_tie_break,
            backbone_scale,
        )

    def forward(self, src: Tensor, bgr: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        check_inputs(src, bgr, multiple=4)
        src_sm, bgr_sm = (
            F.interpolate(
                t, scale_factor=self.backbone_scale, mode="bilinear", align_corners=False, recompute_scale_factor=True
            )
            for t in (src, bgr)
        )  # (B, 3, h, w)
        x = self._decode(src_sm, bgr_sm)  # (B, 37, h, w)
        pha_sm = x[:, 0:1].clamp(0.0, 1.0)
        fgr_sm = x[:, 1:4]  # residual: the refiner takes it unclamped
        err_sm = x[:, 4:5].clamp(0.0, 1.0)
        hid_sm = x[:, 5:].relu()
        pha, fgr, ref_sm = self.refiner(src, bgr, pha_sm, fgr_sm, err_sm, hid_sm)
        pha = pha.clamp(0.0, 1.0)  # (B, 1, H, W)
        fgr = (fgr + src).clamp(0.0, 1.0)  # (B, 3, H, W)
        fgr_sm = (src_sm + fgr_sm).clamp(0.0, 1.0)  # (B, 3, h, w)
        return pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm
