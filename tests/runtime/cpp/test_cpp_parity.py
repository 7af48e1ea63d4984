"""The C++ runtime computes what the Python runtime computes: Matter::run / matteFrames, the C
API from C and from Python (ctypes), on the same files and inputs, equal to Python's
Matter.open(path, backend="openvino") within 1e-6; threads, and memory over 1,000 frames."""

import numpy as np
import pytest

from mattex.runtime import Matter

SHAPES = [(2, 64, 64), (1, 96, 128)]  # batch 2 at the trace size; another size the file accepts
TOLERANCE = 1e-6


def inputs(kind: str, batch: int, height: int, width: int):
    """A background and a frame that differs from it in the top half, so patches get refined."""
    rng = np.random.default_rng(batch * 1000 + height)
    if kind == "frames":
        bgr = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
        src = bgr.copy()
        src[:, : height // 2] = rng.integers(0, 256, (batch, height // 2, width, 3), dtype=np.uint8)
    else:
        bgr = rng.random((batch, 3, height, width), dtype=np.float32)
        src = bgr.copy()
        src[:, :, : height // 2] = rng.random((batch, 3, height // 2, width), dtype=np.float32)
    return src, bgr


CASES = [(kind, *shape) for kind in ("float", "frames") for shape in SHAPES]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One OpenVINO model cache for the module, C++ and Python alike: each file compiles once."""
    return tmp_path_factory.mktemp("openvino-cache")


def python_outputs(matter, kind, src, bgr):
    out = matter.matte_frames(src, bgr) if kind == "frames" else matter.matte_floats(src, bgr)
    return {name: np.asarray(out[name], np.float32) for name in ("pha", "fgr")}


@pytest.mark.parametrize("model", ["fp32", "fp16", "fp16-io16", "frames"])
def test_cpp_and_c_api_equal_python(cpp_build, cpp_models, model, tmp_path, cache):
    """Float buffers (run) and uint8 frames (matteFrames) into every kind of file, at two sizes
    and batch 2: the file's own I/O (float32, float16, uint8) is reached through the runtime's
    conversions. C++ (mattex_probe) and C (c_api_check, compiled by gcc) each open the file once."""
    matter = Matter.open(cpp_models[model], backend="openvino", cache_dir=cache)
    expected = []
    for i, (kind, batch, height, width) in enumerate(CASES):
        src, bgr = inputs(kind, batch, height, width)
        src.tofile(tmp_path / f"{i}.src.bin")
        bgr.tofile(tmp_path / f"{i}.bgr.bin")
        expected.append(python_outputs(matter, kind, src, bgr))
        assert expected[-1]["pha"].std() > 0.01  # a matte, not a constant the parity would hide
    (tmp_path / "cases").write_text("".join(f"{kind} {b} {h} {w}\n" for kind, b, h, w in CASES))
    env = {"MATTEX_CACHE": str(cache.parent / "cpp-cache")}
    cpp_build.run("mattex_probe", "run", cpp_models[model], tmp_path, env=env)
    cpp_build.run("c_api_check", cpp_models[model], tmp_path, env=env)
    for i, case in enumerate(CASES):
        for language in ("cpp", "c"):
            for name, want in expected[i].items():
                got = np.fromfile(tmp_path / f"{i}.{name}.{language}.bin", np.float32).reshape(want.shape)
                np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=f"{language} {name} {case}")


def test_c_api_through_ctypes_equals_python(c_api, cpp_models, cache):
    for model, kind in [("fp16", "float"), ("frames", "frames"), ("fp32", "frames")]:
        status, handle = c_api.open(cpp_models[model], cache_dir=cache)
        assert status == 0, c_api.error(status)
        info = c_api.info(handle)
        precision = b"fp32" if model == "frames" else model.encode()
        assert (info.backend, info.precision, info.size_multiple) == (b"openvino", precision, 4)
        python = Matter.open(cpp_models[model], backend="openvino", cache_dir=cache)
        try:
            for batch, height, width in SHAPES:
                src, bgr = inputs(kind, batch, height, width)
                status, pha, fgr = c_api.matte(handle, src, bgr)
                assert status == 0, c_api.error(status)
                expected = python_outputs(python, kind, src, bgr)
                np.testing.assert_allclose(pha, expected["pha"], rtol=0, atol=TOLERANCE)
                np.testing.assert_allclose(fgr, expected["fgr"], rtol=0, atol=TOLERANCE)
        finally:
            c_api.close(handle)
    import mattex

    assert c_api.version() == mattex.__version__


def test_c_api_refuses_buffers_of_the_wrong_size_and_keeps_working(c_api, cpp_models, cache):
    status, handle = c_api.open(cpp_models["fp32"], cache_dir=cache)
    assert status == 0, c_api.error(status)
    try:
        src, bgr = inputs("float", 1, 64, 64)
        for counts, what in [((64 * 64 - 1, None), "pha"), ((None, 3), "fgr")]:
            status, _, _ = c_api.matte(handle, src, bgr, *counts)
            assert c_api.error(status).startswith("InputShapeError: ") and what in c_api.error(status)
        status, pha, _ = c_api.matte(handle, src[:, :, :, :60].copy(), bgr[:, :, :, :60].copy())  # width 60: fine
        assert status == 0, c_api.error(status)
        status, _, _ = c_api.matte(handle, src[:, :, :62].copy(), bgr[:, :, :62].copy())
        assert c_api.error(status) == (
            "InputShapeError: src and bgr height and width must be divisible by 4, got 62x64"
        ), c_api.error(status)
        status, pha, _ = c_api.matte(handle, src, bgr)  # the handle survives every refusal
        assert status == 0 and pha.std() > 0.01
    finally:
        c_api.close(handle)
    c_api.close(None)  # closing NULL is a no-op


def test_threads_sharing_one_matter_or_each_their_own_give_identical_results(cpp_build, cpp_models, cache):
    out = cpp_build.run("mattex_probe", "threads", cpp_models["fp32"], 64, 64, env={"MATTEX_CACHE": str(cache)})
    assert out.stdout.strip() == "identical"


def test_a_thousand_frames_keep_resident_memory_flat(cpp_build, cpp_models, cache):
    out = cpp_build.run("mattex_probe", "loop", cpp_models["fp32"], 32, 32, 1000, env={"MATTEX_CACHE": str(cache)})
    label, after_100, after_1000 = out.stdout.split()
    assert label == "rss"
    assert int(after_1000) < 1.05 * int(after_100), out.stdout


def test_cpp_and_python_share_one_cache_entry_per_file(cpp_build, cpp_models, tmp_path):
    """The C++ runtime compiles into the entry Python's model cache names for the file (same
    key), marks it used and holds it while compiling; Python then reads the same compiled blob."""
    from mattex.runtime.model_cache import entries, entry_key

    cache = tmp_path / "openvino"
    cpp_build.run("mattex_probe", "open", cpp_models["fp32"], env={"MATTEX_CACHE": str(tmp_path)})
    [entry] = entries(cache)
    assert entry.path.name == entry_key(cpp_models["fp32"]) and entry.model == str(cpp_models["fp32"].resolve())
    blobs = sorted(p.name for p in entry.path.glob("*.blob"))
    assert len(blobs) == 1
    Matter.open(cpp_models["fp32"], backend="openvino", cache_dir=cache)
    assert [e.path for e in entries(cache)] == [entry.path]
    assert sorted(p.name for p in entry.path.glob("*.blob")) == blobs  # compiled once, by C++
