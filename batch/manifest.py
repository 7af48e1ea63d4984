"""The batch's manifest, `DIR/manifest.json`: each finished job's outputs, frame count and
sha256 hashes, rewritten atomically after each job. A later run into DIR skips a job the
manifest records with the same model, source, background and options, and whose files still
hash as recorded; anything else (missing, edited, half-copied) runs again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mattex.errors import ConfigError
from mattex.files import atomic_write_text, sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT = 1


def output_hash(path: Path) -> str:
    """sha256 of a file, or of a folder (an image sequence): over its files' names and hashes,
    in name order."""
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for child in sorted(path.rglob("*")):
        if child.is_file():
            digest.update(f"{child.relative_to(path).as_posix()}\0{sha256_file(child)}\n".encode())
    return digest.hexdigest()


class Manifest:
    """The record in `folder`: `jobs` maps each finished job's out name to what it wrote."""

    def __init__(self, folder: Path, model_sha256: str) -> None:
        self.path = Path(folder) / MANIFEST_NAME
        self.model_sha256 = model_sha256
        self.jobs: dict[str, dict] = {}
        if self.path.exists():
            self.jobs = self._read()

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(
                f"{self.path} is not a mattex batch manifest ({e}): move it away or write into another folder"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("jobs"), dict):
            raise ConfigError(f"{self.path} is not a mattex batch manifest (format {FORMAT}): write elsewhere")
        return data["jobs"]

    def finished(self, out: str, spec: dict) -> bool:
        """Whether the job writing `out` with `spec` is recorded and its files are intact."""
        record = self.jobs.get(out)
        # a job done with another model is not done with this one
        if record is None or record.get("spec") != spec or record.get("model_sha256") != self.model_sha256:
            return False
        folder = self.path.parent / out
        try:
            return all(output_hash(folder / name) == sha for name, sha in record["outputs"].items())
        except OSError:  # a file gone or unreadable: run again
            return False

    def record(self, out: str, spec: dict, outputs: dict[str, str], frames: int) -> None:
        """Record a finished job (`outputs`: name under its folder -> sha256) and rewrite the file."""
        self.jobs[out] = {"spec": spec, "model_sha256": self.model_sha256, "frames": frames, "outputs": outputs}
        self.save()

    def save(self) -> None:
        data = {"format": FORMAT, "jobs": dict(sorted(self.jobs.items()))}
        atomic_write_text(self.path, json.dumps(data, indent=1) + "\n")
