"""mattex.runtime: run exported mattex models on TensorRT or ONNX Runtime.

Never imports torch or onnx (a test guards it), so it embeds in slim deployment processes.
"""

from .io_spec import Profile, check_inputs
from .matter import Matter

__all__ = ["Matter", "Profile", "check_inputs"]
