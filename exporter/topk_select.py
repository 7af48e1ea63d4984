"""Exact top-k selection for any k from TensorRT-buildable ONNX ops (no TopK, NonZero or Loop).

TensorRT's TopK stops at K = 3840, and BGMv2 picks k = 5,000 (HD) or 20,000 (4K) patches. The
selected *set* is all the refiner needs, so it is rebuilt from counting ops:

1. The k-th largest value t of each row, exactly, in 33 counting steps. Each step asks whether
   at least k entries are >= a candidate (a compare and a ReduceSum):
   a. its power-of-two bracket [P[i], P[i + 1]): 10 steps of an index search over a constant
      ascending table P of 0 and +-2**e (e = -149..127) for the last entry with k entries >= it;
   b. its place inside the bracket: there floats are evenly spaced, width * 2**-23 apart, so 23
      halving steps `t += d_j * [count(x >= t + d_j) >= k]`, d_j = width * 2**-(j + 1), land on
      it exactly: every t + d_j is a representable float, so no rounding happens anywhere and
      every runtime computes the same t.
   Each step updates one tensor by arithmetic, without Where: TensorRT's builder (Myelin) takes
   time exponential in the number of steps when each step selects between two coupled states
   (a Where-based lo/hi bisection: 8 steps 1 s, 10 steps 14 s, 12 steps over 100 s).
2. Everything above t is selected; ties at t are taken lowest index first, as ONNX's TopK
   defines. A float32 CumSum (exact below 2**24 elements; TensorRT has no integer CumSum)
   gives each selected element its slot in [0, k); element i that is not selected goes to
   slot k + i, past the ones kept.
3. ScatterElements writes element ids into N + k slots, of which the first k are kept. Every
   index is distinct (no write order to depend on), and the buffer is at least as long as the
   indices along the axis, which TensorRT requires of ScatterElements. When a row has fewer
   than k elements (an image with fewer patches than k), every element is selected and the
   spare slots keep id 0, one of them: that patch is refined and written twice with the same
   values, so the output is unchanged.

Exact for finite inputs above -2**127 (the error map lies in [0, 1]); where a runtime flushes
subnormal floats to zero, it compares them as zeros.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .graph_builder import GraphBuilder

FLOAT = onnx.TensorProto.FLOAT
INT64 = onnx.TensorProto.INT64

# The selection's input (float32 scores, (B, N)) and output (int64 indices, (B, k)) are named
# `<scope>/scores` and `<scope>/indices`, so that `mattex verify` can read which patches a file
# selected (the exporter records the names in the file's metadata).
SCORES, INDICES = "scores", "indices"
# The name scope of the selection's nodes (`<TopK node>_select/...`): the precision passes keep
# it in float32 (its bisection needs float32 resolution; its CumSum counts patches).
SELECT_SCOPE = "_select"

MANTISSA_BITS = 23  # float32: steps (b) above
BRACKET_STEPS = 10  # the table below has 556 entries, padded to 2**10 with +inf


def power_of_two_brackets() -> tuple[np.ndarray, np.ndarray]:
    """The ascending table P (2**BRACKET_STEPS entries: -FLT_MAX, -2**127 .. -2**-149, 0,
    2**-149 .. 2**127, then +inf) and each bracket's width P[i + 1] - P[i] (0 past the end)."""
    exponents = np.arange(-149, 128, dtype=np.float64)
    powers = np.exp2(exponents)
    finite = np.concatenate([[-float(np.finfo(np.float32).max)], -powers[::-1], [0.0], powers])
    table = np.full(2**BRACKET_STEPS, np.inf)
    table[: finite.size] = finite
    widths = np.zeros_like(table)
    widths[: finite.size - 1] = np.diff(finite)
    widths[finite.size - 1] = float(np.finfo(np.float32).max) - 2.0**127
    return table.astype(np.float32), widths.astype(np.float32)


