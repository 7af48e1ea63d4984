"""What the Python and C++ runtimes both know, read from mattex/shared_facts.json: the export
configuration's fields and types, the sidecar's rules and messages, the error classes with their
exit codes and C status values, the backends' ranks, the clean-plate aligner's tuning
(`FACTS["align"]`, read by mattex.runtime.align).

CMake turns the same file into the C++ runtime's headers (runtime/cpp/cmake/generate_facts.py),
so an edit there reaches both runtimes. Standard library only: the slim runtime imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

SOURCE = Path(__file__).with_name("shared_facts.json")
FACTS: dict = json.loads(SOURCE.read_text(encoding="utf-8"))

_TYPES = {"str": str, "float": float, "int": int, "bool": bool}


def message(section: str, name: str, /, **values: object) -> str:
    """The `section`'s message `name` with its {placeholders} filled, as the C++ runtime fills them."""
    return FACTS[section]["messages"][name].format(**values)


def config_types() -> dict[str, type]:
    """The export configuration's entries every reader may rely on, by Python type."""
    return {key: _TYPES[kind] for key, kind in FACTS["export_config"]["types"].items()}


def flat_keys() -> dict[str, str]:
    """metadata_props keys written beside export_config, by the configuration field each holds."""
    return dict(FACTS["export_config"]["flat_keys"])


def error_parents() -> dict[str, str | None]:
    """Every MattexError class by name, with the name of the class it derives from."""
    return {entry["name"]: entry["parent"] for entry in FACTS["errors"]}


def exit_code(error_name: str) -> int:
    """The CLI's exit code for a MattexError class (by name)."""
    return next(entry["exit_code"] for entry in FACTS["errors"] if entry["name"] == error_name)


def status_values() -> dict[str, int]:
    """The C API's status codes (mattex_status) by the name mattex_status_name gives them."""
    return {entry["name"]: entry["value"] for entry in FACTS["statuses"]}


def backend_rank(name: str, gpu: bool = False) -> int | None:
    """Where the automatic choice ranks a backend among those of a file's suffix (lower first; None:
    never chosen automatically, as engines, which their sidecar names); `gpu`: with a GPU to run on."""
    entry = next(entry for entry in FACTS["backends"] if entry["name"] == name)
    return entry.get("rank_gpu", entry.get("rank_cpu")) if gpu else entry.get("rank_cpu")
