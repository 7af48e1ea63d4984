"""mattex: BackgroundMattingV2 to exact ONNX and TensorRT engines.

This module stays import-light (no torch, no onnx) so that `mattex.runtime` can be embedded
in deployment processes that carry neither.
"""

__version__ = "0.1.0"
