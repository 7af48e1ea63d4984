"""One distribution: the component folders install as mattex.* in regular and editable installs."""

import importlib.util
import subprocess
import sys
import venv
from pathlib import Path

import mattex

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("model", "cli", "exporter", "runtime", "runtime.backends", "plugins", "calibration", "measure")


def test_this_environment_maps_every_component_folder():
    # The suite runs against the README's install (editable): each subpackage is its top folder.
    for name in SUBPACKAGES:
        spec = importlib.util.find_spec(f"mattex.{name}")
        assert spec is not None, name
        assert Path(spec.origin).parent == ROOT / name.replace(".", "/"), spec.origin


def test_regular_wheel_install_in_a_clean_venv(tmp_path):
    wheel_dir = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("mattex-*.whl")
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", str(wheel), "numpy"], check=True, capture_output=True
    )
    # Only numpy beside it, no torch or onnx: the runtime must still import, and every
    # subpackage must be there.
    check = (
        "import importlib.util, mattex, mattex.runtime, mattex.runtime.backends\n"
        f"missing = [n for n in {SUBPACKAGES!r} if importlib.util.find_spec('mattex.' + n) is None]\n"
        "assert not missing, missing\n"
        "assert 'site-packages' in mattex.runtime.__file__, mattex.runtime.__file__\n"
        "print(mattex.__version__)\n"
    )
    result = subprocess.run([python, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == mattex.__version__
