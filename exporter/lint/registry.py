"""Findings, and the registry of named rules: each for one or more check targets, with what
TensorRT for RTX does with its breaking graph."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from mattex.contract import TENSORRT_TARGETS
from mattex.errors import ConfigError
from mattex.registry import Registry

from .view import ModelView


@dataclass
class Finding:
    node: str
    message: str
    severity: str = "error"
    rule: str = ""  # filled by the check from the rule's registered name
    basis: str = ""  # what the rule rests on, where TensorRT for RTX does not reject the graph itself


@dataclass
class CheckReport:
    target: str
    findings: list[Finding] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "passed": self.passed,
            "rules": self.rules,
            "findings": [asdict(f) for f in self.findings],
        }


Rule = Callable[[ModelView], Iterator[Finding]]


RTX_VERDICTS = ("rejects", "builds", "never finishes")


@dataclass(frozen=True)
class RuleInfo:
    """Which targets a rule checks, what TensorRT for RTX does with its breaking graph, and,
    where that is not a rejection, what the rule rests on."""

    targets: tuple[str, ...]
    rtx: str
    basis: str = ""
    catches: str = ""  # what the rule catches, for the docs' rule table


class RuleRegistry(Registry[Rule]):
    """Named rules, each for one or more check targets."""

    kind = "lint rule"

    def __init__(self) -> None:
        super().__init__()
        self.info: dict[str, RuleInfo] = {}

    def register(
        self, name: str, rtx: str, catches: str = "", targets: tuple[str, ...] = TENSORRT_TARGETS, basis: str = ""
    ):
        if rtx not in RTX_VERDICTS:
            raise ValueError(f"rule {name}: rtx must be one of {RTX_VERDICTS}")
        if rtx != "rejects" and not basis:
            raise ValueError(f"rule {name}: TensorRT for RTX does not reject its graph; say what it rests on")

        def add(fn: Rule) -> Rule:
            self.add(name, fn)
            self.info[name] = RuleInfo(targets, rtx, basis, catches)
            return fn

        return add

    def for_target(self, target: str) -> dict[str, Rule]:
        known = {t for info in self.info.values() for t in info.targets} | {"onnxruntime"}
        if target not in known:
            raise ConfigError(f"unknown check target {target!r}; choose one of {', '.join(sorted(known))}")
        return {name: self[name] for name, info in self.info.items() if target in info.targets}

    def targets_of(self, name: str) -> tuple[str, ...]:
        self[name]  # unknown names fail like everywhere else
        return self.info[name].targets


RULES = RuleRegistry()
