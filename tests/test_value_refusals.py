"""Issue 47, items 2-4: values that cannot work are refused where they are given (in the library,
so Python callers get the CLI's refusals), metadata is strict JSON, Triton repositories are what
Triton accepts, and messages name the real cause (the file and field, the byte order, the value
at full precision, height x width, the backbone, a next step that can run).

Each test names the row of the issue's table it proves. None exports a model: the library is
called on hand-made metadata, sidecars and state_dict keys, and the CLI only where the row is
about it."""

from __future__ import annotations

import json
import math
import re
import resource
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers import engine_with_sidecar, manifest
from mattex.cli.common import as_flags
from mattex.cli.main import app
from mattex.errors import ConfigError, CorruptEngineError, InputShapeError, InputValueError, MediaError, ModelFileError
from mattex.exporter.config import ExportConfig
from mattex.metadata import ExportMetadata

runner = CliRunner()


def one_line(result) -> str:
    return " ".join(result.output.split())


# -- values refused where they are given ---------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("threshold", math.nan),
        ("threshold", 2.0),
        ("threshold", -0.5),
        ("backbone_scale", math.nan),
        ("backbone_scale", 0.0),
        ("backbone_scale", 0.75),
        ("sample_pixels", -5),
        ("kernel_size", 2),
    ],
)
def test_export_config_refuses_values_no_model_can_have(option, value):
    """Row `--refine-threshold nan (and 2)`: refused by ExportConfig itself, naming the option
    and the value, before any tracing (the library caller gets what the CLI user gets)."""
    config = ExportConfig(refine_mode="thresholding", target="onnxruntime", height=96, width=128, sample_pixels=1600)
    setattr(config, option, value)
    with pytest.raises(ConfigError, match=rf"`{option}` must be .*got {value!r}"):
        config.validate()


