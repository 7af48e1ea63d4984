"""The C++ runtime with a model cache it cannot use: as the Python runtime (tests/runtime/
test_cache_faults.py), the model runs without the cache and stderr says so (once per process:
std::call_once), where it threw ConfigError ("cannot create the model cache entry") and no file
opened."""

UNUSABLE = "cannot be used"


def test_cpp_runs_without_a_cache_under_a_file_and_says_so(cpp_build, cpp_models, tmp_path):
    (tmp_path / "not-a-folder").write_text("a user's file")
    cache = tmp_path / "not-a-folder" / "cache"
    out = cpp_build.run("mattex_probe", "open", cpp_models["fp32"], env={"MATTEX_CACHE": str(cache)})
    assert out.stdout.startswith("ok openvino fp32"), out.stdout
    assert out.stderr.count(UNUSABLE) == 1, out.stderr[-2000:]
    assert f"the model cache {cache / 'openvino'} {UNUSABLE} (Not a directory)" in out.stderr
    assert (tmp_path / "not-a-folder").read_text() == "a user's file"
