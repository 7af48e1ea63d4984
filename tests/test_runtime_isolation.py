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
