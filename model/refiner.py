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

from mattex.contract import PATCH, PATCH_PIXELS
from mattex.errors import ConfigError

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
    (N, C, *pixels.shape[1:]). Gathering with them reads x in place and writes the crops
    channels-first, so neither side is transposed."""
    B, C, H, W = x.shape
    base = b * (C * H * W) + pixels  # (N, s, s)
    channels = torch.arange(C, device=x.device) * (H * W)
    return base[:, None] + channels.view(1, C, *([1] * (base.dim() - 1)))


def crop_windows(maps: list[Tensor], ids: Tensor, grid: tuple[int, int], stride: int, size: int, pad: int) -> Tensor:
    """Crop each patch's window from every map (each (B, C, Hx, Wx), all one shape) as if
    zero-padded by `pad`, without padding or transposing a map; the maps share one index
    computation. Returns their channels side by side: (N, len(maps) * C, size, size)."""
    b, pixels, inside = window_pixels(ids, grid, stride, size, pad, tuple(maps[0].shape[2:]))
    index = _channel_indices(maps[0], b, pixels)  # (N, C, s, s)
    crops = torch.cat([x.reshape(-1)[index] for x in maps], dim=1)
    if pad:
        crops = torch.where(inside[:, None], crops, torch.zeros((), dtype=crops.dtype, device=crops.device))
    return crops


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
    Each product reads its weights transposed, which the runtimes fuse, and the windows come out
    channels-last, the layout both CPU runtimes' convolutions read (their channels-first form
    cost a layout reorder on OpenVINO). Of the forms tried (two products per channel, four
    gathered taps, one Kronecker product per patch, this) this ran fastest on both ONNX Runtime
    and OpenVINO (HD, k = 5,000: 44 and 27 ms; two products per channel: 66 and 52).
    Returns (N, size, size, C), equal to the whole-map path up to float rounding.
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
    x = (rows_m.to(x.dtype).transpose(1, 2) @ neighbourhood).view(-1, size, span, C)  # (N, a, u, c)
    return cols_m.to(x.dtype).transpose(1, 2)[:, None] @ x  # (N, a, b, c)


def paste_patches(out: Tensor, patches: Tensor, ids: Tensor, keep: Tensor | None) -> Tensor:
    """Replace the 4x4 block of each patch id in `out` (B, C, H, W) by `patches` (N, C, 4, 4).

    Where `keep` (N,) is False the block keeps its value in `out`; that lets a static number of
    patches be written when some of them must not change the image. Written straight into the
    flat (B*C*H*W,) view, so the output is never transposed.
    """
    B, C, H, W = out.shape
    b, pixels, _ = window_pixels(ids, (H // PATCH, W // PATCH), PATCH, PATCH, 0, (H, W))  # (N, 4, 4)
    index = _channel_indices(out, b, pixels).reshape(-1)  # (N*C*16,)
    values = patches.reshape(-1)  # (N*C*16,)
    flat = out.reshape(-1)
    if keep is not None:
        keep_pixels = keep[:, None, None, None].expand(-1, C, 4, 4).reshape(-1)
        values = torch.where(keep_pixels, values, flat[index])
    return flat.scatter(0, index, values).view(B, C, H, W)


def nearest_upsampled_kernels(weight: Tensor) -> Tensor:
    """Kernels that compute conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight)
    (unpadded, odd kernel size K) as pixel_shuffle(conv2d(x, kernels), 2), without the
    upsampled copy: (4 * O, C, K // 2 + 1, K // 2 + 1) from weight (O, C, K, K).

    Output row 2m + p (phase p) reads upsampled rows 2m + p + j, which are source rows
    m + (p + j) // 2: each phase's kernel sums the taps that land on one source row. Four
    small convolutions on the 4x4 input replace one on the 8x8 upsampled input, with 2.25x
    fewer multiplications, and the upsample (a slow Interpolate on OpenVINO) is gone.
    """
    out_channels, C, K, _ = weight.shape
    size = K // 2 + 1
    lands = torch.zeros(2, size, K, dtype=weight.dtype, device=weight.device)  # (phase, row, tap)
    for phase in range(2):
        for tap in range(K):
            lands[phase, (phase + tap) // 2, tap] = 1
    kernels = torch.einsum("pak,qbl,ockl->opqcab", lands, lands, weight)  # (O, p, q, C, a, b)
    return kernels.reshape(out_channels * 4, C, size, size)  # pixel_shuffle's channel order: o * 4 + p * 2 + q


# The channel multiple the refiner's convolutions read: the block of ONNX Runtime's NCHWc kernels
# (8 on AVX2, 16 on AVX-512) and of OpenVINO's; with another count they fall back to generic
# kernels at about a third of the speed. Zero channels (with zero weights: exact) fill the rest.
CHANNEL_BLOCK = 16
IMAGE_CHANNELS = 6  # src and bgr side by side, the last inputs of conv1 and conv3


def _padding(channels: int) -> int:
    return -channels % CHANNEL_BLOCK


def _pad_in_channels(weight: Tensor) -> Tensor:
    """weight (O, C, k, k) with zero input channels appended up to a multiple of CHANNEL_BLOCK."""
    out_channels, C, K, _ = weight.shape
    # cat with a zero tensor of static size, not F.pad: the ONNX exporter needs the kernel's shape
    return torch.cat([weight, weight.new_zeros(out_channels, _padding(C), K, K)], dim=1)


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
        return self.sample_pixels // PATCH_PIXELS

    def forward(
        self, src: Tensor, bgr: Tensor, pha: Tensor, fgr: Tensor, err: Tensor, hid: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """src, bgr: (B, 3, H, W); pha, err: (B, 1, h, w); fgr: (B, 3, h, w) residual;
        hid: (B, 32, h, w). Returns pha (B, 1, H, W), fgr residual (B, 3, H, W) and the
        selection map ref (B, 1, H/4, W/4)."""
        H, W = src.shape[2:]
        if self.mode == "full":
            return self._refine_full(torch.cat([src, bgr], dim=1), pha, fgr, hid)

        err = F.interpolate(err, (H // PATCH, W // PATCH), mode="bilinear", align_corners=False)
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
        grid = (H // PATCH, W // PATCH)
        k3 = self.kernel_size == 3
        # Stage 1, half resolution: 8x8 windows (2x2 for kernel size 1) around each patch. The
        # 36 feature channels are resized per window from their base-resolution neighbourhood
        # (resizing whole maps to half resolution cost more than the refiner's convolutions),
        # with zero channels added on the small base-resolution map up to a multiple of
        # CHANNEL_BLOCK, so the CPU runtimes run the convolution with their blocked kernels.
        window = dict(grid=grid, stride=2, size=8 if k3 else 2, pad=3 if k3 else 0)
        # channel counts from the weights, not from tensor shapes: a trace keeps them static
        n_features = self.conv1.in_channels - IMAGE_CHANNELS  # hid, pha, fgr: 36
        features = F.pad(torch.cat([hid, pha, fgr], dim=1), (0, 0, 0, 0, 0, _padding(n_features)))  # (B, 48, h, w)
        features = crop_resized(
            features, ids, out_hw=(H // 2, W // 2), max_ratio=2 * self.backbone_scale, **window
        )  # (N, 8, 8, 48) channels-last
        images = crop_windows(
            [F.interpolate(t, (H // 2, W // 2), mode="bilinear", align_corners=False) for t in (src, bgr)],
            ids,
            **window,
        )  # (N, 6, 8, 8)
        # conv1 over the concatenation [features, images] is the sum of its parts' convolutions:
        # no 42-channel copy of every window is made.
        weight, bias = self._folded(self.conv1.weight, self.bn1)  # (24, 42, k, k)
        x = F.conv2d(features.permute(0, 3, 1, 2), _pad_in_channels(weight[:, :n_features]))
        x = self._bn_relu(x + F.conv2d(images, weight[:, n_features:], bias), bias, self.bn1)  # (N, 24, 6, 6)
        x = self.relu(self.bn2(self.conv2(x)))  # (N, 16, 4, 4)
        # Stage 2, full resolution: conv3 over [nearest 2x upsample of x, src and bgr windows],
        # the upsample folded into conv3's kernels (nearest_upsampled_kernels).
        images = crop_windows([src, bgr], ids, grid, stride=4, size=8 if k3 else 4, pad=2 if k3 else 0)  # (N, 6, 8, 8)
        weight, bias = self._folded(self.conv3.weight, self.bn3)  # (12, 22, k, k)
        upsampled = self.conv3.in_channels - IMAGE_CHANNELS
        x = F.pixel_shuffle(F.conv2d(x, nearest_upsampled_kernels(weight[:, :upsampled])), 2)
        x = self._bn_relu(x + F.conv2d(images, weight[:, upsampled:], bias), bias, self.bn3)  # (N, 12, 6, 6)
        return self.conv4(x)  # (N, 4, 4, 4)

    def _folded(self, weight: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor | None]:
        """The convolution's weight with `bn` folded in, and the bias that goes with it; in
        training (batch statistics) the weight unchanged and no bias, for _bn_relu to apply bn."""
        if self.training:
            return weight, None
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale

    def _bn_relu(self, x: Tensor, folded_bias: Tensor | None, bn: nn.BatchNorm2d) -> Tensor:
        return self.relu(x if folded_bias is not None else bn(x))

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
        ref = torch.ones((B, 1, H // PATCH, W // PATCH), device=src_bgr.device, dtype=src_bgr.dtype)
        return x[:, :1], x[:, 1:], ref
