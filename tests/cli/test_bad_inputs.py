"""Every bad input a user can give, as a table: the typed error it must raise, a message naming
what is wrong, exit code 2 from the CLI, no traceback, and no file left behind.

CLI rows run `mattex ...` in-process, each one line of BAD_CLI; `{name}` in an argument is a
path in the `world` folder built below. The library's own rows: tests/runtime/test_bad_api_inputs.py.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mattex.cli.main import app

runner = CliRunner()
SIZE = ["--height", "64", "--width", "64", "--sample-pixels", "640", "--no-engine"]


@dataclasses.dataclass(frozen=True)
class Bad:
    id: str
    argv: list[str]
    error: str  # the type name the CLI prints ("error: <Type>: ...") or "usage" for option errors
    message: str  # a regex the message must match
    patch: str | None = None  # a failure injected into the writer (full disk, read-only folder)


def _onnx_error(command: str, kind: str) -> str:
    return "EngineBuildError" if command == "build" and kind in ("unknown-op", "dangling-input") else "ModelFileError"


BAD_CLI = [
    # ONNX files given to every command that reads one
    *[
        # build hands a graph to TensorRT's parser, whose refusal of a broken graph is an EngineBuildError
        Bad(f"{cmd}-{kind}", argv + [f"{{{kind}.onnx}}"] + rest, _onnx_error(cmd, kind), msg)
        for cmd, argv, rest in [
            ("verify", ["verify"], []),
            ("check", ["check"], []),
            ("build", ["build"], ["-o", "{out}/m.engine"]),
            ("run", ["run"], ["{frame.png}", "{bg.png}", "--out", "{out}/run"]),
            ("evaluate", ["evaluate"], ["--data", "{photomatte}", "--resolution", "64x64"]),
            ("serve", ["serve"], ["--http-port", "PORT", "--grpc-port", "PORT", "--metrics-port", "PORT"]),
            ("triton-repo", ["triton-repo"], ["--out", "{out}/repo"]),
        ]
        for kind, msg in [
            ("missing", "no such (ONNX|model) file"),
            ("empty", "is empty \\(0 bytes\\)"),
            ("truncated", "not a (readable|loadable) ONNX model"),
            ("corrupt", "not a (readable|loadable) ONNX model"),
            ("foreign", "not a mattex (export|model)"),
            # what onnx's loader refuses (external data) and what its checker, ONNX Runtime and
            # OpenVINO refuse (graphs): mattex exports with one thing broken
            ("external-data-missing", "external-data-missing.onnx is not a (readable|loadable) ONNX model"),
            ("external-data-outside", "external-data-outside.onnx is not a (readable|loadable) ONNX model"),
            ("unknown-op", "unknown-op.onnx is not a (valid|loadable) ONNX model|parser rejected unknown-op.onnx"),
            ("dangling-input", "dangling-input.onnx is not a (valid|loadable) ONNX model|parser rejected dangling-in"),
        ]
        if not (cmd == "check" and kind == "foreign")
    ],  # check lints any ONNX graph, by design
    # checkpoints
    Bad(
        "export-checkpoint-missing",
        ["export", "--checkpoint", "{missing.pth}", *SIZE, "-o", "{out}/m.onnx"],
        "CheckpointError",
        "checkpoint not found",
    ),
    Bad(
        "export-checkpoint-other-backbone",
        ["export", "--backbone", "resnet50", "--checkpoint", "{mobilenetv2.pth}", *SIZE, "-o", "{out}/m.onnx"],
        "CheckpointMismatchError",
        "missing keys",
    ),
    Bad(
        "export-checkpoint-half-written",
        ["export", "--checkpoint", "{half.pth}", *SIZE, "-o", "{out}/m.onnx"],
        "CheckpointError",
        "not a readable PyTorch checkpoint",
    ),
    Bad(
        "export-kernel-size-weights-do-not-fit",
        ["export", "--backbone", "mobilenetv2", "--kernel-size", "1", *SIZE, "-o", "{out}/m.onnx"],
        "CheckpointMismatchError",
        "refiner kernels are 3x3: use --kernel-size 3",
    ),
    Bad("info-half-written", ["info", "{half.pth}"], "CheckpointError", "not a readable PyTorch checkpoint"),
    Bad("info-not-a-checkpoint", ["info", "{frame.png}"], "CheckpointError", "not a readable PyTorch checkpoint"),
    Bad(
        "verify-checkpoint-of-other-weights",
        ["verify", "{good.onnx}", "--checkpoint", "{mobilenetv2.pth}"],
        "CheckpointError",
        "not the (checkpoint|demo) weights recorded|sha256",
    ),
    # calibration data
    Bad(
        "export-int8-corrupt-png",
        [
            "export",
            "--int8",
            "--calibration-data",
            "{calib_corrupt}",
            "--calibration-samples",
            "4",
            *SIZE,
            "-o",
            "{out}/m.onnx",
        ],
        "DataError",
        "cannot read image .*bad.png",
    ),
    Bad(
        "export-int8-empty-folder",
        ["export", "--int8", "--calibration-data", "{empty_dir}", *SIZE, "-o", "{out}/m.onnx"],
        "DataError",
        "no PNG images",
    ),
    Bad(
        "export-int8-missing-folder",
        ["export", "--int8", "--calibration-data", "{missing_dir}", *SIZE, "-o", "{out}/m.onnx"],
        "DataError",
        "not a folder|no PNG images|no such",
    ),
    Bad(
        "evaluate-fgr-pha-sizes-differ",
        ["evaluate", "--data", "{mixed_sizes}", "--resolution", "64x64"],
        "DataError",
        "foreground .* and alpha .* differ in size",
    ),
    Bad(
        "evaluate-rgb-not-rgba", ["evaluate", "--data", "{rgb_only}", "--resolution", "64x64"], "DataError", "not RGBA"
    ),
    # counts, sizes and batches
    Bad("data-synth-count-negative", ["data", "synth", "--out", "{out}/synth", "--count", "-1"], "usage", "--count"),
    Bad("data-synth-count-zero", ["data", "synth", "--out", "{out}/synth", "--count", "0"], "usage", "--count"),
    Bad("data-synth-height-zero", ["data", "synth", "--out", "{out}/synth", "--height", "0"], "usage", "--height"),
    Bad(
        "data-synth-video-frames-zero",
        ["data", "synth-video", "--out", "{out}/v.mp4", "--background", "{out}/b.png", "--frames", "0"],
        "usage",
        "--frames",
    ),
    Bad("verify-samples-zero", ["verify", "{good.onnx}", "--samples", "0"], "usage", "--samples"),
    Bad("verify-batch-zero", ["verify", "{good.onnx}", "--batch", "0"], "usage", "--batch"),
    Bad(
        "verify-height-not-divisible-by-4",
        ["verify", "{good.onnx}", "--height", "62"],
        "InputShapeError|ConfigError",
        "divisible by 4",
    ),
    Bad(
        "run-batch-zero",
        ["run", "{good.onnx}", "{frame.png}", "{bg.png}", "--out", "{out}/run", "--batch", "0"],
        "usage",
        "--batch",
    ),
    Bad("build-batch-zero", ["build", "{good.onnx}", "--batch", "0", "-o", "{out}/m.engine"], "usage", "--batch"),
    Bad(
        "evaluate-limit-zero",
        ["evaluate", "--data", "{photomatte}", "--limit", "0", "--resolution", "64x64"],
        "usage",
        "--limit",
    ),
    Bad(
        "export-calibration-samples-zero",
        [
            "export",
            "--int8",
            "--calibration-data",
            "{photomatte}",
            "--calibration-samples",
            "0",
            *SIZE,
            "-o",
            "{out}/m.onnx",
        ],
        "usage",
        "--calibration-samples",
    ),
    Bad(
        "export-size-not-divisible-by-4",
        ["export", "--height", "66", "--width", "64", "--no-engine", "-o", "{out}/m.onnx"],
        "ConfigError",
        "divisible by 4",
    ),
    Bad(
        "evaluate-resolution-not-divisible-by-4",
        ["evaluate", "--data", "{photomatte}", "--resolution", "65x64"],
        "ConfigError",
        "--resolution 65x64: .*divisible by 4",
    ),
    # where outputs go
    Bad("export-output-is-a-folder", ["export", *SIZE, "-o", "{a_folder}"], "OutputPathError", "is a folder"),
    Bad(
        "export-read-only-folder",
        ["export", *SIZE, "-o", "{out}/m.onnx"],
        "OutputPathError",
        "not writable",
        patch="EACCES",
    ),
    Bad(
        "export-disk-full",
        ["export", *SIZE, "-o", "{out}/m.onnx"],
        "OutputPathError",
        "No space left on device",
        patch="ENOSPC",
    ),
    Bad(
        "verify-report-disk-full",
        ["verify", "{good.onnx}", "--samples", "1", "--json", "{out}/r.json"],
        "OutputPathError",
        "No space left on device",
        patch="ENOSPC",
    ),
    Bad(
        "verify-report-is-a-folder",
        ["verify", "{good.onnx}", "--samples", "1", "--json", "{a_folder}"],
        "OutputPathError",
        "is a folder",
    ),
    Bad(
        "data-synth-disk-full",
        ["data", "synth", "--out", "{out}/synth", "--count", "2"],
        "OutputPathError",
        "No space left on device",
        patch="ENOSPC",
    ),
    Bad(
        "run-out-is-a-file",
        ["run", "{good.onnx}", "{frame.png}", "{bg.png}", "--out", "{frame.png}"],
        "OutputPathError",  # one rule for every output (mattex.files.check_output_folder)
        "is a file",
    ),
    # media for `mattex run`
    Bad(
        "run-missing-frames",
        ["run", "{good.onnx}", "{missing.mp4}", "{bg.png}", "--out", "{out}/run"],
        "MediaError",
        "no such file or folder",
    ),
    Bad(
        "run-corrupt-video",
        ["run", "{good.onnx}", "{corrupt.mp4}", "{bg.png}", "--out", "{out}/run"],
        "MediaError",
        "not a readable video",
    ),
    Bad(
        "run-frames-change-size-midway",
        ["run", "{good.onnx}", "{mixed_frames}", "{bg.png}", "--out", "{out}/run"],
        "MediaError",
        "the first image",
    ),
    Bad(
        "run-background-other-size",
        ["run", "{good.onnx}", "{frame.png}", "{bg_small.png}", "--out", "{out}/run"],
        "MediaError",
        "capture it at the same size",
    ),
]


def _state_dict(backbone: str) -> dict:
    from mattex.model.sources import WeightsSource, build_model

    return build_model(WeightsSource("random", seed=1), backbone=backbone).state_dict()


@pytest.fixture(scope="module")
def world(tmp_path_factory, small_file):
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    shutil.copy(small_file, root / "good.onnx")
    good = (root / "good.onnx").read_bytes()
    (root / "empty.onnx").write_bytes(b"")
    (root / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (root / "corrupt.onnx").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    onnx.save(
        onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])),
        root / "foreign.onnx",
    )
    _broken_exports(root)
    torch.save(_state_dict("mobilenetv2"), root / "mobilenetv2.pth")
    whole = (root / "mobilenetv2.pth").read_bytes()
    (root / "half.pth").write_bytes(whole[: len(whole) // 2])
    image = lambda h, w, c=3: Image.fromarray(rng.integers(0, 256, (h, w, c), dtype=np.uint8))  # noqa: E731
    image(64, 64).save(root / "frame.png")
    image(64, 64).save(root / "bg.png")
    image(32, 32).save(root / "bg_small.png")
    for name in ("photomatte", "calib_corrupt", "rgb_only", "mixed_frames", "empty_dir", "a_folder"):
        (root / name).mkdir()
    for i in range(3):
        image(80, 64, 4).save(root / "photomatte" / f"{i}.png")
        image(80, 64, 4).save(root / "calib_corrupt" / f"{i}.png")
        image(80, 64).save(root / "rgb_only" / f"{i}.png")
    (root / "calib_corrupt" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n then nothing a PNG has")
    (root / "mixed_sizes" / "fgr").mkdir(parents=True)
    (root / "mixed_sizes" / "pha").mkdir()
    image(80, 64).save(root / "mixed_sizes" / "fgr" / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 32), dtype=np.uint8)).save(root / "mixed_sizes" / "pha" / "a.png")
    image(64, 64).save(root / "mixed_frames" / "000.png")
    image(48, 64).save(root / "mixed_frames" / "001.png")
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (root / "out").mkdir()
    return root


def _fill(argv: list[str], root: Path) -> list[str]:
    def one(arg: str) -> str:
        if arg == "PORT":  # a free port (serve checks its ports before it opens the file)
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return str(s.getsockname()[1])
        if arg.startswith("{") and "}" in arg:
            name, rest = arg[1:].split("}", 1)
            return str(root / name) + rest
        return arg

    return [one(a) for a in argv]


def _inject(monkeypatch, failure: str) -> None:
    """The writer fails as a full disk or a read-only folder would, halfway through a write."""
    code = getattr(errno, failure)
    import mattex.files as files

    real = files.temporary_beside

    def failing(path):
        tmp = real(path)
        tmp.write_bytes(b"half of it")  # a partial file exists when the failure comes

        if failure == "EACCES":
            tmp.unlink()
            raise files.output_error(path, PermissionError(code, os.strerror(code)))
        raise OSError(code, os.strerror(code))

    if failure == "ENOSPC":

        def failing(path):  # noqa: F811 - the disk fills while the artifact is written
            tmp = real(path)
            with open(tmp, "wb") as f:  # not Path.write_bytes: a second call finds it already failing
                f.write(b"half of it")
            original = Path.write_bytes

            def full(self, data):
                original(self, data[: len(data) // 2])
                raise OSError(code, os.strerror(code))

            monkeypatch.setattr(Path, "write_bytes", full)
            import onnx as onnx_module

            def full_save(model, f, *args, **kwargs):
                Path(f).open("ab").write(b"more")
                raise OSError(code, os.strerror(code))

            monkeypatch.setattr(onnx_module, "save", full_save)
            monkeypatch.setattr(Image.Image, "save", lambda self, fp, *a, **k: full(Path(fp), b"xx"))
            return tmp

    monkeypatch.setattr(files, "temporary_beside", failing)


def _broken_exports(root: Path) -> None:
    """The good export with one thing broken, each a way onnx's loader or checker, ONNX Runtime
    or OpenVINO refuse a file: external data that is missing or outside the model's folder, an
    operator nobody registered, a node input nothing produces."""
    for folder in ("ext_missing", "ext_outside", "ext_data"):
        (root / folder).mkdir()
    model = onnx.load(root / "good.onnx")
    onnx.save(model, root / "ext_missing" / "m.onnx", save_as_external_data=True, location="m.data", size_threshold=0)
    (root / "ext_missing" / "m.data").unlink()
    (root / "ext_missing" / "m.onnx").rename(root / "external-data-missing.onnx")
    onnx.save(model, root / "ext_data" / "m.onnx", save_as_external_data=True, location="m.data", size_threshold=0)
    outside = onnx.load(root / "ext_data" / "m.onnx", load_external_data=False)
    for tensor in outside.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../ext_data/m.data"  # exists, but outside the model's folder
    onnx.save(outside, root / "ext_outside" / "m.onnx")
    (root / "ext_outside" / "m.onnx").rename(root / "ext_outside" / "external-data-outside.onnx")
    (root / "external-data-outside.onnx").symlink_to(root / "ext_outside" / "external-data-outside.onnx")
    unknown = onnx.load(root / "good.onnx")
    next(n for n in unknown.graph.node if n.op_type == "Conv").op_type = "NoSuchOp"
    onnx.save(unknown, root / "unknown-op.onnx")
    dangling = onnx.load(root / "good.onnx")
    next(n for n in dangling.graph.node if n.input).input[0] = "produced-by-nothing"
    onnx.save(dangling, root / "dangling-input.onnx")


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("bad", BAD_CLI, ids=[b.id for b in BAD_CLI])
def test_cli_bad_input(bad: Bad, world: Path, monkeypatch):
    before = _listing(world)
    if bad.patch:
        _inject(monkeypatch, bad.patch)
    result = runner.invoke(app, _fill(bad.argv, world))
    output = " ".join(result.output.split())
    assert result.exit_code == 2, (result.exit_code, output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    if bad.error == "usage":
        assert "Usage:" in result.output or "Invalid value" in output, output
    else:
        assert "error: " in output and any(f"{e}:" in output for e in bad.error.split("|")), output
    import re

    assert re.search(bad.message, output), (bad.message, output)
    left = _listing(world) - before
    assert not left, f"left behind: {sorted(left)}"


def test_the_table_is_at_least_forty_rows():
    assert len(BAD_CLI) >= 40, len(BAD_CLI)  # the library's own rows: tests/runtime/test_bad_api_inputs.py
    assert len({b.id for b in BAD_CLI}) == len(BAD_CLI)
