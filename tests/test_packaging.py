"""One distribution: the component folders install as mattex.* in editable installs (the regular
install is checked in the slim runtime's fresh venv, tests/test_slim_install.py)."""

import importlib.util
from pathlib import Path

from helpers import ROOT, SUBPACKAGES


def test_this_environment_maps_every_component_folder():
    # The suite runs against the README's install (editable): each subpackage is its top folder.
    for name in SUBPACKAGES:
        spec = importlib.util.find_spec(f"mattex.{name}")
        assert spec is not None, name
        assert Path(spec.origin).parent == ROOT / name.replace(".", "/"), spec.origin


def test_every_package_folder_is_a_listed_subpackage():
    # A folder with an __init__.py that pyproject.toml does not list would be left out of a
    # regular install (and out of the checks above).
    tops = [d for d in ROOT.iterdir() if (d / "__init__.py").exists() and d.name not in ("mattex", "tests")]
    folders = {
        init.parent.relative_to(ROOT).as_posix().replace("/", ".") for top in tops for init in top.rglob("__init__.py")
    }
    assert folders == set(SUBPACKAGES)
    assert "serving" in SUBPACKAGES