def build_threshold_select(b: GraphBuilder, x: gs.Tensor, k: int) -> gs.Variable:
    """Indices (B, k) int64 of the k largest entries of each row of x (B, N): those above the
    k-th value in index order, then the ties, lowest index first; rows with N < k select
    every element and fill the spare slots with index 0."""
    xf = b.op("Cast", [x], {"to": FLOAT})
    xf.name = f"{b.prefix}/{SCORES}"
    shape = b.op("Shape", [xf])
    n = b.op("Slice", [shape, b.const([1], np.int64), b.const([2], np.int64)])  # (1,) N
    k_const = b.const([float(k)])
    k_eff = b.op("Min", [b.op("Cast", [n], {"to": FLOAT}), k_const])  # (1,) min(k, N)

    threshold = _kth_largest(b, xf, k_eff)  # (B, 1)

    above = b.op("Greater", [xf, threshold])
    tied = b.op("Equal", [xf, threshold])
    axis = b.const(1, np.int64)
    one = b.const(1.0)

    def cumulative_slot(mask):  # the 0-based rank of each True entry in index order
        return b.op("Sub", [b.op("CumSum", [b.op("Cast", [mask], {"to": FLOAT}), axis]), one])

    n_above = b.reduce("ReduceSum", b.op("Cast", [above], {"to": FLOAT}), axis=1)  # (B, 1) < k
    slot_tied = b.op("Add", [n_above, cumulative_slot(tied)])
    element_ids = cumulative_slot(
        b.op("ConstantOfShape", [shape], {"value": onnx.helper.make_tensor("true", onnx.TensorProto.BOOL, [1], [True])})
    )
    taken_tie = b.op("And", [tied, b.op("Less", [slot_tied, k_const])])
    slot = b.op(
        "Where",
        [above, cumulative_slot(above), b.op("Where", [taken_tie, slot_tied, b.op("Add", [element_ids, k_const])])],
    )
    slot = b.op("Cast", [slot], {"to": INT64})  # (B, N) distinct

    batch = b.op("Slice", [shape, b.const([0], np.int64), b.const([1], np.int64)])
    slots = b.op(
        "ConstantOfShape",
        [b.op("Concat", [batch, b.op("Add", [n, b.const([k], np.int64)])], {"axis": 0})],
        {"value": onnx.helper.make_tensor("zero", FLOAT, [1], [0.0])},
    )
    slots = b.op("ScatterElements", [slots, slot, element_ids], {"axis": 1})  # (B, N + k)
    chosen = b.op("Slice", [slots, b.const([0], np.int64), b.const([k], np.int64), b.const([1], np.int64)])  # (B, k)
    indices = b.op("Cast", [chosen], {"to": INT64})
    indices.name = f"{b.prefix}/{INDICES}"
    return indices


def _kth_largest(b: GraphBuilder, xf, k_eff):
    """The largest float t with count(x >= t) >= k_eff per row: exactly the k-th largest."""

    def enough_at_or_above(t):  # (B, 1) 1.0 where at least k_eff entries are >= t
        count = b.reduce("ReduceSum", b.op("Cast", [b.op("GreaterOrEqual", [xf, t])], {"to": FLOAT}), axis=1)
        return b.op("Cast", [b.op("GreaterOrEqual", [count, k_eff])], {"to": FLOAT})

    table, widths = power_of_two_brackets()
    table_c, widths_c = b.const(table), b.const(widths)
    # (a) the bracket: index += step where P[index + step] still has k entries at or above it.
    index = b.const([[0.0]])  # broadcasts to (B, 1)
    for bit in reversed(range(BRACKET_STEPS)):
        step = b.const(float(2**bit))
        candidate = b.op("Add", [index, step])
        value = b.op("Gather", [table_c, b.op("Cast", [candidate], {"to": INT64})], {"axis": 0})
        index = b.op("Add", [index, b.op("Mul", [step, enough_at_or_above(value)])])
    at = b.op("Cast", [index], {"to": INT64})
    t = b.op("Gather", [table_c, at], {"axis": 0})  # (B, 1)
    width = b.op("Gather", [widths_c, at], {"axis": 0})
    # (b) inside the bracket: halving steps, each sum exactly representable.
    for j in range(MANTISSA_BITS):
        d = b.op("Mul", [width, b.const(2.0 ** -(j + 1))])
        t = b.op("Add", [t, b.op("Mul", [d, enough_at_or_above(b.op("Add", [t, d]))])])
    return t
