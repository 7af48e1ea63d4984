"""PhotoMatte85 as users have it: RGBA PNGs (RGB = foreground, A = alpha), or the BGMv2
training layout of `fgr/` and `pha/` folders with matching file names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mattex.contract import SIZE_MULTIPLE

from .images import DataError, fit, image_files, image_header, open_image, to_float


@dataclass
class Matte:
    name: str
    fgr: np.ndarray  # (3, H, W) float32 in [0, 1]
    pha: np.ndarray  # (1, H, W) float32 in [0, 1]


class PhotoMatteFolder:
    """The mattes of a folder, each fitted to `size` (height, width) without distortion
    (scale to cover, centre-crop). `size=None` keeps the original size."""

    def __init__(self, folder: str | Path, size: tuple[int, int] | None = None) -> None:
        self.folder = Path(folder)
        self.size = size
        if size is not None and (size[0] % SIZE_MULTIPLE or size[1] % SIZE_MULTIPLE):
            raise DataError(f"target size must be divisible by {SIZE_MULTIPLE}, got {size[0]}x{size[1]}")
        if (self.folder / "fgr").is_dir() or (self.folder / "pha").is_dir():
            self.pairs = self._paired_layout()
        else:
            files = [p for p in image_files(self.folder) if p.suffix.lower() == ".png"]
            if not files:
                raise DataError(
                    f"no PNG images in {self.folder}: PhotoMatte85 is a folder of RGBA PNGs (or fgr/ and pha/ folders)"
                )
            self.pairs = [(p, None) for p in files]

    def _paired_layout(self) -> list[tuple[Path, Path]]:
        fgr_dir, pha_dir = self.folder / "fgr", self.folder / "pha"
        for d in (fgr_dir, pha_dir):
            if not d.is_dir():
                raise DataError(f"{self.folder} has {'pha' if d == fgr_dir else 'fgr'}/ but no {d.name}/")
        fgr = {p.stem: p for p in image_files(fgr_dir)}
        pha = {p.stem: p for p in image_files(pha_dir)}
        if not fgr:
            raise DataError(f"no images in {fgr_dir}")
        if fgr.keys() != pha.keys():
            only_fgr, only_pha = sorted(fgr.keys() - pha.keys()), sorted(pha.keys() - fgr.keys())
            raise DataError(f"fgr/ and pha/ do not pair up: only in fgr/: {only_fgr[:5]}, only in pha/: {only_pha[:5]}")
        return [(fgr[k], pha[k]) for k in sorted(fgr)]

    def __len__(self) -> int:
        return len(self.pairs)

    def check(self, limit: int | None = None) -> None:
        """Raise DataError for the first of the first `limit` mattes that cannot be read (from
        headers and PNG checksums, no pixels decoded): before an export traces and calibrates,
        not after."""
        for fgr_path, pha_path in self.pairs[:limit]:
            image = image_header(fgr_path)
            _check_pair(fgr_path, image, image_header(pha_path) if pha_path else None)

    def __getitem__(self, index: int) -> Matte:
        fgr_path, pha_path = self.pairs[index]
        image = open_image(fgr_path)
        alpha = open_image(pha_path) if pha_path else None
        _check_pair(fgr_path, image, alpha)
        if alpha is None:
            rgb, alpha = image.convert("RGB"), image.getchannel("A")
        else:
            rgb, alpha = image.convert("RGB"), alpha.convert("L")
        if self.size is not None:
            rgb, alpha = fit(rgb, self.size), fit(alpha, self.size)
        return Matte(fgr_path.stem, to_float(rgb, "RGB"), to_float(alpha, "L"))

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _check_pair(fgr_path: Path, image, alpha) -> None:
    if alpha is None and image.mode != "RGBA":
        raise DataError(
            f"{fgr_path.name} is {image.mode}, not RGBA: PhotoMatte85 images carry alpha in their fourth channel"
        )
    if alpha is not None and image.size != alpha.size:
        raise DataError(f"{fgr_path.name}: foreground {image.size} and alpha {alpha.size} differ in size")


__all__ = ["PhotoMatteFolder", "Matte", "DataError"]
