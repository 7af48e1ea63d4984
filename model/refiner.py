"""The refiner: re-estimates alpha and foreground on the most error-prone 4x4 patches.

Patches are cropped and written back with flat gather/scatter over precomputed pixel indices,
so the sampling path has a static patch count k: no `nonzero`, no `unfold`, no roi_align and no
Python branch on tensor values. A patch is named by one flat id, `b * Hq*Wq + i * Wq + j`, for
the 4x4 block whose top-left is (4i, 4j) at full resolution; ids are correct for any batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattex.errors import ConfigError

REFINE_MODES = ("sampling", "thresholding", "full")
# How sampling breaks ties at the k-th largest error: "torch" calls torch.topk exactly as the
# reference does (drop-in parity; which tied patches win is up to the kernel); "lowest_index"
# takes tied patches lowest index first, as ONNX TopK and mattex's exported selection do (what
# `mattex verify` compares a file with).
TIE_BREAKS = ("torch", "lowest_index")


def window_pixels(
    ids: Tensor, grid: tuple[int, int], stride: int, size: int, pad: int, map_hw: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Flat pixel indices of each patch's `size` x `size` window in a batch of maps.

    ids: (N,) flat ids on the (H/4, W/4) patch `grid`. The window of patch (b, i, j) has its
    top-left at (stride*i - pad, stride*j - pad) in maps of size `map_hw`, as if they were
    zero-padded by `pad`. Returns indices (N * size * size,) into the maps flattened as
    (B * map_h * map_w,), clamped into the map, and (N * size * size,) True where the window
    lies inside the map (outside it the padded map is zero).
    """
    grid_h, grid_w = grid
    map_h, map_w = map_hw
    b = ids // (grid_h * grid_w)
    i = (ids // grid_w) % grid_h
    j = ids % grid_w
    r = torch.arange(size, device=ids.device)
    rows = (i * stride - pad)[:, None, None] + r[None, :, None]                # (N, size, 1)
    cols = (j * stride - pad)[:, None, None] + r[None, None, :]                # (N, 1, size)
    inside = (rows >= 0) & (rows < map_h) & (cols >= 0) & (cols < map_w)       # (N, size, size)
    pixels = (b[:, None, None] * (map_h * map_w)
              + rows.clamp(0, map_h - 1) * map_w + cols.clamp(0, map_w - 1))
    return pixels.flatten(), inside.flatten()


def crop_windows(
    x: Tensor, ids: Tensor, grid: tuple[int, int], stride: int, size: int, pad: int
) -> Tensor:
    """Crop each patch's window from `x` (B, C, Hx, Wx) as if zero-padded by `pad`, without
    padding the whole map. Returns (N, C, size, size)."""
    B, C, Hx, Wx = x.shape
    pixels, inside = window_pixels(ids, grid, stride, size, pad, (Hx, Wx))
    # Channels first, batch folded into the pixel axis: one Gather serves every image.
    flat = x.transpose(0, 1).reshape(C, B * Hx * Wx)
    crops = flat.index_select(1, pixels)                                       # (C, N*size*size)
    if pad:
        crops = torch.where(inside, crops, torch.zeros((), dtype=x.dtype, device=x.device))
    return crops.view(C, -1, size, size).transpose(0, 1)


def paste_patches(out: Tensor, patches: Tensor, ids: Tensor, keep: Tensor | None) -> Tensor:
    """Replace the 4x4 block of each patch id in `out` (B, C, H, W) by `patches` (N, C, 4, 4).

    Where `keep` (N,) is False the block keeps its value in `out`; that lets a static number of
    patches be written when some of them must not change the image.
    """
    B, C, H, W = out.shape
    pixels, _ = window_pixels(ids, (H // 4, W // 4), 4, 4, 0, (H, W))          # (N*16,)
    flat = out.transpose(0, 1).reshape(C, B * H * W)
    values = patches.transpose(0, 1).reshape(C, -1)                            # (C, N*16)
    if keep is not None:
        keep_pixels = keep[:, None].expand(-1, 16).reshape(1, -1)
        values = torch.where(keep_pixels, values, flat.index_select(1, pixels))
    flat = flat.scatter(1, pixels[None, :].expand(C, -1), values)
    return flat.view(C, B, H, W).transpose(0, 1)


class Refiner(nn.Module):
    """BGMv2 refiner. Convolutions are unpadded; 15,444 parameters for kernel size 3."""

    def __init__(
        self,
        mode: str,
        sample_pixels: int,
        threshold: float,
        kernel_size: int = 3,
        prevent_oversampling: bool = True,
        tie_break: str = "torch",
    ) -> None:
        super().__init__()
        if tie_break not in TIE_BREAKS:
            raise ConfigError(f"unknown tie_break {tie_break!r}; choose one of {', '.join(TIE_BREAKS)}")
        self.tie_break = tie_break
        self.mode = mode
        self.sample_pixels = sample_pixels
        self.threshold = threshold
        self.kernel_size = kernel_size
        self.prevent_oversampling = prevent_oversampling
        self.conv1 = nn.Conv2d(32 + 1 + 3 + 6, 24, kernel_size, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = nn.Conv2d(24, 16, kernel_size, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16 + 3 + 3, 12, kernel_size, bias=False)
        self.bn3 = nn.BatchNorm2d(12)
        self.conv4 = nn.Conv2d(12, 4, kernel_size, bias=True)
        self.relu = nn.ReLU(inplace=True)

    @property
    def patches_per_image(self) -> int:
        """k of the sampling mode (before capping at the number of patches in the image)."""
        return self.sample_pixels // 16

    def forward(
        self, src: Tensor, bgr: Tensor, pha: Tensor, fgr: Tensor, err: Tensor, hid: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """src, bgr: (B, 3, H, W); pha, err: (B, 1, h, w); fgr: (B, 3, h, w) residual;
        hid: (B, 32, h, w). Returns pha (B, 1, H, W), fgr residual (B, 3, H, W) and the
        selection map ref (B, 1, H/4, W/4)."""
        H, W = src.shape[2:]
        src_bgr = torch.cat([src, bgr], dim=1)                                  # (B, 6, H, W)
        if self.mode == "full":
            return self._refine_full(src_bgr, pha, fgr, hid)

        err = F.interpolate(err, (H // 4, W // 4), mode="bilinear", align_corners=False)
        if self.mode == "sampling":
            ids, keep, ref = self._select_top_k(err)
        else:
            ids, keep, ref = self._select_over_threshold(err)

        coarse = F.interpolate(
            torch.cat([pha, fgr], dim=1), (H, W), mode="bilinear", align_corners=False
        )                                                                       # (B, 4, H, W)
        patches = self._refine_patches(ids, src_bgr, pha, fgr, hid)              # (N, 4, 4, 4)
        out = paste_patches(coarse, patches, ids, keep)
        return out[:, :1], out[:, 1:], ref

    def _select_top_k(self, err: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """The k largest error locations per image, k static (capped at the grid size)."""
        B = err.shape[0]
        err_flat = err.flatten(1)                                               # (B, Hq*Wq)
        grid_hw = err_flat.shape[1]
        k = min(self.patches_per_image, grid_hw)
        if self.tie_break == "lowest_index":
            # A stable descending sort keeps equal errors in index order.
            idx = err_flat.sort(dim=1, descending=True, stable=True).indices[:, :k]  # (B, k)
        else:
            # Exactly the reference's call on exactly its tensor: ties at the k-th value are
            # then broken the same way as the published implementation.
            idx = err_flat.topk(k, dim=1, sorted=False).indices                 # (B, k)
        if self.prevent_oversampling:
            keep = err_flat.gather(1, idx) > 0                                  # (B, k)
        else:
            keep = torch.ones_like(idx, dtype=torch.bool)
        ref = torch.zeros_like(err_flat).scatter(1, idx, keep.to(err.dtype)).view_as(err)
        batch_offset = torch.arange(B, device=err.device)[:, None] * grid_hw
        ids = (idx + batch_offset).flatten()                                    # (B*k,)
        return ids, (keep.flatten() if self.prevent_oversampling else None), ref

    def _select_over_threshold(self, err: Tensor) -> tuple[Tensor, None, Tensor]:
        """Every location whose error exceeds the threshold (a data-dependent count)."""
        ref = err.gt(self.threshold).to(err.dtype)                              # (B, 1, Hq, Wq)
        ids = torch.nonzero(ref.flatten()).squeeze(1)                           # (N,)
        return ids, None, ref

    def _refine_patches(
        self, ids: Tensor, src_bgr: Tensor, pha: Tensor, fgr: Tensor, hid: Tensor
    ) -> Tensor:
        H, W = src_bgr.shape[2:]
        grid = (H // 4, W // 4)
        k3 = self.kernel_size == 3
        # Stage 1, half resolution: 8x8 windows (2x2 for kernel size 1) around each patch,
        # cropped from each map separately so no whole map is padded or concatenated.
        window = dict(grid=grid, stride=2, size=8 if k3 else 2, pad=3 if k3 else 0)
        x = torch.cat([
            crop_windows(F.interpolate(torch.cat([hid, pha, fgr], dim=1), (H // 2, W // 2),
                                       mode="bilinear", align_corners=False), ids, **window),
            crop_windows(F.interpolate(src_bgr, (H // 2, W // 2), mode="bilinear",
                                       align_corners=False), ids, **window),
        ], dim=1)                                                               # (N, 42, 8, 8)
        x = self.relu(self.bn1(self.conv1(x)))                                  # (N, 24, 6, 6)
        x = self.relu(self.bn2(self.conv2(x)))                                  # (N, 16, 4, 4)
        x = F.interpolate(x, 8 if k3 else 4, mode="nearest")                    # (N, 16, 8, 8)
        # Stage 2, full resolution.
        y = crop_windows(src_bgr, ids, grid, stride=4, size=8 if k3 else 4,
                         pad=2 if k3 else 0)                                    # (N, 6, 8, 8)
        x = self.relu(self.bn3(self.conv3(torch.cat([x, y], dim=1))))           # (N, 12, 6, 6)
        return self.conv4(x)                                                    # (N, 4, 4, 4)

    def _refine_full(
        self, src_bgr: Tensor, pha: Tensor, fgr: Tensor, hid: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The same convolutions over the whole image (equals sampling every patch)."""
        B, _, H, W = src_bgr.shape
        k3 = self.kernel_size == 3
        x = F.interpolate(torch.cat([hid, pha, fgr], dim=1), (H // 2, W // 2),
                          mode="bilinear", align_corners=False)
        y = F.interpolate(src_bgr, (H // 2, W // 2), mode="bilinear", align_corners=False)
        if k3:
            x, y = F.pad(x, (3, 3, 3, 3)), F.pad(y, (3, 3, 3, 3))
        x = self.relu(self.bn1(self.conv1(torch.cat([x, y], dim=1))))
        x = self.relu(self.bn2(self.conv2(x)))
        if k3:
            x = F.interpolate(x, (H + 4, W + 4), mode="nearest")
            y = F.pad(src_bgr, (2, 2, 2, 2))
        else:
            x = F.interpolate(x, (H, W), mode="nearest")
            y = src_bgr
        x = self.relu(self.bn3(self.conv3(torch.cat([x, y], dim=1))))
        x = self.conv4(x)                                                       # (B, 4, H, W)
        ref = torch.ones((B, 1, H // 4, W // 4), device=src_bgr.device, dtype=src_bgr.dtype)
        return x[:, :1], x[:, 1:], ref
