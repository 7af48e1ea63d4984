"""The house rules that keep the layout readable: the import layering (import-linter contracts in
pyproject.toml), ruff's lint and format, one thin module per CLI command, and the docs building
with `mkdocs build --strict`."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_tree(into: Path) -> Path:
    """The installed layout (mattex/cli/..., mattex/runtime/...) as plain folders: pyproject maps
    each top-level folder to a subpackage, which an editable install resolves with an import hook
    that grimp (import-linter's graph builder) cannot walk."""
    for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        target = into.joinpath(*package.split("."))
        shutil.copytree(
            ROOT / folder,
            target,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "cpp", "weights", "*.json"),
        )
    return into


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # -S: no site-packages .pth files, so the editable install's import hook stays out and
    # `mattex` is the copied tree; the site-packages folder itself stays importable.
    path = os.pathsep.join([str(tree), sysconfig.get_paths()["purelib"]])
    code = (
        "import sys; from importlinter.cli import lint_imports_command; "
        f"sys.argv = ['lint-imports', '--no-cache', {str(ROOT / 'pyproject.toml')!r}]; lint_imports_command()"
    )
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": path},
        timeout=120,
    )


def test_the_import_layers_hold(tmp_path):
    result = lint_imports(package_tree(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line",
    [
        ("runtime/matter.py", "import torch"),  # the slim runtime must stay slim
        ("model/matting.py", "import mattex.runtime"),  # siblings do not import each other
        ("exporter/config.py", "import mattex.measure.budgets"),  # nothing below imports measuring
    ],
)
def test_a_planted_violation_breaks_a_contract(tmp_path, module, line):
    tree = package_tree(tmp_path)
    target = tree / "mattex" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(tree)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:]


def test_ruff_lint_and_format_are_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extra"
    lint = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout[-3000:]


def test_one_thin_module_per_command():
    from mattex.cli.main import app

    commands = {c.name.replace("-", "_") for c in app.registered_commands}
    modules = {p.stem for p in (ROOT / "cli").glob("*.py")} - {"__init__", "main", "common"}
    groups = {g.name for g in app.registered_groups}  # `mattex data ...`, `mattex cache ...`: one module each
    assert commands <= modules and groups <= modules and groups == {"data", "cache"}, (commands, groups, modules)
    for path in (ROOT / "cli").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 200, f"{path.name} is over 200 lines"


def test_the_docs_build_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is part of the test extra"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_readme_fits_on_a_screen():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


# Where a literal of a contract fact is not that fact: the published reference's own code, kept
# as written, and a random range of side lengths.
NOT_THE_FACT = {"model/reference_method.py", "calibration/train_demo.py"}


RTX = ('"tensorrt-rtx"', "'tensorrt-rtx'")  # mattex.contract.TENSORRT_RTX spelled out


def contract_literals(source: str) -> list[str]:
    """Each place in Python `source` that spells a contract fact instead of naming it: a patch
    fact (PATCH, PATCH_PIXELS, SIZE_MULTIPLE) as `% 4`, `// 4`, `// 16` or a message saying
    "divisible by 4", or TensorRT for RTX's backend name (TENSORRT_RTX) as a string."""
    import io
    import tokenize

    found = []
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type != tokenize.NL]
    for token, after in zip(tokens, tokens[1:]):
        if token.string in ("%", "//") and after.type == tokenize.NUMBER and after.string in ("4", "16"):
            found.append(f"line {token.start[0]}: {token.line.strip()}")
    for before, token, after in zip([None, *tokens], tokens, [*tokens[1:], None]):
        starts_statement = before is None or before.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        docstring = starts_statement and (after is None or after.type == tokenize.NEWLINE)
        if (
            token.type == tokenize.STRING
            and not docstring
            and ("divisible by 4" in token.string or token.string in RTX)
        ):
            found.append(f"line {token.start[0]}: {token.line.strip()}")
    return found


def test_contract_facts_are_named_where_they_are_used():
    planted = "x = h % 4\ny = k // 16\nz = f'must be divisible by 4'\nw = h % PATCH\nif b == 'tensorrt-rtx': pass\n"
    assert contract_literals(planted) == [
        "line 1: x = h % 4",
        "line 2: y = k // 16",
        "line 3: z = f'must be divisible by 4'",
        "line 5: if b == 'tensorrt-rtx': pass",
    ]
    places = []
    for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values():
        for path in (ROOT / folder).glob("*.py") if folder == "mattex" else (ROOT / folder).rglob("*.py"):
            name = path.relative_to(ROOT).as_posix()
            if name not in NOT_THE_FACT and name != "mattex/contract.py":
                places += [f"{name} {where}" for where in contract_literals(path.read_text())]
    assert not places, "use mattex.contract's names:\n" + "\n".join(places)
