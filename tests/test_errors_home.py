"""Every typed error has one home, `mattex/errors.py`: no product module defines a MattexError of
its own, the old import paths hand out the same classes, and a model file's error is not an
engine's (as in C++, where `Status::ModelFile` and `Status::CorruptEngine` differ)."""

import ast
import importlib

import pytest

from mattex import errors
from tests.test_layout import PYPROJECT, ROOT


def product_files():
    for folder in sorted(set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())):
        yield from sorted(p for p in (ROOT / folder).rglob("*.py") if "cpp" not in p.relative_to(ROOT).parts)


def error_names() -> set[str]:
    return {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)}


def test_no_product_module_defines_an_error_of_its_own():
    known = error_names()
    strays = []
    for path in product_files():
        if path == ROOT / "mattex" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & known:
                    strays.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert strays == []


@pytest.mark.parametrize(
    "module, name",
    [
        ("mattex.calibration.images", "DataError"),
        ("mattex.exporter.build", "EngineBuildError"),
        ("mattex.exporter.export", "ExportCheckError"),
        ("mattex.measure.verify", "VerifyError"),
    ],
)
def test_the_old_import_paths_hand_out_the_same_class(module, name):
    moved = getattr(errors, name)
    assert issubclass(moved, errors.MattexError)
    assert getattr(importlib.import_module(module), name) is moved


def test_a_model_file_error_is_not_an_engine_error():
    assert not issubclass(errors.ModelFileError, errors.CorruptEngineError)
    assert errors.ModelFileError.__mro__[1] is errors.MattexError


def test_export_check_error_lists_the_errors_of_the_report_alone():
    from types import SimpleNamespace as Finding

    findings = [
        Finding(rule="topk", node="TopK_1", message="k too large", severity="error"),
        Finding(rule="dtype", node="Cast_2", message="only a warning", severity="warning"),
    ]
    error = errors.ExportCheckError(Finding(target="tensorrt", findings=findings))
    assert str(error) == "exported graph fails `mattex check --target tensorrt`:\n  [topk] TopK_1: k too large"
