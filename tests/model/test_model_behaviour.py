"""Refiner semantics beyond the golden files: static k, any batch, k > patches, bad input."""

import pytest
import torch
import torch.nn.functional as F

from mattex.errors import ConfigError, InputShapeError
from mattex.model import MattingBase, MattingRefine

H, W = 64, 96  # a 16 x 24 patch grid: 384 patches per image


def make(mode="sampling", **kwargs):
    torch.manual_seed(1)
    return MattingRefine("mobilenetv2", refine_mode=mode, **kwargs).eval()


def same_weights(target, source):
    target.load_state_dict(source.state_dict())
    return target.eval()


def inputs(batch=2, h=H, w=W, seed=2):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(batch, 3, h, w, generator=g)
    bgr = (src + 0.25 * torch.randn(batch, 3, h, w, generator=g)).clamp(0, 1)
    return src, bgr


def run(model, src, bgr):
    with torch.no_grad():
        return model(src, bgr)


# With these weights the raw error channel spans about -0.15..0.18 around -0.03.
MIXED = 0.0  # about a third of the patches have err > 0
POSITIVE = 0.5  # every err in (0, 1): no clamping, no ties
NONE = -1e3  # err_sm == 0 everywhere


def set_error_bias(model, value):
    """Set the decoder's error-channel bias to steer how many patches are eligible."""
    with torch.no_grad():
        model.decoder.conv4.bias[4] = value
    return model


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_sampling_every_patch_equals_full_mode(kernel_size):
    full = make("full", refine_kernel_size=kernel_size)
    sampling = same_weights(
        make(
            "sampling",
            refine_kernel_size=kernel_size,
            refine_sample_pixels=16 * 10_000,
            refine_prevent_oversampling=False,
        ),
        full,
    )
    src, bgr = inputs()
    a, b = run(full, src, bgr), run(sampling, src, bgr)
    assert torch.equal(b[5], torch.ones_like(b[5]))  # every patch selected
    for name, x, y in zip(("pha", "fgr"), a[:2], b[:2]):
        assert (x - y).abs().max() < 1e-5, name


@pytest.mark.parametrize("mode", ["sampling", "thresholding", "full"])
def test_batch_of_two_equals_two_batches_of_one(mode):
    model = make(mode, refine_sample_pixels=16 * 60)
    set_error_bias(model, MIXED)
    src, bgr = inputs(batch=2)
    both = run(model, src, bgr)
    for i in range(2):
        one = run(model, src[i : i + 1], bgr[i : i + 1])
        assert torch.equal(both[5][i : i + 1], one[5]), "ref_sm"
        for x, y in zip(both[:5], one[:5]):
            assert (x[i : i + 1] - y).abs().max() < 1e-5


