"""The typed errors mattex raises for user mistakes.

Every error a user can cause derives from `MattexError`; assertions are kept for internal
invariants only. Messages name the offending tensor, key or file.
"""

from __future__ import annotations


class MattexError(Exception):
    """Base class of every error caused by user input."""


class InputShapeError(MattexError, ValueError):
    """An input tensor has the wrong rank, shape or size (e.g. H or W not divisible by 4)."""


class ConfigError(MattexError, ValueError):
    """A constructor or command option is outside what the model supports."""


class CheckpointError(MattexError):
    """A checkpoint file cannot be used."""


class UnsafeCheckpointError(CheckpointError):
    """The file would need arbitrary Python objects unpickled; mattex refuses to run its code."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's keys or shapes differ from the model's state_dict.

    Attributes list every difference so that one error tells the whole story.
    """

    def __init__(
        self,
        backbone: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        source: str = "checkpoint",
    ) -> None:
        self.backbone = backbone
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        super().__init__(self._describe(source))

    def _describe(self, source: str, limit: int = 20) -> str:
        lines = [f"{source} does not match MattingRefine({self.backbone!r}):"]

        def section(title: str, items: list[str]) -> None:
            if not items:
                return
            lines.append(f"  {title} ({len(items)}):")
            lines.extend(f"    {item}" for item in items[:limit])
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit} more")

        section("missing keys", self.missing)
        section("unexpected keys", self.unexpected)
        section(
            "shape mismatches (checkpoint vs model)",
            [f"{k}: {tuple(got)} vs {tuple(want)}" for k, got, want in self.mismatched],
        )
        return "\n".join(lines)


class BackendUnavailableError(MattexError):
    """A requested backend (TensorRT, a CUDA GPU, an execution provider) is not available here.
    mattex never falls back silently to another device."""


class EngineMismatchError(MattexError):
    """An engine was built for another TensorRT version or GPU than the one running it."""


class CorruptEngineError(MattexError):
    """An engine file or its sidecar is unreadable, foreign, or changed since it was built."""


class MediaError(MattexError):
    """A video or image cannot be read or written: missing, unreadable, empty, of another size
    than it must be, or a folder with no images."""


class ResourceError(MattexError):
    """The machine cannot give what a call needs: threads (a process or thread limit reached),
    memory (a buffer too large to allocate), file descriptors. The message names the resource
    and how much was asked for; the input itself may be fine on a larger machine."""


class ModelFileError(MattexError):
    """An ONNX model file is missing, empty, truncated, corrupt, or not a mattex export. Not a
    CorruptEngineError: the two are distinct statuses in C++ (`Status::ModelFile`,
    `Status::CorruptEngine`), and a model is no engine."""


class OutputPathError(MattexError):
    """An output cannot be written where asked: the path is a folder, the folder is read-only,
    or the disk is full. Nothing is left behind."""


class InputValueError(MattexError, ValueError):
    """A frame holds NaN or Inf, or float values outside [0, 1] (e.g. 0-255 frames not scaled)."""


class ExtraNotInstalledError(MattexError):
    """A command or module needs an optional part of mattex that is not installed here; the
    message names the extra to install (`pip install "mattex[export]"`)."""


class DataError(MattexError, ValueError):
    """A dataset folder or file cannot be used (empty, unreadable, wrong mode, unpaired)."""


class EngineBuildError(MattexError):
    """TensorRT could not parse or build the model."""


class ExportCheckError(MattexError):
    """The exported graph breaks a rule of the export target; nothing was written. `report` is
    the lint's CheckReport (its `target` and its `findings`)."""

    def __init__(self, report) -> None:
        self.report = report
        lines = [f"exported graph fails `mattex check --target {report.target}`:"]
        lines += [f"  [{f.rule}] {f.node}: {f.message}" for f in report.findings if f.severity == "error"]
        super().__init__("\n".join(lines))


class VerifyError(MattexError):
    """The file's interface does not match the PyTorch model (names or shapes)."""
