"""The jobs file of `mattex batch`: JSON Lines, one job a line, every line checked before any
work, so that a typo on line 3,000 is found before the first clip, not after the night.

    {"src": "clips/a.mp4", "bgr": "plates/a.png", "out": "a"}
    {"src": "clips/b.mp4", "bgr": "plates/b.mp4", "out": "b", "outputs": ["pha"], "png": true}

`src` and `bgr` are paths (relative ones are read from the jobs file's folder), `out` the name of
the job's folder under the batch's output folder; every other key is an option of `mattex run`,
named as `matte_media` names it (its signature is the one list: a new option there is a job
option here)."""

from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mattex.errors import ConfigError
from mattex.runtime.frames import OUTPUT_KINDS
from mattex.runtime.pipeline import matte_media

from .manifest import MANIFEST_NAME

REQUIRED = ("src", "bgr", "out")
# matte_media's parameters that are not per-job options: the job's own fields, and what the
# batch itself supplies (the open model, its progress display)
_SUPPLIED = {"model", "src", "bgr", "out", "progress", "on_start", "matter"}
# A job's folder: one plain name, never hidden (a dot starts the temporaries beside it) or a path
_OUT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@,-]{0,254}")
NAMED_COMPOSITES = ("green", "white")
SHOWN = 20  # wrong lines named in one message; the rest counted


def job_options() -> dict[str, object]:
    """The options a job may set, with `mattex run`'s defaults: matte_media's keyword parameters."""
    parameters = inspect.signature(matte_media).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _SUPPLIED and p.default is not p.empty
    }


@dataclass(frozen=True)
class Job:
    line: int  # where it is in the jobs file (1-based), for messages
    src: Path
    bgr: Path
    out: str
    options: dict = field(default_factory=dict)  # only those the line sets

    def spec(self) -> dict:
        """What the job is, as the manifest records it: a finished job is skipped only when
        this is what it was run with."""
        return {"src": str(self.src), "bgr": str(self.bgr), "options": self.options}


def read_jobs(path: str | Path) -> list[Job]:
    """Every job of the JSON Lines file `path`, or ConfigError naming each line that is wrong
    (bad JSON, a missing or unknown field, a missing file, an `out` that is not a plain name
    or that an earlier line took, an option of the wrong type); blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the jobs file {path}: {getattr(e, 'strerror', None) or e}") from None
    jobs, problems, taken = [], [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            job = _job(number, line, path.parent)
        except ConfigError as e:
            problems.append(f"line {number}: {e}")
            continue
        if job.out in taken:
            problems.append(f"line {number}: out {job.out!r} is line {taken[job.out]}'s already")
            continue
        taken[job.out] = number
        jobs.append(job)
    if problems:
        shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
        raise ConfigError(f"{path}: {shown} (nothing was run)")
    if not jobs:
        raise ConfigError(f"{path} holds no jobs (one JSON object a line)")
    return jobs


def _job(number: int, line: str, base: Path) -> Job:
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(fields, dict):
        raise ConfigError(f"a job is a JSON object, not {type(fields).__name__}")
    missing = [name for name in REQUIRED if name not in fields]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}")
    allowed = job_options()
    unknown = sorted(set(fields) - set(REQUIRED) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option {', '.join(unknown)} (options: {', '.join(sorted(allowed))})")
    src, bgr = (_existing(fields[name], name, base) for name in ("src", "bgr"))
    options = {name: _option(name, value, allowed[name], base) for name, value in fields.items() if name in allowed}
    return Job(number, src, bgr, _out_name(fields["out"]), options)


def _existing(value, name: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a path (a string), got {value!r}")
    # absolute: Ray's workers run in folders of their own; an absolute value stays itself
    path = Path(os.path.abspath(base / value))
    if not path.exists():
        raise ConfigError(f"no such {name}: {path}")
    return path


def _out_name(value) -> str:
    if not isinstance(value, str) or not _OUT_NAME.fullmatch(value):
        raise ConfigError(
            f"out must be a plain folder name (letters, digits, _ . + = @ , -; not starting with a dot), got {value!r}"
        )
    if value == MANIFEST_NAME:
        raise ConfigError(f"out {value!r} is the batch's manifest file; give the job another name")
    return value


def _option(name: str, value, default, base: Path):
    """`value` for the option `name` if it has the type of `mattex run`'s default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        if isinstance(value, str):  # "com,pha" as on the command line
            value = [part.strip() for part in value.split(",") if part.strip()]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, type(default)) if default is not None else True
    if not ok:
        raise ConfigError(f"{name} must be like {json.dumps(list(default) if isinstance(default, tuple) else default)}")
    if name == "outputs":
        odd = [kind for kind in value if kind not in OUTPUT_KINDS]
        if odd or not value:
            raise ConfigError(f"outputs takes {', '.join(OUTPUT_KINDS)}, got {value!r}")
    if name == "composite" and value not in NAMED_COMPOSITES:
        return str(_existing(value, "composite image", base))
    return value
