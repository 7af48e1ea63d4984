"""`mattex.runtime` must import in a process where torch and onnx cannot be imported."""

import subprocess
import sys
import textwrap

BLOCKED = ("torch", "onnx", "onnxruntime.quantization", "torchvision")


def test_runtime_imports_with_torch_and_onnx_blocked():
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r} or name in {BLOCKED!r}:
                    raise ImportError(f"blocked import of {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import mattex.runtime
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker failed: torch imported")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx"))
        assert not loaded, loaded
        print("ok", mattex.runtime.__name__)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok mattex.runtime"


def test_every_import_in_the_runtime_resolves():
    """Code that runs only on a GPU (pinned memory, CUDA graphs) is not exercised here: at least
    every module it imports, at any depth of the function, must exist."""
    import ast
    import importlib.util
    from pathlib import Path

    import mattex.runtime

    root = Path(mattex.runtime.__file__).parent
    for source in root.rglob("*.py"):
        package = "mattex.runtime" + "".join(f".{p}" for p in source.relative_to(root).parent.parts)
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                name = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                assert importlib.util.find_spec(name) is not None, f"{source.name}: {name} does not exist"
