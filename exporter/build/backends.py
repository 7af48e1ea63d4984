"""The engine builds, one per engine backend: what `mattex build` and `mattex export` ask of a
backend, and how one is found.

An engine backend's registry entry (`mattex.runtime.backends.BACKENDS`) names its build as
"module:Class", a subclass of `EngineBuild`; the rest is shared (`products`): the file read and
checked once, the profiles, the plan and its sidecar written together or not at all, the CLI.
TensorRT's and TensorRT for RTX's builds are `tensorrt`; a test's engine backend carries its
build beside its runner (tests/runtime/fake_backend.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from mattex.errors import BackendUnavailableError, ConfigError
from mattex.runtime.backends import BACKENDS
from mattex.runtime.io_spec import Profile

from .options import BuildOptions
from .plugins import OnnxFacts


@dataclass
class BuiltEngine:
    """What a build made: the plan's bytes, the network's inputs and outputs (as the sidecar
    records them), the seconds it took, and the sidecar fields the backend owns (its version,
    the GPU or targets it built for, its own options)."""

    plan: bytes
    io: list[dict]
    seconds: float
    sidecar_fields: dict = field(default_factory=dict)


class EngineBuild:
    """One engine backend's build. `name` is its registry name; `takes` the `BuildOptions`
    fields it uses beyond the workspace (any other set is refused by name)."""

    takes: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name

    def rank(self) -> int | None:
        """Where the automatic choice puts it here and now (lower first); None: it cannot build
        on this machine."""
        return None

    def where_it_builds(self) -> str:
        """Said when nothing here builds: on what machine it would (its install hint follows)."""
        return f"{self.name} builds where it is installed"

    def not_here(self) -> str | None:
        """Why `mattex export` does not build with it on this machine although it is the
        choice (TensorRT without a visible GPU), or None."""
        return None

    def validate(self, options: BuildOptions) -> None:
        """ConfigError for a set option this build does not take."""
        defaults = BuildOptions()
        given = [
            name
            for name in ("timing_cache", "version_compatible", "hardware_compat", "compute_capabilities")
            if name not in self.takes and getattr(options, name) != getattr(defaults, name)
        ]
        if given:
            raise ConfigError(
                f"{', '.join(f'`{g}`' for g in given)}: not an option of the {self.name} build"
                f" (it takes {', '.join(f'`{t}`' for t in ('workspace_gib', *self.takes))})"
            )

    def prepare(self, facts: OnnxFacts, profiles: list[Profile], options: BuildOptions) -> object:
        """Refuse what this file cannot be built into, then load the toolkit (last, so a
        refusal comes before the wait); returns what `build` needs of it."""
        return None

    def build(
        self, toolkit, onnx_path: Path, facts: OnnxFacts, profiles: list[Profile], options: BuildOptions, log
    ) -> BuiltEngine:
        """The engine for `onnx_path`: every build implements it (the base has nothing to build)."""
        raise NotImplementedError(f"the {self.name} build does not implement build()")

    def check(self, onnx_path: Path, facts: OnnxFacts, profiles: list[Profile]):
        """Its own parser's and builder's word on a file, nothing written (`mattex check --build`)."""
        raise ConfigError(f"the {self.name} build has no check of its own (`mattex check --build`)")

    def summary(self, sidecar) -> str:
        """How `mattex build` names what it built: "with TensorRT 10.9 for NVIDIA L4"."""
        return f"with {self.name} {sidecar.tensorrt_version}"


def build_backends() -> list[str]:
    """The backends that build engines, in registration order (a registered one included)."""
    return BACKENDS.builders()


def engine_build(name: str) -> EngineBuild:
    """The build of the backend `name`; ConfigError naming those that build for any other."""
    known = build_backends()
    if name not in known:
        raise ConfigError(f"unknown build `backend` {name!r}; choose one of {', '.join(['auto', *known])}")
    module, cls = BACKENDS[name].builder.split(":")
    return getattr(importlib.import_module(module), cls)(name)


def choose_build_backend(requested: str = "auto") -> str:
    """The backend a build uses: `requested`, or for auto the best ranked here (TensorRT where
    a GPU is, else TensorRT for RTX, which needs none)."""
    if requested != "auto":
        return engine_build(requested).name
    builds = [engine_build(name) for name in build_backends()]
    ranked = sorted((rank, i, b.name) for i, b in enumerate(builds) if (rank := b.rank()) is not None)
    if ranked:
        return ranked[0][2]
    raise BackendUnavailableError(
        "nothing here builds engines: "
        + "; ".join(f"{b.where_it_builds()} ({BACKENDS[b.name].install})" for b in builds)
    )
