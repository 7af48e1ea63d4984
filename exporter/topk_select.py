"""Exact top-k selection for any k from TensorRT-friendly ONNX ops (no TopK, no NonZero).

TensorRT's TopK stops at K = 3840, and BGMv2 picks k = 5,000 (HD) or 20,000 (4K) patches. The
selected *set* is all the refiner needs, so it is rebuilt from counting ops:

1. The k-th largest value t per row, by bisection: `count(x >= mid) >= k` halves [min, max]
   each step. After `steps` halvings lo and hi are adjacent floats, so t is exact whenever the
   k-th value is at least (max - min) * 2**-(steps - 24) (about 1e-12 for 64 steps on [0, 1]).
2. Everything above t is selected; ties at t are taken lowest index first, as ONNX's TopK
   defines. A float32 CumSum (exact below 2**24 elements; TensorRT has no integer CumSum)
   gives each selected element its slot in [0, k); the others go to a discarded slot k.
3. ScatterElements writes element ids into k + 1 slots. When a row has fewer than k elements
   (an image with fewer patches than k), the spare slots repeat slot 0: a duplicate patch is
   refined and written twice with identical values, so the output is unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .graph_builder import GraphBuilder

FLOAT = onnx.TensorProto.FLOAT
INT64 = onnx.TensorProto.INT64


def build_threshold_select(b: GraphBuilder, x: gs.Tensor, k: int, steps: int) -> gs.Variable:
    """Indices (B, k) int64 of the k largest entries of each row of x (B, N): those above the
    k-th value in index order, then the ties, lowest index first; rows with N < k repeat their
    first index."""
    xf = b.op("Cast", [x], {"to": FLOAT})
    shape = b.op("Shape", [xf])
    n = b.op("Cast", [b.op("Slice", [shape, b.const([1], np.int64), b.const([2], np.int64)])],
             {"to": FLOAT})                                                   # (1,) N
    k_const = b.const([float(k)])
    k_eff = b.op("Min", [n, k_const])                                         # (1,) min(k, N)

    threshold = _kth_largest(b, xf, k_eff, steps)                             # (B, 1)

    above = b.op("Greater", [xf, threshold])
    tied = b.op("Equal", [xf, threshold])
    above_f = b.op("Cast", [above], {"to": FLOAT})
    tied_f = b.op("Cast", [tied], {"to": FLOAT})
    axis = b.const(1, np.int64)
    one = b.const(1.0)
    n_above = b.reduce("ReduceSum", above_f, axis=1)                          # (B, 1)
    slot_above = b.op("Sub", [b.op("CumSum", [above_f, axis]), one])
    slot_tied = b.op("Add", [n_above, b.op("Sub", [b.op("CumSum", [tied_f, axis]), one])])
    slot = b.op("Where", [above, slot_above, b.op("Where", [tied, slot_tied, k_const])])
    slot = b.op("Cast", [b.op("Min", [slot, k_const])], {"to": INT64})        # (B, N) in [0, k]

    element_ids = b.op("Sub", [b.op("CumSum", [b.op("ConstantOfShape", [shape],
                       {"value": onnx.helper.make_tensor("one", FLOAT, [1], [1.0])}), axis]), one])
    batch = b.op("Slice", [shape, b.const([0], np.int64), b.const([1], np.int64)])
    slots = b.op("ConstantOfShape", [b.op("Concat", [batch, b.const([k + 1], np.int64)], {"axis": 0})],
                 {"value": onnx.helper.make_tensor("zero", FLOAT, [1], [0.0])})
    slots = b.op("ScatterElements", [slots, slot, element_ids], {"axis": 1})  # (B, k + 1)
    chosen = b.op("Slice", [slots, b.const([0], np.int64), b.const([k], np.int64),
                            b.const([1], np.int64)])                          # (B, k)
    first = b.op("Slice", [slots, b.const([0], np.int64), b.const([1], np.int64),
                           b.const([1], np.int64)])                           # (B, 1)
    filled = b.op("Less", [b.const(np.arange(k, dtype=np.float32)), k_eff])  # (k,)
    chosen = b.op("Where", [filled, chosen, first])
    return b.op("Cast", [chosen], {"to": INT64})


def _kth_largest(b: GraphBuilder, xf, k_eff, steps: int):
    """Largest t with count(x >= t) >= k_eff per row: exactly the k-th largest value."""
    lo = b.reduce("ReduceMin", xf, axis=1)                                    # (B, 1)
    hi = b.reduce("ReduceMax", xf, axis=1)
    half = b.const(0.5)

    def enough_at_or_above(t):
        count = b.reduce("ReduceSum", b.op("Cast", [b.op("GreaterOrEqual", [xf, t])],
                                           {"to": FLOAT}), axis=1)
        return b.op("GreaterOrEqual", [count, k_eff])

    for _ in range(steps):
        mid = b.op("Add", [lo, b.op("Mul", [b.op("Sub", [hi, lo]), half])])
        ok = enough_at_or_above(mid)
        lo, hi = b.op("Where", [ok, mid, lo]), b.op("Where", [ok, hi, mid])
    return b.op("Where", [enough_at_or_above(hi), hi, lo])
