"""Published checkpoints load as they are; anything else is refused with a clear error."""

import os

import pytest
import torch

from mattex.errors import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError
from mattex.model import MattingRefine
from mattex.model.checkpoint import (
    describe_checkpoint,
    infer_backbone,
    load_matting_refine,
    read_state_dict,
)


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(3)
    return MattingRefine("mobilenetv2").eval()


@pytest.fixture
def saved(tmp_path, mobilenet):
    path = tmp_path / "pytorch_mobilenetv2.pth"
    torch.save(mobilenet.state_dict(), path)
    return path


def test_state_dict_round_trips_with_backbone_inferred(saved, mobilenet):
    model = load_matting_refine(saved)
    assert model.backbone_name == "mobilenetv2" and not model.training
    for key, value in mobilenet.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("backbone", ["resnet50", "resnet101", "mobilenetv2"])
def test_backbone_is_inferred_from_keys(backbone):
    assert infer_backbone(MattingRefine(backbone).state_dict()) == backbone


def test_refine_options_pass_through(saved):
    model = load_matting_refine(saved, backbone_scale=1 / 8, refine_mode="thresholding")
    assert model.backbone_scale == 1 / 8 and model.refiner.mode == "thresholding"


def test_renamed_key_is_reported_as_missing_and_unexpected(tmp_path, mobilenet):
    state = mobilenet.state_dict()
    state["refiner.conv9.weight"] = state.pop("refiner.conv1.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointMismatchError) as e:
        load_matting_refine(tmp_path / "renamed.pth")
    assert e.value.missing == ["refiner.conv1.weight"]
    assert e.value.unexpected == ["refiner.conv9.weight"]
    assert "missing keys (1):\n    refiner.conv1.weight" in str(e.value)
    assert "unexpected keys (1):\n    refiner.conv9.weight" in str(e.value)


def test_wrong_shape_is_reported_with_both_shapes(tmp_path, mobilenet):
    state = mobilenet.state_dict()
    state["decoder.conv4.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(CheckpointMismatchError) as e:
        load_matting_refine(tmp_path / "shape.pth")
    assert e.value.mismatched == [("decoder.conv4.bias", (7,), (37,))]
    assert "decoder.conv4.bias: (7,) vs (37,)" in str(e.value)


def test_explicit_wrong_backbone_lists_the_differences(saved):
    with pytest.raises(CheckpointMismatchError) as e:
        load_matting_refine(saved, backbone="resnet50")
    assert "backbone.layer1.0.conv1.weight" in e.value.missing
    assert "backbone.features.0.0.weight" in e.value.unexpected


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (os.system, ("touch mattex-was-pwned",))


def test_pickled_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"weight": torch.zeros(1), "payload": _RunsCodeWhenUnpickled()}, "evil.pth")
    with pytest.raises(UnsafeCheckpointError) as e:
        read_state_dict("evil.pth")
    assert "weights_only=True" in str(e.value) and "posix.system" in str(e.value)
    assert not (tmp_path / "mattex-was-pwned").exists()


def test_pickled_plain_object_is_refused(tmp_path):
    torch.save({"model": MattingRefine("mobilenetv2")}, tmp_path / "module.pth")
    with pytest.raises(UnsafeCheckpointError):
        read_state_dict(tmp_path / "module.pth")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint" * 10])
def test_corrupt_file_is_a_checkpoint_error(tmp_path, content):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "bad.pth")


def test_missing_file_and_non_dict_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_state_dict(tmp_path / "nope.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        read_state_dict(tmp_path / "tensor.pth")


def test_unknown_keys_cannot_infer_backbone():
    with pytest.raises(CheckpointError, match="cannot tell the backbone"):
        infer_backbone({"encoder.weight": torch.zeros(1)})


def test_torchscript_archive_loads_its_weights(tmp_path, mobilenet):
    # The published torchscript_<backbone>_fp16.pth holds half weights: read as float32.
    x = torch.rand(1, 3, 64, 64)
    traced = torch.jit.trace(MattingRefine("mobilenetv2", refine_mode="full").eval(), (x, x), check_trace=False)
    traced.load_state_dict(mobilenet.state_dict())
    traced.half().save(str(tmp_path / "torchscript_mobilenetv2_fp16.pth"))
    model = load_matting_refine(tmp_path / "torchscript_mobilenetv2_fp16.pth")
    for key, value in mobilenet.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(model.state_dict()[key], expected), key
    facts = describe_checkpoint(tmp_path / "torchscript_mobilenetv2_fp16.pth")
    assert facts["format"] == "torchscript" and facts["keys_match"]
