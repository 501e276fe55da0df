"""Splitting an interleaved mesoscope TIFF into one TIFF per plane."""

import numpy as np
import pytest
import tifffile

from brainobs.ingest.mesoscope import MesoscopeError, split_interleaved_tiff
from brainobs.ingest.movie import TiffMovie


def test_pages_go_to_planes_in_the_documented_order(tmp_path):
    planes, frames = 4, 60
    movie = (np.arange(planes * frames * 8 * 8) % 65536).astype(np.uint16).reshape(frames, planes, 8, 8)
    source = tmp_path / "meso.tif"
    header = "SI.hRoiManager.scanFrameRate = 11.0\n"
    tifffile.imwrite(source, movie.reshape(frames * planes, 8, 8), description=header)
    paths = split_interleaved_tiff(source, planes)
    assert [p.name for p in paths] == [f"meso_plane{p}.tif" for p in range(planes)]
    for p, path in enumerate(paths):
        with TiffMovie(path) as plane:  # the pipeline's reader: one series, the header carried over
            assert plane.info.frame_rate_hz == 11.0
            np.testing.assert_array_equal(np.asarray(plane[0:frames]), movie[:, p])
    assert not list(tmp_path.glob("*.partial"))


def test_a_recording_that_is_not_whole_time_points_is_refused(tmp_path):
    source = tmp_path / "meso.tif"
    tifffile.imwrite(source, np.zeros((7, 8, 8), dtype=np.uint16))
    with pytest.raises(MesoscopeError, match="7 pages are not a whole number of time points of 2 planes"):
        split_interleaved_tiff(source, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meso.tif"]
    with pytest.raises(MesoscopeError, match="9 planes; a mesoscope session holds 1 to 8"):
        split_interleaved_tiff(source, 9)


def test_the_cli_splits_and_reports_errors(tmp_path):
    from typer.testing import CliRunner

    from brainobs.cli import app

    source = tmp_path / "meso.tif"
    tifffile.imwrite(source, np.zeros((120, 8, 8), dtype=np.uint16))
    done = CliRunner().invoke(app, ["split-mesoscope", str(source), "--planes", "2"])
    assert done.exit_code == 0 and "meso_plane1.tif" in done.output
    assert tifffile.imread(tmp_path / "meso_plane0.tif").shape == (60, 8, 8)
    failed = CliRunner().invoke(app, ["split-mesoscope", str(source), "--planes", "7"])
    assert failed.exit_code == 1 and "120 pages are not a whole number" in failed.output