def test_export_cli_refuses_a_nan_threshold_before_writing_anything(tmp_path):
    """Row `--refine-threshold nan`: exit 2 naming --refine-threshold and nan; no file."""
    out = tmp_path / "m.onnx"
    argv = ["export", "--refine-mode", "thresholding", "--target", "onnxruntime", "--refine-threshold", "nan"]
    result = runner.invoke(app, [*argv, "--no-engine", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "ConfigError: --refine-threshold must be in [0, 1)" in one_line(result) and "got nan" in one_line(result)
    assert list(tmp_path.iterdir()) == []


def _metadata(**config) -> ExportMetadata:
    values = {**asdict(ExportConfig(height=96, width=128, sample_pixels=1600)), **config}
    return ExportMetadata("0.1.0", "2.0", "demo 0", {"inputs": {}}, values)


def test_metadata_is_written_as_strict_json():
    """Row `export_config holds a bare NaN`: never written (json.dumps would write `NaN`)."""
    with pytest.raises(ValueError, match="not JSON compliant"):
        _metadata(threshold=math.nan).to_props()
    assert json.loads(_metadata().to_props()["export_config"])["threshold"] == 0.1


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_metadata_with_a_non_json_number_is_refused_naming_the_file_and_field(constant):
    """Row `export_config holds a bare NaN`: a file written before (or by hand) is refused when
    read, as the C++ runtime's parser (nlohmann::json) refuses it, naming the file and field."""
    props = _metadata().to_props()
    props["export_config"] = props["export_config"].replace('"threshold": 0.1', f'"threshold": {constant}')
    with pytest.raises(
        ModelFileError, match=rf"m.onnx: its mattex metadata 'export_config' .*{constant} is not a JSON"
    ):
        ExportMetadata.from_props(props, "m.onnx")


@pytest.mark.parametrize(
    ("field", "value", "want"),
    [
        ("height", 63, "a positive multiple of 4"),
        ("sample_pixels", -5, "at least 16"),
        ("threshold", 1.5, r"in \[0, 1\)"),
        ("backbone_scale", 2.0, r"in \(0, 1/2\]"),
    ],
)
def test_edited_export_config_values_name_the_file_and_its_metadata(field, value, want):
    """Row `a file whose export_config was edited (height 63, sample_pixels -5)`: the message
    names the file, its metadata and the field, and reads as no option of the command line
    (as_flags leaves it alone: it holds no `option` in backticks)."""
    props = _metadata(**{field: value}).to_props()
    with pytest.raises(ModelFileError) as caught:
        ExportMetadata.from_props(props, "edited.onnx")
    message = str(caught.value)
    assert message.startswith(f"edited.onnx: its mattex metadata 'export_config' field '{field}' must be ")
    assert re.search(want, message) and f"got {value!r}" in message
    assert as_flags(message) == message


# -- buffers that cannot be allocated ------------------------------------------------------------

ADDRESS_SPACE_CAP = 6 * 2**30  # torch, ONNX Runtime and the CLI fit; the sizes below do not


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


def _mattex_capped(*argv: str) -> subprocess.CompletedProcess:
    """`mattex ARGV` in its own process under an address-space cap, so that a regression (an
    attempt to allocate) fails this test instead of the machine."""
    code = "import sys; from mattex.cli.main import main; sys.argv[0] = 'mattex'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, preexec_fn=_capped
    )


@pytest.mark.parametrize(
    ("argv", "needs"),
    [
        (["bench", "{model}", "--resolution", "100000x100000"], "bench at 100000x100000, batch 1 needs at least"),
        (
            ["verify", "{model}", "--height", "40000", "--width", "40000"],
            "verify at 40000x40000, batch 1 needs at least",
        ),
    ],
    ids=["bench", "verify"],
)
def test_sizes_whose_buffers_cannot_be_allocated_are_a_resource_error(tmp_path, argv, needs):
    """Row `bench --resolution 100000x100000, verify --height 40000 --width 40000`: a
    ResourceError naming the size and the bytes, exit 2, before anything is allocated (numpy's
    MemoryError was a traceback with exit 1, which the docs give to a finding)."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"the checks come before the file is read")
    result = _mattex_capped(*[a.replace("{model}", str(model)) for a in argv])
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output
    assert f"error: ResourceError: {needs}" in output and "GiB" in output and "bytes" in output, output
    assert "Traceback" not in output


def test_require_memory_names_what_and_how_much():
    from mattex.errors import ResourceError
    from mattex.memory import require_memory

    require_memory("a small buffer", 1024)
    with pytest.raises(ResourceError, match=r"a huge buffer needs at least 1,024.0 GiB \(1,099,511,627,776 bytes\)"):
        require_memory("a huge buffer", 2**40)


# -- Triton repositories -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x\ny", "a b", "a/b", ".hidden", "", 'q"uote', "n" * 256, "é"])
def test_triton_model_names_are_triton_s(tmp_path, name):
    """Row `triton-repo --name $'x\\ny'`: refused by name (it was a config.pbtxt Triton rejects),
    nothing written."""
    from mattex.serving.repository import RepositoryConfig, write_repository

    out = tmp_path / "repo"
    with pytest.raises(ConfigError, match="is not a Triton model name"):
        write_repository(RepositoryConfig(engine_with_sidecar(tmp_path), out, name=name, max_batch=2))
    assert not out.exists()


def test_triton_repo_cli_refuses_a_name_with_a_newline(tmp_path):
    result = runner.invoke(app, ["triton-repo", str(tmp_path / "m.onnx"), "--out", str(tmp_path), "--name", "x\ny"])
    assert result.exit_code == 2 and "ConfigError: --name 'x\\ny' is not a Triton model name" in one_line(result)


def test_good_triton_model_names_are_kept(tmp_path):
    from mattex.serving.repository import RepositoryConfig

    for name in ("matte", "bgm_resnet50-hd.v2", "0", "n" * 255):
        RepositoryConfig(tmp_path / "m.onnx", tmp_path, name=name).validate()


def test_max_batch_size_comes_from_the_engine_for_the_python_backend_too(tmp_path):
    """Row `triton-repo s.engine --backend python on an engine built for batch 1`: the Python
    repository of an engine refuses a max_batch over its profiles, as the TensorRT one does, and
    writes the engine's batch when it fits."""
    from mattex.serving.repository import RepositoryConfig, write_repository

    engine = engine_with_sidecar(tmp_path)  # profiles up to batch 4 and 2: it takes batch 2 at most
    with pytest.raises(ConfigError, match="`max_batch` 4 exceeds the engine's largest batch 2"):
        write_repository(RepositoryConfig(engine, tmp_path / "repo", backend="python", max_batch=4))
    assert not (tmp_path / "repo").exists()
    folder = write_repository(RepositoryConfig(engine, tmp_path / "repo", backend="python", max_batch=2))
    assert "max_batch_size: 2\n" in (folder / "config.pbtxt").read_text()


@pytest.mark.parametrize(
    ("profile", "problem"),
    [
        ({"min": [-1, 720, 1280], "opt": [1, 1080, 1920], "max": [4, 1080, 1920]}, "outside 1..65536"),
        ({"min": [1, 720, 1280], "opt": [1, 1080, 1920], "max": [1_000_000_000, 1080, 1920]}, "outside 1..65536"),
        ({"min": [1, 720, 1280], "opt": [1, 2160, 1920], "max": [4, 1080, 1920]}, "height min 720, opt 2160, max 1080"),
        ({"min": [4, 720, 1280], "opt": [1, 1080, 1920], "max": [4, 1080, 1920]}, "batch min 4, opt 1, max 4"),
    ],
)
def test_a_sidecar_s_profiles_are_checked_for_sense(tmp_path, profile, problem):
    """Row `a hand-edited sidecar with impossible profiles (negative, 1e9)`: refused when read,
    naming the field and the profile."""
    from mattex.runtime.sidecar import load_sidecar

    engine = engine_with_sidecar(tmp_path)
    sidecar = Path(str(engine) + ".json")
    data = json.loads(sidecar.read_text())
    data["profiles"][1] = profile
    sidecar.write_text(json.dumps(data))
    with pytest.raises(CorruptEngineError, match=rf"field 'profiles' must be sensible \(.*{problem}.* in profile 1\)"):
        load_sidecar(engine)


# -- messages that name the real cause -----------------------------------------------------------


def test_a_big_endian_float32_is_named_with_its_byte_order():
    """Row `Matter given big-endian float32`: was "src must be float32, got float32"."""
    from mattex.runtime.io_spec import check_inputs

    frame = np.zeros((1, 3, 8, 8), dtype=">f4")
    with pytest.raises(InputShapeError, match=r"src must be float32, got float32 \(big-endian, '>f4'"):
        check_inputs({"src": frame, "bgr": frame.astype(np.float32)})


def test_an_out_of_range_value_is_shown_at_full_precision():
    """Row `Matter given 1.0000001`: was "(min 1, max 1)"."""
    from mattex.runtime.io_spec import check_values

    src = np.full((1, 3, 4, 4), 1.0000001, np.float32)
    with pytest.raises(InputValueError, match=r"src has values outside \[0, 1\] \(min 1.0000001192092896, max 1.00"):
        check_values({"src": src, "bgr": np.zeros_like(src)})


def test_synth_video_says_height_x_width(tmp_path):
    """Row `data synth-video --height 66 --width 64` said "64x66": height x width, as every
    other message."""
    out, background = tmp_path / "clip.mp4", tmp_path / "bg.png"
    argv = ["data", "synth-video", "--out", str(out), "--background", str(background), "--frames", "1"]
    result = runner.invoke(app, [*argv, "--height", "72", "--width", "64"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 frames of 72x64 (height x width)" in one_line(result)
    from mattex.calibration.synthetic import write_synthetic_video

    with pytest.raises(ConfigError, match=r"got 0 frames of 72x8 \(height x width\)"):
        write_synthetic_video(out, background, frames=0, height=72, width=8)


def test_a_folder_of_images_of_two_sizes_says_height_x_width(tmp_path):
    from PIL import Image

    from mattex.runtime.media import open_source

    Image.new("RGB", (8, 12)).save(tmp_path / "a.png")  # PIL takes (width, height)
    Image.new("RGB", (16, 12)).save(tmp_path / "b.png")
    with pytest.raises(MediaError, match=r"b.png is 12x16, the first image 12x8 \(height x width\)"):
        list(open_source(tmp_path).frames())


@pytest.mark.parametrize(
    ("backbone", "dropped"),
    [
        ("mobilenetv2", "backbone.features.0.0.weight"),
        ("resnet50", "backbone.layer1.0.conv1.weight"),
        ("resnet101", "backbone.layer3.22.conv1.weight"),
    ],
)
def test_the_backbone_is_told_from_the_keys_as_a_whole(backbone, dropped):
    """Row `mattex info on a checkpoint missing one key`: "cannot tell the backbone" although
    381 of its keys named it; the key each was told by before is the one missing here."""
    from mattex.model.checkpoint import infer_backbone

    state = {key: torch.empty(0) for key in manifest(backbone)["keys"] if key != dropped}
    assert infer_backbone(state) == backbone


def test_info_names_the_backbone_of_a_checkpoint_missing_one_key(tmp_path):
    """The row through `mattex info`: the backbone inferred, the missing key listed (exit 1, a
    finding), not "cannot tell the backbone" (exit 2)."""
    from mattex.model.checkpoint import read_state_dict

    state = read_state_dict(Path(__file__).parents[1] / "model" / "weights" / "demo_mobilenetv2.pth")
    del state["backbone.features.0.0.weight"]
    torch.save(state, tmp_path / "w.pth")
    result = runner.invoke(app, ["info", str(tmp_path / "w.pth"), "--json"])
    assert result.exit_code == 1, result.output
    facts = json.loads(result.output)
    assert facts["backbone"] == "mobilenetv2" and facts["missing"] == ["backbone.features.0.0.weight"]


def _steps(path: str, checkpoint: str | None = None, **config) -> list[str]:
    from mattex.exporter.workflow import ExportOutcome, _next_steps

    outcome = ExportOutcome(SimpleNamespace(path=Path(path)), ExportConfig(height=96, width=128, **config))
    return _next_steps(outcome, checkpoint, "96x128")


def test_next_steps_can_run_for_the_file_written():
    """Row `export of a thresholding file for --target onnxruntime`: no `mattex build` (the
    NonZero a thresholding file holds cannot build); a TensorRT file without an engine gets it."""
    onnxruntime = _steps("m.onnx", refine_mode="thresholding", target="onnxruntime")
    assert onnxruntime == ["mattex check m.onnx --target onnxruntime", "mattex verify m.onnx"]
    assert any(step.startswith("mattex build m.onnx --profile 96x128") for step in _steps("m.onnx"))


def test_next_steps_are_quoted_for_a_shell():
    """Row `an output path with spaces`: each step pastes into a shell as the arguments meant."""
    steps = _steps("my models/m 1.onnx", checkpoint="w eights.pth")
    for step in steps:
        words = shlex.split(step.split("  #")[0])
        assert words[2] == "my models/m 1.onnx", step
    assert shlex.split(steps[1])[-2:] == ["--checkpoint", "w eights.pth"]
