"""The refiner: re-estimates alpha and foreground on the most error-prone 4x4 patches.

Patches are cropped and written back with flat gather/scatter over precomputed pixel indices,
so the sampling path has a static patch count k: no `nonzero`, no `unfold`, no roi_align and no
Python branch on tensor values. A patch is named by one flat id, `b * Hq*Wq + i * Wq + j`, for
the 4x4 block whose top-left is (4i, 4j) at full resolution; ids are correct for any batch.
"""

from __future__ import annotations

import math

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


def _patch_coordinates(ids: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Batch index, patch row and patch column of each flat patch id (N,)."""
    grid_h, grid_w = grid
    return ids // (grid_h * grid_w), (ids // grid_w) % grid_h, ids % grid_w


def window_pixels(
    ids: Tensor, grid: tuple[int, int], stride: int, size: int, pad: int, map_hw: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Where each patch's `size` x `size` window lies in one (map_h, map_w) map.

    ids: (N,) flat ids on the (H/4, W/4) patch `grid`. The window of patch (b, i, j) has its
    top-left at (stride*i - pad, stride*j - pad), as if the map were zero-padded by `pad`.
    Returns the batch index (N, 1, 1), the flat pixel index within one map, row * map_w + col,
    clamped into the map (N, size, size), and True where the window lies inside it (N, size, size).
    """
    map_h, map_w = map_hw
    b, i, j = _patch_coordinates(ids, grid)
    r = torch.arange(size, device=ids.device)
    rows = (i * stride - pad)[:, None, None] + r[None, :, None]  # (N, size, 1)
    cols = (j * stride - pad)[:, None, None] + r[None, None, :]  # (N, 1, size)
    inside = (rows >= 0) & (rows < map_h) & (cols >= 0) & (cols < map_w)  # (N, size, size)
    pixels = rows.clamp(0, map_h - 1) * map_w + cols.clamp(0, map_w - 1)
    return b[:, None, None], pixels, inside


def _channel_indices(x: Tensor, b: Tensor, pixels: Tensor) -> Tensor:
    """Flat indices into x (B, C, H, W) viewed as (B*C*H*W,), for every channel of each pixel:
    (C, *pixels.shape). Gathering with them needs no transposed copy of x."""
    B, C, H, W = x.shape
    base = b * (C * H * W) + pixels  # (N, s, s)
    channels = torch.arange(C, device=x.device) * (H * W)
    return base[None] + channels.view(C, *([1] * base.dim()))


def crop_windows(x: Tensor, ids: Tensor, grid: tuple[int, int], stride: int, size: int, pad: int) -> Tensor:
    """Crop each patch's window from `x` (B, C, Hx, Wx) as if zero-padded by `pad`, without
    padding or transposing the map. Returns (N, C, size, size)."""
    b, pixels, inside = window_pixels(ids, grid, stride, size, pad, tuple(x.shape[2:]))
    crops = x.reshape(-1)[_channel_indices(x, b, pixels)]  # (C, N, s, s)
    if pad:
        crops = torch.where(inside, crops, torch.zeros((), dtype=x.dtype, device=x.device))
    return crops.transpose(0, 1)


def _bilinear_taps(dst: Tensor, in_size: int, out_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PyTorch's bilinear source indices and weights (align_corners=False) for output indices
    `dst`: index0, index1, weight0, weight1, each like `dst`. The same float arithmetic as
    F.interpolate: source = max((dst + 0.5) * (in / out) - 0.5, 0)."""
    # in / out as one float32 division (not baked into an export: sizes stay traced)
    scale = torch.ones((), dtype=torch.float32, device=dst.device) * in_size / out_size
    source = ((dst.to(torch.float32) + 0.5) * scale - 0.5).clamp(min=0)
    index0 = source.floor().to(torch.int64).clamp(max=in_size - 1)
    index1 = (index0 + 1).clamp(max=in_size - 1)
    weight1 = (source - index0.to(torch.float32)).clamp(0, 1)
    return index0, index1, 1 - weight1, weight1


def _interpolation_matrix(dst: Tensor, inside: Tensor, base: Tensor, span: int, in_size: int, out_size: int) -> Tensor:
    """(N, span, size): column a holds the bilinear weights of output index dst[:, a] over the
    source indices base .. base + span - 1 (all zero where the output lies outside the map,
    which is the zero padding)."""
    index0, index1, weight0, weight1 = _bilinear_taps(dst, in_size, out_size)
    offsets = torch.arange(span, device=dst.device)[None, :, None]
    at0 = (index0 - base[:, None])[:, None, :] == offsets  # (N, span, size)
    at1 = (index1 - base[:, None])[:, None, :] == offsets
    matrix = weight0[:, None, :] * at0 + weight1[:, None, :] * at1
    return matrix * inside[:, None, :]


def crop_resized(
    x: Tensor,
    ids: Tensor,
    grid: tuple[int, int],
    out_hw: tuple[int, int],
    stride: int,
    size: int,
    pad: int,
    max_ratio: float,
) -> Tensor:
    """crop_windows(F.interpolate(x, out_hw, mode="bilinear", align_corners=False), ...) without
    the resized map: each window is interpolated from the neighbourhood of `x` it reads.

    Bilinear resizing is local: an output row reads two source rows, found with PyTorch's own
    source-index formula, so each patch needs only a span of source rows and columns, at most
    (size - 1) * max_ratio + 2 (max_ratio bounds in / out). The neighbourhoods are gathered
    channels-last and resized by two small matrix products per patch, rows then columns, with
    matrices of bilinear weights (zero where the window leaves the map: the zero padding).
    Each product reads its input transposed, which the runtimes fuse, and the second one leaves
    the windows channels-first, so no copy is ever transposed. Of the forms tried (two products
    per channel, four gathered taps, one Kronecker product per patch, this) this ran fastest on
    both ONNX Runtime and OpenVINO (HD, k = 5,000: 44 and 27 ms; two products per channel: 66
    and 52).
    Returns (N, C, size, size), equal to the whole-map path up to float rounding.
    """
    B, C, h, w = x.shape
    out_h, out_w = out_hw
    span = int(math.ceil((size - 1) * max_ratio)) + 2
    b, i, j = _patch_coordinates(ids, grid)
    r = torch.arange(size, device=ids.device)
    rows = (i * stride - pad)[:, None] + r  # (N, size) output rows
    cols = (j * stride - pad)[:, None] + r
    row0 = _bilinear_taps(rows[:, :1], h, out_h)[0][:, 0]  # (N,) first source row
    col0 = _bilinear_taps(cols[:, :1], w, out_w)[0][:, 0]
    # The neighbourhood (N, span, span, C) from x channels-last; clamping only touches rows and
    # columns past the edge, which no weight reads.
    nb_rows = (row0[:, None] + torch.arange(span, device=x.device)).clamp(max=h - 1)
    nb_cols = (col0[:, None] + torch.arange(span, device=x.device)).clamp(max=w - 1)
    flat = (b[:, None, None] * (h * w) + nb_rows[:, :, None] * w + nb_cols[:, None, :]).reshape(-1)
    neighbourhood = x.permute(0, 2, 3, 1).reshape(B * h * w, C)[flat]  # (N*span*span, C)
    neighbourhood = neighbourhood.view(-1, span, span * C)  # (N, t, (u, c))
    rows_m = _interpolation_matrix(rows, (rows >= 0) & (rows < out_h), row0, span, h, out_h)  # (N, t, a)
    cols_m = _interpolation_matrix(cols, (cols >= 0) & (cols < out_w), col0, span, w, out_w)  # (N, u, b)
    x = (neighbourhood.transpose(1, 2) @ rows_m.to(x.dtype)).view(-1, span, C * size)  # (N, u, (c, a))
    return (x.transpose(1, 2) @ cols_m.to(x.dtype)).view(-1, C, size, size)  # (N, c, a, b)


def paste_patches(out: Tensor, patches: Tensor, ids: Tensor, keep: Tensor | None) -> Tensor:
    """Replace the 4x4 block of each patch id in `out` (B, C, H, W) by `patches` (N, C, 4, 4).

    Where `keep` (N,) is False the block keeps its value in `out`; that lets a static number of
    patches be written when some of them must not change the image. Written straight into the
    flat (B*C*H*W,) view, so the output is never transposed.
    """
    B, C, H, W = out.shape
    b, pixels, _ = window_pixels(ids, (H // 4, W // 4), 4, 4, 0, (H, W))  # (N, 4, 4)
    index = _channel_indices(out, b, pixels).reshape(-1)  # (C*N*16,)
    values = patches.transpose(0, 1).reshape(-1)  # (C*N*16,)
    flat = out.reshape(-1)
    if keep is not None:
        keep_pixels = keep[None, :, None, None].expand(C, -1, 4, 4).reshape(-1)
        values = torch.where(keep_pixels, values, flat[index])
    return flat.scatter(0, index, values).view(B, C, H, W)


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
        backbone_scale: float = 0.25,
    ) -> None:
        super().__init__()
        # Bounds how many base-resolution rows a half-resolution window reads (crop_resized).
        self.backbone_scale = backbone_scale
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
        if self.mode == "full":
            return self._refine_full(torch.cat([src, bgr], dim=1), pha, fgr, hid)

        err = F.interpolate(err, (H // 4, W // 4), mode="bilinear", align_corners=False)
        if self.mode == "sampling":
            ids, keep, ref = self._select_top_k(err)
        else:
            ids, keep, ref = self._select_over_threshold(err)

        coarse = F.interpolate(
            torch.cat([pha, fgr], dim=1), (H, W), mode="bilinear", align_corners=False
        )  # (B, 4, H, W)
        patches = self._refine_patches(ids, src, bgr, pha, fgr, hid)  # (N, 4, 4, 4)
        out = paste_patches(coarse, patches, ids, keep)
        return out[:, :1], out[:, 1:], ref

    def _select_top_k(self, err: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """The k largest error locations per image, k static (capped at the grid size)."""
        B = err.shape[0]
        err_flat = err.flatten(1)  # (B, Hq*Wq)
        grid_hw = err_flat.shape[1]
        k = min(self.patches_per_image, grid_hw)
        if self.tie_break == "lowest_index":
            # A stable descending sort keeps equal errors in index order.
            idx = err_flat.sort(dim=1, descending=True, stable=True).indices[:, :k]  # (B, k)
        else:
            # Exactly the reference's call on exactly its tensor: ties at the k-th value are
            # then broken the same way as the published implementation.
            idx = err_flat.topk(k, dim=1, sorted=False).indices  # (B, k)
        if self.prevent_oversampling:
            keep = err_flat.gather(1, idx) > 0  # (B, k)
        else:
            keep = torch.ones_like(idx, dtype=torch.bool)
        ref = torch.zeros_like(err_flat).scatter(1, idx, keep.to(err.dtype)).view_as(err)
        batch_offset = torch.arange(B, device=err.device)[:, None] * grid_hw
        ids = (idx + batch_offset).flatten()  # (B*k,)
        return ids, (keep.flatten() if self.prevent_oversampling else None), ref

    def _select_over_threshold(self, err: Tensor) -> tuple[Tensor, None, Tensor]:
        """Every location whose error exceeds the threshold (a data-dependent count)."""
        ref = err.gt(self.threshold).to(err.dtype)  # (B, 1, Hq, Wq)
        ids = torch.nonzero(ref.flatten()).squeeze(1)  # (N,)
        return ids, None, ref

    def _refine_patches(self, ids: Tensor, src: Tensor, bgr: Tensor, pha: Tensor, fgr: Tensor, hid: Tensor) -> Tensor:
        H, W = src.shape[2:]
        grid = (H // 4, W // 4)
        k3 = self.kernel_size == 3
        # Stage 1, half resolution: 8x8 windows (2x2 for kernel size 1) around each patch. The
        # 36 feature channels are resized per window from their base-resolution neighbourhood
        # (resizing whole maps to half resolution cost more than the refiner's convolutions).
        window = dict(grid=grid, stride=2, size=8 if k3 else 2, pad=3 if k3 else 0)
        # src and bgr are cropped one by one: concatenating them at full resolution cost more
        # than cropping them.
        x = torch.cat(
            [
                crop_resized(
                    torch.cat([hid, pha, fgr], dim=1),
                    ids,
                    out_hw=(H // 2, W // 2),
                    max_ratio=2 * self.backbone_scale,
                    **window,
                ),
                *(
                    crop_windows(
                        F.interpolate(image, (H // 2, W // 2), mode="bilinear", align_corners=False), ids, **window
                    )
                    for image in (src, bgr)
                ),
            ],
            dim=1,
        )  # (N, 42, 8, 8)
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 24, 6, 6)
        x = self.relu(self.bn2(self.conv2(x)))  # (N, 16, 4, 4)
        x = F.interpolate(x, 8 if k3 else 4, mode="nearest")  # (N, 16, 8, 8)
        # Stage 2, full resolution.
        y = torch.cat(
            [crop_windows(image, ids, grid, stride=4, size=8 if k3 else 4, pad=2 if k3 else 0) for image in (src, bgr)],
            dim=1,
        )  # (N, 6, 8, 8)
        x = self.relu(self.bn3(self.conv3(torch.cat([x, y], dim=1))))  # (N, 12, 6, 6)
        return self.conv4(x)  # (N, 4, 4, 4)

    def _refine_full(self, src_bgr: Tensor, pha: Tensor, fgr: Tensor, hid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The same convolutions over the whole image (equals sampling every patch)."""
        B, _, H, W = src_bgr.shape
        k3 = self.kernel_size == 3
        x = F.interpolate(torch.cat([hid, pha, fgr], dim=1), (H // 2, W // 2), mode="bilinear", align_corners=False)
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
        x = self.conv4(x)  # (B, 4, H, W)
        ref = torch.ones((B, 1, H // 4, W // 4), device=src_bgr.device, dtype=src_bgr.dtype)
        return x[:, :1], x[:, 1:], ref
