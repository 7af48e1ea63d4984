"""The slim runtime installs slim: a fresh virtual environment, the README's runtime-only install
command run as written from this checkout, then what a deployment machine does with it (mattex run,
mattex bench, Matter in Python), and what it cannot do said in one line naming the extra."""

import json
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def readme_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text().split(f"<!-- {marker} -->", 1)[1]
    return text.split("```bash", 1)[1].split("```", 1)[0].strip()


@pytest.fixture(scope="module")
def slim(tmp_path_factory):
    """A virtual environment of this Python with `pip install .` (the README's runtime-only
    install) run from the checkout."""
    env = tmp_path_factory.mktemp("slim") / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    command = shlex.split(readme_command("install:runtime"))
    assert command[:2] == ["pip", "install"], command
    done = subprocess.run(
        [str(env / "bin" / "python"), "-m", *command, "-q"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return env


def run(env: Path, *args: str) -> subprocess.CompletedProcess:
    # Outside the checkout, whose mattex/ folder would shadow the installed package.
    return subprocess.run([str(env / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=300, cwd=env)


def test_the_runtime_alone_is_installed(slim):
    names = ("torch", "onnx", "scipy", "onnx_graphsurgeon")
    code = f"import importlib.util as u; print(*[n for n in {names!r} if u.find_spec(n)])"
    done = run(slim, "python", "-c", code)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_every_component_folder_installs_as_a_subpackage(slim):
    """A regular (not editable) install: each component folder is a mattex.* package in
    site-packages, and the version is this checkout's."""
    import mattex
    from helpers import SUBPACKAGES

    check = (
        # The files, not find_spec: finding mattex.exporter.lint would import its parent, which
        # needs the export extra.
        "import pathlib, mattex, mattex.runtime\n"
        "root = pathlib.Path(mattex.__file__).parent\n"
        f"missing = [n for n in {SUBPACKAGES!r} if not (root / n.replace('.', '/') / '__init__.py').is_file()]\n"
        "assert not missing, missing\n"
        "assert 'site-packages' in mattex.runtime.__file__, mattex.runtime.__file__\n"
        "print(mattex.__version__)\n"
    )
    done = run(slim, "python", "-c", check)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mattex.__version__


def test_matter_run_and_bench_work_without_torch(slim, small_file, tmp_path):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    src = bgr.copy()
    src[20:70, 40:90] = (200, 60, 40)
    Image.fromarray(src).save(tmp_path / "frame.png")
    Image.fromarray(bgr).save(tmp_path / "bg.png")
    done = run(
        slim,
        "mattex",
        "run",
        str(small_file),
        str(tmp_path / "frame.png"),
        str(tmp_path / "bg.png"),
        "--out",
        str(tmp_path / "out"),
        "--outputs",
        "pha",
        "--json",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["frames"] == 1 and (tmp_path / "out" / "pha" / "frame.png").is_file()

    done = run(slim, "mattex", "bench", str(small_file), "--resolution", "96x128", "--rounds", "1", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert "onnxruntime cpu" in {row["runner"] for row in report["rows"]}
    assert any('"mattex[export]"' in skip["why"] for skip in report["skipped"] if skip["runner"] == "pytorch")

    code = (
        "import numpy as np; from PIL import Image; from mattex.runtime import Matter\n"
        "f = lambda p: np.asarray(Image.open(p))[None]\n"
        f"out = Matter.open({str(small_file)!r}).matte_frames(f({str(tmp_path / 'frame.png')!r}), "
        f"f({str(tmp_path / 'bg.png')!r}))\n"
        f"np.save({str(tmp_path / 'pha.npy')!r}, out['pha'])"
    )
    done = run(slim, "python", "-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    from mattex.runtime import Matter

    want = Matter.open(small_file, backend="onnxruntime").matte_frames(np.asarray(src)[None], np.asarray(bgr)[None])
    np.testing.assert_allclose(np.load(tmp_path / "pha.npy"), want["pha"], atol=1e-5)


def test_what_needs_an_extra_says_which(slim, tmp_path):
    done = run(slim, "mattex", "export", "--height", "64", "--width", "64", "-o", str(tmp_path / "m.onnx"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "ExtraNotInstalledError: mattex export needs the export extra" in done.stderr
    assert 'pip install "mattex[export]"' in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m.onnx").exists()
    for command in (["verify", "m.onnx"], ["info", "w.pth"], ["evaluate", "--data", "d"], ["check", "m.onnx"]):
        done = run(slim, "mattex", *command)
        assert done.returncode == 2 and "ExtraNotInstalledError" in done.stderr, (command, done.stderr)
    done = run(slim, "mattex", "serve", "m.onnx")
    assert done.returncode == 2 and "ExtraNotInstalledError: mattex serve needs the serve extra" in done.stderr
    assert 'pip install "mattex[serve]"' in done.stderr and "Traceback" not in done.stderr
    help_text = run(slim, "mattex", "--help").stdout
    for command in ("info", "export", "check", "build", "verify", "run", "bench", "evaluate", "data"):
        assert f" {command} " in help_text, command


def test_the_readme_names_the_runtime_install():
    assert readme_command("install:runtime") == "pip install ."
    assert sys.version_info >= (3, 10)
