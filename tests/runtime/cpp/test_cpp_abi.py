"""The C ABI as a library that can grow: only the API exported, a plain-C header, options that carry
their size, a pkg-config file, the version kept in runtime/cpp."""

import ctypes
import os
import re
import subprocess
from pathlib import Path

import mattex

CPP = Path(__file__).resolve().parents[3] / "runtime" / "cpp"
CONSUMER = Path(__file__).parent / "consumer"
# The C++ API matter.hpp declares (MATTEX_CXX_API), by demangled name, and the error classes' type
# information, which a program needs to catch them.
CXX_API = re.compile(
    r"mattex::(Matter::|Profile::accepts\(|statusName\(|builtBackends|maxThreads\(|version\()"
    r"|(typeinfo for|typeinfo name for|vtable for) mattex::[A-Za-z]*Error$"
)


def exported(library: Path) -> list[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", "-C", library], capture_output=True, text=True, check=True)
    return [line.split(" ", 2)[2] for line in out.stdout.splitlines()]


def test_the_library_exports_its_api_and_nothing_else(cpp_build):
    symbols = exported(cpp_build.library)
    c_functions = {s for s in symbols if s.startswith("mattex_")}
    declared = set(re.findall(r"MATTEX_API [^;]*?\b(mattex_\w+)\(", (CPP / "include/mattex/mattex.h").read_text()))
    assert c_functions == declared
    others = [s for s in symbols if s not in c_functions and not CXX_API.match(s)]
    assert others == []  # no mattex::detail, Matter::Impl, nlohmann or std template escapes
    assert any(s == "typeinfo for mattex::ModelFileError" for s in symbols)
    assert not any("detail" in s or "nlohmann" in s or "Impl::" in s for s in symbols)


def test_mattex_h_is_plain_c(cpp_build, tmp_path):
    """No C++ type crosses the C boundary: the header compiles as strict C99."""
    probe = tmp_path / "probe.c"
    body = "mattex_options o;\n  mattex_options_init(&o);\n  return o.threads;"
    probe.write_text(f"#include <mattex/mattex.h>\nint main(void) {{\n  {body}\n}}\n")
    include = [f"-I{CPP / 'include'}", f"-I{cpp_build.root / 'generated' / 'include'}"]
    out = subprocess.run(
        ["gcc", "-std=c99", "-pedantic-errors", "-Wall", "-Werror", "-fsyntax-only", *include, probe],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def test_a_c_program_builds_against_the_installed_pkg_config_file(cpp_build, cpp_models, tmp_path):
    prefix = tmp_path / "prefix"
    out = subprocess.run(["cmake", "--install", cpp_build.root, "--prefix", prefix], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    pkgconfig = next(prefix.glob("lib*/pkgconfig"))
    env = {**os.environ, "PKG_CONFIG_PATH": str(pkgconfig)}

    def pkg_config(*args: str) -> list[str]:
        return subprocess.run(["pkg-config", *args, "mattex"], capture_output=True, text=True, env=env).stdout.split()

    assert pkg_config("--modversion") == [mattex.__version__]
    flags = pkg_config("--cflags", "--libs")
    # The prefix it was installed to, found from the file's own place (${pcfiledir}).
    assert [Path(f[2:]).resolve() for f in flags if f[:2] in ("-I", "-L")] == [prefix / "include", pkgconfig.parent]
    program = tmp_path / "consumer_c"
    build = subprocess.run(["gcc", CONSUMER / "main.c", *flags, "-o", program], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    library_dir = next(flag[2:] for flag in flags if flag.startswith("-L"))
    run_env = cpp_build.env(LD_LIBRARY_PATH=library_dir, MATTEX_CACHE=str(tmp_path / "cache"))
    ran = subprocess.run([program, cpp_models["fp32"]], capture_output=True, text=True, env=run_env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.split()[0] == mattex.__version__


def test_the_version_kept_in_runtime_cpp_is_mattexs(c_api):
    assert (CPP / "VERSION").read_text().strip() == mattex.__version__
    assert c_api.lib.mattex_version().decode() == mattex.__version__


def test_options_from_a_newer_header_are_refused_by_name(c_api, cpp_models):
    """mattex_options grows at its end: a struct_size larger than this library's (a program built
    against a newer mattex.h) is refused, saying so, rather than read as a struct it is not."""
    Options = c_api.lib.mattex_open.argtypes[1]._type_  # noqa: N806 (mattex_ctypes.Options, as the binding declares it)

    class Newer(ctypes.Structure):
        _fields_ = [("options", Options), ("a_later_field", ctypes.c_int64)]

    newer = Newer()
    c_api.lib.mattex_options_init(ctypes.byref(newer.options))
    newer.options.struct_size = ctypes.sizeof(Newer)
    status, handle = c_api.open(cpp_models["fp32"], options=newer.options)
    assert (status, handle.value) == (8, None)
    assert c_api.lib.mattex_last_error().decode() == (
        f"options->struct_size is {ctypes.sizeof(Newer)}, larger than this library's mattex_options "
        f"({ctypes.sizeof(Options)}): the program was built against a newer mattex.h than this libmattex; "
        "use that release's library"
    )
