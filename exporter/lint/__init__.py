"""`mattex check`: a static linter of the rules TensorRT's ONNX parser and builder impose.

Each rule is a small function over the model (`view.ModelView`) that yields findings; `RULES`
(`registry`) is their registry (unknown or duplicate names fail loudly) and names each finding
after its rule. Every rule declares what TensorRT for RTX, the real parser and builder on every
machine, does with the graph the rule exists to catch (`rtx`: "rejects", "builds" or "never
finishes"); tests/exporter/test_lint_oracle.py builds each rule's breaking graph with it and holds
the declaration to the verdict. A rule TensorRT for RTX does not confirm says what it rests on
(`basis`): TensorRT 10/11's parser table, or what mattex's runtime needs. The rules live by
family in `rules/`; `check` runs them.
"""

from . import rules  # noqa: F401  (registers every rule)
from .check import RULES_TABLE_MARKERS, CheckReport, check_file, check_model, rules_markdown
from .registry import RULES, Finding, RuleInfo, RuleRegistry
from .view import ModelView, node_attrs, node_label

__all__ = [
    "RULES",
    "RULES_TABLE_MARKERS",
    "CheckReport",
    "Finding",
    "ModelView",
    "RuleInfo",
    "RuleRegistry",
    "check_file",
    "check_model",
    "node_attrs",
    "node_label",
    "rules_markdown",
]
