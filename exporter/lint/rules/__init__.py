"""The rules, by family; importing this package registers them all (in this order)."""

from . import domains, indexing, ops, quantization, shapes  # noqa: F401
