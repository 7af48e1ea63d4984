"""The BGMv2 model in plain PyTorch: the reference every mattex export is checked against."""

from .backbones import BACKBONES
from .matting import MattingBase, MattingRefine, check_inputs
from .refiner import REFINE_MODES, Refiner

__all__ = ["BACKBONES", "REFINE_MODES", "MattingBase", "MattingRefine", "Refiner", "check_inputs"]
