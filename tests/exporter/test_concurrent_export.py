"""Two processes exporting to the same path at once: the file is always one whole export,
never a mix or a torn write, and no temporary file is left (writes go through mattex.files)."""

import subprocess
import sys

import onnx


def test_two_processes_exporting_to_one_path_leave_a_whole_file(tmp_path):
    out = tmp_path / "m.onnx"
    command = [
        sys.executable,
        "-m",
        "mattex.cli.main",
        "export",
        "--height",
        "64",
        "--width",
        "64",
        "--sample-pixels",
        "640",
        "--no-engine",
        "-o",
        str(out),
    ]
    first = subprocess.Popen(command + ["--kernel-size", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = subprocess.Popen(command + ["--debug-outputs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = [p.communicate(timeout=300) + (p.returncode,) for p in (first, second)]
    assert all(code == 0 for *_, code in results), [r[1][-2000:] for r in results]
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    outputs = [o.name for o in model.graph.output]
    assert outputs in (["pha", "fgr"], ["pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm"]), outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
