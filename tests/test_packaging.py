"""One distribution: the component folders install as mattex.* in editable installs (the regular
install is checked in the slim runtime's fresh venv, tests/test_slim_install.py)."""

import importlib.util
from pathlib import Path

from helpers import SUBPACKAGES

ROOT = Path(__file__).resolve().parents[1]


def test_this_environment_maps_every_component_folder():
    # The suite runs against the README's install (editable): each subpackage is its top folder.
    for name in SUBPACKAGES:
        spec = importlib.util.find_spec(f"mattex.{name}")
        assert spec is not None, name
        assert Path(spec.origin).parent == ROOT / name.replace(".", "/"), spec.origin
