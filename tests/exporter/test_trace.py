"""The sampling refiner traces with a static patch count: no data-dependent shapes."""

import pytest
import torch
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

from mattex.model import MattingRefine

FORBIDDEN = ("nonzero", "unfold", "roi_align", "masked_select", "unique", "_local_scalar_dense")


def exported(model, h, w, dynamic_batch=False):
    x = torch.rand(2, 3, h, w)
    dims = {0: torch.export.Dim("batch", min=1, max=16)} if dynamic_batch else None
    shapes = {"src": dims, "bgr": dims} if dynamic_batch else None
    return torch.export.export(model, (x, x), dynamic_shapes=shapes)


def refiner_conv_batches(program):
    convs = [
        n
        for n in program.graph.nodes
        if n.op == "call_function" and ("conv2d" in str(n.target) or "convolution" in str(n.target))
    ]
    return [n.meta["val"].shape[0] for n in convs[-4:]]  # the refiner's conv1..conv4


def assert_static(program):
    """No data-dependent op and no shape that only the data decides."""
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert not [t for t in targets if any(f in t for f in FORBIDDEN)], targets
    for node in program.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            assert not free_unbacked_symbols(val), f"data-dependent shape at {node}"


# With the batch test below (64x96, kernel 3), each kernel size at a resolution of its own.
@pytest.mark.parametrize("kernel_size, h, w", [(3, 128, 160), (1, 64, 96)])
def test_sampling_traces_with_static_k(kernel_size, h, w):
    k = 60
    model = MattingRefine("mobilenetv2", refine_sample_pixels=16 * k, refine_kernel_size=kernel_size).eval()
    program = exported(model, h, w)
    assert_static(program)
    assert refiner_conv_batches(program) == [2 * k] * 4, (h, w)


def test_batch_stays_symbolic_and_patch_count_is_batch_times_k():
    model = MattingRefine("mobilenetv2", refine_sample_pixels=16 * 60).eval()
    program = exported(model, 64, 96, dynamic_batch=True)
    assert_static(program)
    batches = refiner_conv_batches(program)
    assert all(isinstance(b, torch.SymInt) and "60" in str(b) for b in batches), batches
