"""The BGMv2 model in plain PyTorch: the reference every mattex export is checked against."""

from mattex.contract import BACKBONES, REFINE_MODES

from .matting import MattingBase, MattingRefine, check_inputs
from .refiner import Refiner

__all__ = ["BACKBONES", "REFINE_MODES", "MattingBase", "MattingRefine", "Refiner", "check_inputs"]
