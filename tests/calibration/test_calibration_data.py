"""PhotoMatte85 reader, compositing and the synthetic stand-in, on a folder made in the test."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mattex.calibration.composite import Composites, Perturbation, composite, perturb_background
from mattex.calibration.images import DataError
from mattex.calibration.photomatte import PhotoMatteFolder
from mattex.calibration.synthetic import synth_background, synth_portrait, write_synthetic_photomatte
from mattex.cli.main import app


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_photomatte(root / "pm", 3, seed=1, height=160, width=128, backgrounds=root / "bg")
    return root


def test_synthetic_portraits_have_soft_edges_and_strands():
    fgr, pha = synth_portrait(np.random.default_rng(0), 256, 192)
    assert fgr.shape == (3, 256, 192) and pha.shape == (1, 256, 192)
    fractional = (pha > 0.06) & (pha < 0.96)
    assert 0.005 < fractional.mean() < 0.2  # edges and strands, not a hard cut-out
    assert (pha == 1).mean() > 0.2 and (pha == 0).mean() > 0.2
    again = synth_portrait(np.random.default_rng(0), 256, 192)
    assert np.array_equal(pha, again[1])  # deterministic under the seed


def test_written_layout_reads_back_as_photomatte(synth):
    files = sorted((synth / "pm").iterdir())
    assert len(files) == 3 and all(Image.open(f).mode == "RGBA" for f in files)
    mattes = PhotoMatteFolder(synth / "pm")
    m = mattes[0]
    assert m.fgr.shape == (3, 160, 128) and m.pha.shape == (1, 160, 128)
    assert m.fgr.dtype == np.float32 and 0 <= m.pha.min() and m.pha.max() <= 1


def test_fit_keeps_aspect_by_cropping(synth):
    m = PhotoMatteFolder(synth / "pm", size=(64, 128))[0]  # portrait source, landscape target
    assert m.pha.shape == (1, 64, 128)
    full = PhotoMatteFolder(synth / "pm")[0]
    # Scale 1 (128 wide already) and a centre crop of 64 rows: no distortion.
    assert np.abs(m.pha[0] - full.pha[0, 48:112]).max() < 1e-6


def test_fgr_pha_folder_pair_layout(synth, tmp_path):
    (tmp_path / "fgr").mkdir()
    (tmp_path / "pha").mkdir()
    for f in sorted((synth / "pm").iterdir()):
        image = Image.open(f)
        image.convert("RGB").save(tmp_path / "fgr" / f.name)
        image.getchannel("A").save(tmp_path / "pha" / f.name)
    paired, rgba = PhotoMatteFolder(tmp_path)[1], PhotoMatteFolder(synth / "pm")[1]
    assert np.array_equal(paired.pha, rgba.pha) and np.array_equal(paired.fgr, rgba.fgr)


def test_bad_data_raises_clear_errors(synth, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG images"):
        PhotoMatteFolder(tmp_path / "empty")
    (tmp_path / "rgb").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "rgb" / "a.png")
    with pytest.raises(DataError, match="a.png is RGB, not RGBA"):
        PhotoMatteFolder(tmp_path / "rgb")[0]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "b.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        PhotoMatteFolder(tmp_path / "broken")[0]
    pairs = tmp_path / "pairs"
    (pairs / "fgr").mkdir(parents=True)
    (pairs / "pha").mkdir()
    Image.new("RGB", (8, 8)).save(pairs / "fgr" / "x.png")
    Image.new("L", (8, 8)).save(pairs / "pha" / "y.png")
    with pytest.raises(DataError, match="do not pair up"):
        PhotoMatteFolder(pairs)
    with pytest.raises(DataError, match="divisible by 4"):
        PhotoMatteFolder(synth / "pm", size=(30, 32))
    with pytest.raises(DataError, match="not a folder"):
        PhotoMatteFolder(tmp_path / "missing")


def test_composites_follow_the_matting_equation_and_perturb_bgr_only(synth):
    data = Composites(synth / "pm", (128, 128), backgrounds=synth / "bg", seed=3)
    item = data[0]
    assert item["src"].shape == (1, 3, 128, 128) and item["pha"].shape == (1, 1, 128, 128)
    background = data.backgrounds.get(0, np.random.default_rng([3, 0]))
    assert np.allclose(item["src"][0], composite(item["fgr"][0], item["pha"][0], background), atol=1e-6)
    delta = np.abs(item["bgr"][0] - background)
    assert 0 < delta.mean() < 0.15  # a slightly different capture of the same scene
    again = Composites(synth / "pm", (128, 128), backgrounds=synth / "bg", seed=3)[0]
    assert np.array_equal(item["bgr"], again["bgr"])  # deterministic
    other = Composites(synth / "pm", (128, 128), backgrounds=synth / "bg", seed=4)[0]
    assert not np.array_equal(item["bgr"], other["bgr"])
    assert list(next(data.feeds())) == ["src", "bgr"]


def test_procedural_backgrounds_when_no_folder_is_given(synth):
    item = Composites(synth / "pm", (64, 64), seed=0)[1]
    assert item["bgr"].shape == (1, 3, 64, 64)


def test_perturbation_stays_in_range():
    bgr = synth_background(np.random.default_rng(0), 64, 64)
    out = perturb_background(bgr, np.random.default_rng(1), Perturbation())
    assert out.shape == bgr.shape and out.min() >= 0 and out.max() <= 1


def test_empty_background_folder_is_an_error(synth, tmp_path):
    with pytest.raises(DataError, match="no images in background folder"):
        Composites(synth / "pm", (64, 64), backgrounds=tmp_path)


def test_cli_data_synth(tmp_path):
    result = CliRunner().invoke(
        app, ["data", "synth", "--out", str(tmp_path / "pm"), "--count", "2", "--height", "64", "--width", "64"]
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "pm").glob("*.png"))) == 2