@pytest.mark.parametrize("mode", ["sampling", "thresholding"])
def test_kernel_size_one_runs_and_refines(mode):
    model = make(mode, refine_kernel_size=1, refine_sample_pixels=16 * 50)
    pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm = run(model, *inputs())
    assert pha.shape == (2, 1, H, W) and fgr.shape == (2, 3, H, W)
    assert ref_sm.shape == (2, 1, H // 4, W // 4)
    assert torch.isfinite(pha).all() and torch.isfinite(fgr).all()


def test_k_larger_than_the_grid_selects_every_eligible_patch():
    model = set_error_bias(make(refine_sample_pixels=16 * 5_000), MIXED)
    src, bgr = inputs()
    *_, err_sm, ref_sm = run(model, src, bgr)
    err = F.interpolate(err_sm, (H // 4, W // 4), mode="bilinear", align_corners=False)
    assert 0 < int((err > 0).sum()) < err.numel()  # some eligible, some not
    assert torch.equal(ref_sm, (err > 0).float())


def test_sampling_selects_the_k_largest_errors():
    k = 100
    model = set_error_bias(make(refine_sample_pixels=16 * k, refine_prevent_oversampling=False), POSITIVE)
    *_, err_sm, ref_sm = run(model, *inputs())
    err = err_sm.flatten(1)  # backbone_scale 1/4: the error map is already on the patch grid
    sel = ref_sm.flatten(1).bool()
    assert sel.sum(1).tolist() == [k, k]
    for b in range(2):  # every selected error >= every unselected one
        assert err[b][sel[b]].min() >= err[b][~sel[b]].max()


def test_unselected_pixels_are_the_upsampled_coarse_result():
    model = set_error_bias(make(refine_sample_pixels=16 * 40), MIXED)
    src, bgr = inputs()
    pha, _, pha_sm, _, _, ref_sm = run(model, src, bgr)
    coarse = F.interpolate(pha_sm, (H, W), mode="bilinear", align_corners=False).clamp(0, 1)
    untouched = F.interpolate(ref_sm, (H, W), mode="nearest") == 0
    assert torch.equal(pha[untouched], coarse[untouched])
    assert not torch.equal(pha[~untouched], coarse[~untouched])  # refined patches changed


@pytest.mark.parametrize("mode", ["sampling", "thresholding"])
def test_nothing_selected_gives_the_upsampled_coarse_result(mode):
    model = set_error_bias(make(mode), NONE)
    src, bgr = inputs()
    pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm = run(model, src, bgr)
    assert torch.equal(err_sm, torch.zeros_like(err_sm))
    assert torch.equal(ref_sm, torch.zeros_like(ref_sm))
    coarse = F.interpolate(pha_sm, (H, W), mode="bilinear", align_corners=False).clamp(0, 1)
    assert torch.equal(pha, coarse)


def test_thresholding_selects_errors_over_the_threshold():
    model = set_error_bias(make("thresholding", refine_threshold=0.05), MIXED)
    *_, err_sm, ref_sm = run(model, *inputs())
    assert 0 < int(ref_sm.sum()) < ref_sm.numel()
    assert torch.equal(ref_sm, (err_sm > 0.05).float())


def test_outputs_have_the_reference_shapes():
    model = make(backbone_scale=1 / 8)
    outs = run(model, *inputs())
    shapes = [tuple(o.shape) for o in outs]
    assert shapes == [
        (2, 1, H, W),
        (2, 3, H, W),
        (2, 1, H // 8, W // 8),
        (2, 3, H // 8, W // 8),
        (2, 1, H // 8, W // 8),
        (2, 1, H // 4, W // 4),
    ]
    base = same_weights(MattingBase("mobilenetv2"), MattingBase("mobilenetv2"))
    with torch.no_grad():
        pha, fgr, err, hid = base(*inputs())
    assert (pha.shape, fgr.shape, err.shape, hid.shape) == ((2, 1, H, W), (2, 3, H, W), (2, 1, H, W), (2, 32, H, W))


@pytest.mark.parametrize(
    "src_shape, bgr_shape, message",
    [
        ((1, 3, 62, 96), (1, 3, 62, 96), "divisible by 4, got 62x96"),
        ((1, 3, 64, 90), (1, 3, 64, 90), "divisible by 4, got 64x90"),
        ((1, 3, 64, 96), (1, 3, 64, 92), "must have the same shape"),
        ((2, 3, 64, 96), (1, 3, 64, 96), "must have the same shape"),
        ((1, 4, 64, 96), (1, 4, 64, 96), "src must be (B, 3, H, W)"),
        ((3, 64, 96), (3, 64, 96), "src must be (B, 3, H, W)"),
    ],
)
def test_bad_input_shapes_raise_a_clear_error(src_shape, bgr_shape, message):
    with pytest.raises(InputShapeError) as e:
        make()(torch.rand(src_shape), torch.rand(bgr_shape))
    assert message in str(e.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backbone": "resnet18"}, "unknown backbone 'resnet18'"),
        ({"refine_mode": "everything"}, "unknown refine_mode 'everything'"),
        ({"refine_kernel_size": 5}, "refine_kernel_size must be 1 or 3"),
        ({"backbone_scale": 0.75}, "backbone_scale must be in (0, 1/2]"),
        ({"refine_sample_pixels": 8}, "refine_sample_pixels must be at least 16"),
    ],
)
def test_bad_configuration_raises_a_clear_error(kwargs, message):
    kwargs = {"backbone": "mobilenetv2", **kwargs}
    with pytest.raises(ConfigError) as e:
        MattingRefine(**kwargs)
    assert message in str(e.value)
