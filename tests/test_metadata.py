"""ExportMetadata holds the export configuration once: the flat metadata_props keys are derived
from it for other tools and never read back."""

import json
from dataclasses import asdict

import pytest

from mattex.errors import ModelFileError
from mattex.exporter.config import ExportConfig
from mattex.metadata import ExportMetadata


def metadata(**config) -> ExportMetadata:
    export_config = asdict(ExportConfig.from_preset("hd", **config))
    return ExportMetadata("0.1.0", "2.13.0", "demo 00", {"height_width_multiple": 4}, export_config)


def test_flat_keys_are_derived_from_the_export_configuration():
    props = metadata(backbone="resnet50", precision="fp16", height=240, width=320, sample_pixels=16_000).to_props()
    assert {
        k: props[k] for k in ("backbone", "precision", "refine_k", "trace_size", "refine_prevent_oversampling")
    } == {
        "backbone": "resnet50",
        "precision": "fp16",
        "refine_k": "1000",
        "trace_size": "240x320",
        "refine_prevent_oversampling": "true",
    }
    assert ExportMetadata.from_props(props) == metadata(
        backbone="resnet50", precision="fp16", height=240, width=320, sample_pixels=16_000
    )


def test_flat_keys_are_never_read_back():
    props = {**metadata().to_props(), "precision": "int8", "trace_size": "not a size"}
    del props["backbone"]
    meta = ExportMetadata.from_props(props)
    assert (meta.precision, meta.trace_size, meta.backbone) == ("fp32", (1080, 1920), "mobilenetv2")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"height": None, "precision": None}, "its mattex metadata 'export_config' lacks height, precision"),
        ({"height": "tall"}, "'export_config' is malformed (TypeError: height must be int, got \"tall\")"),
        ({"opset": True}, "'export_config' is malformed (TypeError: opset must be int, got true)"),
        ({"threshold": 0}, None),  # JSON has one number type: an integral threshold is a float
    ],
)
def test_an_export_configuration_lacking_or_mistyping_a_fact_is_refused(change, message):
    props = metadata().to_props()
    config = {**ExportMetadata.from_props(props).export_config, **change}
    props["export_config"] = json.dumps({k: v for k, v in config.items() if v is not None})
    if message is None:
        assert ExportMetadata.from_props(props, "m.onnx").refine_threshold == 0
        return
    with pytest.raises(ModelFileError) as raised:
        ExportMetadata.from_props(props, "m.onnx")
    assert str(raised.value).startswith("m.onnx: ") and message in str(raised.value)
