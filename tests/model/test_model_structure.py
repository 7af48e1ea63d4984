"""The model's state_dict is the published checkpoints' state_dict, key for key."""

import pytest

from helpers import manifest
from mattex.model import MattingBase, MattingRefine
from mattex.model.checkpoint import count_parameters

PARAMETERS = {"resnet50": 40_247_703, "resnet101": 59_239_831, "mobilenetv2": 5_006_839}


@pytest.mark.parametrize("backbone", sorted(PARAMETERS))
def test_state_dict_keys_and_shapes_equal_published_manifest(backbone):
    state = MattingRefine(backbone).state_dict()
    expected = manifest(backbone)
    assert list(state) == list(expected["keys"])  # same keys, same order
    assert {k: list(v.shape) for k, v in state.items()} == expected["keys"]
    assert len(state) == expected["num_keys"]


@pytest.mark.parametrize("backbone", sorted(PARAMETERS))
def test_parameter_counts_match_the_paper(backbone):
    model = MattingRefine(backbone)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[backbone]
    assert count_parameters(model.state_dict()) == PARAMETERS[backbone]


def test_refiner_has_15444_parameters():
    refiner = MattingRefine("mobilenetv2").refiner
    assert sum(p.numel() for p in refiner.parameters()) == 15_444


def test_base_is_the_refine_model_without_refiner():
    base = set(MattingBase("mobilenetv2").state_dict())
    refine = set(MattingRefine("mobilenetv2").state_dict())
    assert refine - base == {k for k in refine if k.startswith("refiner.")}
