"""The batch tests' shared set-up: a library of tiny clips and each clip's `mattex run` outputs."""

import os

import pytest
from batch_helpers import BACKEND, CLIPS, FRAMES, SIZE, tree_bytes

from mattex.calibration.synthetic import write_synthetic_video
from mattex.runtime.pipeline import matte_media


@pytest.fixture(scope="module")
def library(tmp_path_factory, small_file):
    """Tiny clips, a broken one (the start of a clip), and each clip's outputs from mattex run."""
    folder = tmp_path_factory.mktemp("library")
    for seed, name in enumerate([*CLIPS, "long"]):
        write_synthetic_video(folder / f"{name}.mp4", folder / f"{name}.png", FRAMES, SIZE, SIZE, 12, seed=seed)
    (folder / "broken.mp4").write_bytes((folder / "walk.mp4").read_bytes()[:3000])
    reference = {}
    os.environ["MATTEX_THREADS"], threads = "1", os.environ.get("MATTEX_THREADS")
    try:
        for name, options in CLIPS.items():
            out = folder / "reference" / name
            matte_media(small_file, folder / f"{name}.mp4", folder / f"{name}.png", out, backend=BACKEND, **options)
            reference[name] = tree_bytes(out)
    finally:
        os.environ.pop("MATTEX_THREADS") if threads is None else os.environ.update(MATTEX_THREADS=threads)
    return folder, reference
