"""The refiner's building blocks against the whole-map operations they replace (tiny tensors)."""

import pytest
import torch
import torch.nn.functional as F

from mattex.model.refiner import (
    CHANNEL_BLOCK,
    Refiner,
    crop_resized,
    crop_windows,
    nearest_upsampled_kernels,
    paste_patches,
)


def whole_map_crops(x, ids, grid, stride, size, pad):
    """The reference's way: pad the whole map, then slice each patch's window. (N, C, s, s)"""
    padded = F.pad(x, (pad, pad, pad, pad))
    b, i, j = ids // (grid[0] * grid[1]), (ids // grid[1]) % grid[0], ids % grid[1]
    windows = [padded[bb, :, stride * ii :, stride * jj :][:, :size, :size] for bb, ii, jj in zip(b, i, j)]
    return torch.stack(windows)


GRID = (6, 8)  # the patch grid of a 24 x 32 image
IDS = torch.tensor([0, 7, 13, 40, 47, 48 + 5, 48 + 47])  # corners, edges, middle; both images


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_nearest_upsampled_kernels_equal_convolving_the_upsampled_input(kernel_size):
    torch.manual_seed(0)
    x, weight = torch.randn(5, 16, 4, 4), torch.randn(12, 16, kernel_size, kernel_size)
    upsampled = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight)
    phases = F.pixel_shuffle(F.conv2d(x, nearest_upsampled_kernels(weight)), 2)
    assert phases.shape == upsampled.shape
    torch.testing.assert_close(phases, upsampled, rtol=1e-5, atol=1e-5)  # float sums regrouped


def test_crop_windows_of_several_maps_equal_padding_and_slicing_each():
    torch.manual_seed(0)
    src, bgr = torch.rand(2, 3, 24, 32), torch.rand(2, 3, 24, 32)
    crops = crop_windows([src, bgr], IDS, GRID, stride=4, size=8, pad=2)
    assert crops.shape == (len(IDS), 6, 8, 8)
    expected = torch.cat([whole_map_crops(t, IDS, GRID, 4, 8, 2) for t in (src, bgr)], dim=1)
    assert torch.equal(crops, expected)


@pytest.mark.parametrize("scale", [0.25, 0.125])
def test_crop_resized_equals_cropping_the_resized_map_channels_last(scale):
    torch.manual_seed(0)
    H, W = 24 * 2, 32 * 2
    grid = (H // 4, W // 4)
    ids = torch.tensor([0, 5, 37, grid[0] * grid[1] - 1, grid[0] * grid[1] + 20])
    x = torch.rand(2, 5, int(H * scale), int(W * scale))
    got = crop_resized(x, ids, grid, out_hw=(H // 2, W // 2), stride=2, size=8, pad=3, max_ratio=2 * scale)
    half = F.interpolate(x, (H // 2, W // 2), mode="bilinear", align_corners=False)
    expected = whole_map_crops(half, ids, grid, 2, 8, 3).permute(0, 2, 3, 1)  # (N, s, s, C)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_paste_patches_writes_each_block_and_keeps_the_unkept():
    out = torch.zeros(2, 4, 24, 32)
    patches = torch.arange(len(IDS) * 4 * 16, dtype=torch.float32).view(len(IDS), 4, 4, 4)
    keep = torch.tensor([True, True, False, True, True, True, True])
    pasted = paste_patches(out, patches, IDS, keep)
    expected = out.clone()
    for n, patch_id in enumerate(IDS.tolist()):
        b, i, j = patch_id // 48, (patch_id // 8) % 6, patch_id % 8
        if keep[n]:
            expected[b, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4] = patches[n]
    assert torch.equal(pasted, expected)


def reference_refine_patches(refiner, ids, src, bgr, pha, fgr, hid):
    """The published formulation: the 42-channel concatenation, conv1, the nearest upsample,
    the 22-channel concatenation, conv3 (as model/reference_method.py runs them)."""
    H, W = src.shape[2:]
    grid = (H // 4, W // 4)
    half = [F.interpolate(t, (H // 2, W // 2), mode="bilinear", align_corners=False) for t in (src, bgr)]
    features = F.interpolate(torch.cat([hid, pha, fgr], 1), (H // 2, W // 2), mode="bilinear", align_corners=False)
    x = torch.cat([whole_map_crops(t, ids, grid, 2, 8, 3) for t in (features, *half)], dim=1)
    x = refiner.relu(refiner.bn1(refiner.conv1(x)))
    x = refiner.relu(refiner.bn2(refiner.conv2(x)))
    x = F.interpolate(x, 8, mode="nearest")
    y = torch.cat([whole_map_crops(t, ids, grid, 4, 8, 2) for t in (src, bgr)], dim=1)
    x = refiner.relu(refiner.bn3(refiner.conv3(torch.cat([x, y], dim=1))))
    return refiner.conv4(x)


@pytest.mark.parametrize("training", [False, True])
def test_refined_patches_equal_the_published_formulation(training):
    """Folded BatchNorm, zero-padded channels, conv1 as a sum of its parts and conv3 on phases:
    the same numbers as the reference's concatenations, in eval and (batch statistics) training."""
    torch.manual_seed(0)
    refiner = Refiner("sampling", 16 * len(IDS), 0.1, backbone_scale=0.25)
    with torch.no_grad():
        for bn in (refiner.bn1, refiner.bn2, refiner.bn3):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 2)
    refiner.train(training)
    src, bgr = torch.rand(2, 3, 24, 32), torch.rand(2, 3, 24, 32)
    pha, fgr, hid = torch.rand(2, 1, 6, 8), torch.rand(2, 3, 6, 8) - 0.5, torch.rand(2, 32, 6, 8)
    with torch.no_grad():
        got = refiner._refine_patches(IDS, src, bgr, pha, fgr, hid)
        expected = reference_refine_patches(refiner, IDS, src, bgr, pha, fgr, hid)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)


def test_no_refiner_convolution_reads_the_unblocked_channel_counts():
    """conv1 over 42 channels and conv3 over 22 ran on the CPU runtimes' generic kernels at about
    a third of the speed (benchmarks/refiner_profile.py): the features now arrive zero-padded to
    a whole block, and what is left is below one block, which the blocked kernels read as is."""
    shapes = []
    original = F.conv2d

    def recording_conv2d(x, weight, *args, **kwargs):
        shapes.append(tuple(weight.shape))
        return original(x, weight, *args, **kwargs)

    refiner = Refiner("sampling", 16 * 4, 0.1).eval()
    maps = torch.rand(1, 1, 4, 4), torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4), torch.rand(1, 32, 4, 4)
    F.conv2d = recording_conv2d
    try:
        with torch.no_grad():
            refiner(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), *maps)
    finally:
        F.conv2d = original
    in_channels = [shape[1] for shape in shapes]
    assert 36 + 12 in in_channels and CHANNEL_BLOCK == 16
    assert not {42, 36, 22} & set(in_channels), in_channels
