"""What the fuzzing tests share (test_fuzz.py, test_fuzz_media.py): hypothesis' settings, the
ways a file is damaged, and the one rule every reader is held to (only typed errors)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from mattex.errors import MattexError


def fuzz(examples: int, deadline_ms: int = 2000):
    return settings(
        max_examples=examples,
        deadline=deadline_ms,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


DAMAGE = st.one_of(
    st.tuples(st.just("random"), st.binary(max_size=2048)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(
        st.just("overwrite"),
        st.lists(
            st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=16)), min_size=1, max_size=4
        ),
    ),
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8),
    ),
)


def damage(seed: bytes, how) -> bytes:
    """The seed damaged: replaced by random bytes, truncated, with bytes overwritten, or with
    bits flipped (positions as fractions of its length)."""
    kind, arg = how
    if kind == "random":
        return arg
    if kind == "truncate":
        return seed[: int(arg * len(seed))]
    data = bytearray(seed)
    if kind == "overwrite":
        for at, patch in arg:
            i = int(at * len(data))
            data[i : i + len(patch)] = patch
    else:
        for at, bit in arg:
            data[int(at * len(data))] ^= 1 << bit
    return bytes(data)


def only_typed_errors(call) -> None:
    """Returns normally or raises a MattexError; anything else fails the test."""
    try:
        call()
    except MattexError:
        pass
