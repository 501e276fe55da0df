"""Reading and validating TIFF movies (brainobs.ingest.movie)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from brainobs.ingest.movie import (
    MIN_FRAMES,
    MovieError,
    TiffMovie,
    frame_statistics,
    read_movie_info,
)


def _frames(n: int = 60, dtype: str = "uint16", shape: tuple[int, int] = (16, 20)) -> np.ndarray:
    return (np.arange(n * shape[0] * shape[1]) % 1000).reshape(n, *shape).astype(dtype)


def _write(path: Path, data: np.ndarray, **kwargs: object) -> Path:
    tifffile.imwrite(path, data, **kwargs)
    return path


def test_reads_shape_dtype_and_tifffile_metadata(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.tif", _frames(), metadata={"frame_rate_hz": 30.0, "pixel_size_um": 0.78})
    info = read_movie_info(path)
    assert info.shape == (60, 16, 20)
    assert info.dtype == "uint16"
    assert info.frame_rate_hz == pytest.approx(30.0)
    assert info.pixel_size_um == pytest.approx(0.78)


def test_reads_imagej_frame_interval_and_resolution(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ij.tif",
        _frames(dtype="int16"),
        imagej=True,
        metadata={"axes": "TYX", "finterval": 1 / 31.0, "unit": "um"},
        resolution=(1 / 0.7, 1 / 0.7),
    )
    info = read_movie_info(path, expected_frame_rate_hz=31.0)
    assert (info.n_frames, info.dtype) == (60, "int16")
    assert info.frame_rate_hz == pytest.approx(31.0)
    assert info.pixel_size_um == pytest.approx(0.7, rel=1e-3)


def test_reads_scanimage_header_lines_and_centimetre_resolution(tmp_path: Path) -> None:
    path = tmp_path / "si.tif"
    header = "SI.hRoiManager.scanFrameRate = 30.9\nSI.hRoiManager.linesPerFrame = 16\n"
    with tifffile.TiffWriter(path) as tif:  # written in blocks, as an acquisition streams it
        for index, block in enumerate(np.split(_frames(60), 3)):
            first = index == 0
            tif.write(
                block,
                contiguous=True,
                metadata=None,
                description=header if first else None,
                resolution=(1e4 / 0.78, 1e4 / 0.78) if first else None,
                resolutionunit="CENTIMETER" if first else None,
            )
    info = read_movie_info(path)
    assert info.shape == (60, 16, 20)
    assert info.frame_rate_hz == pytest.approx(30.9)
    assert info.pixel_size_um == pytest.approx(0.78)


def test_without_metadata_the_expected_frame_rate_is_used(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.tif", _frames(dtype="float32"), metadata=None)
    assert read_movie_info(path).frame_rate_hz is None
    info = read_movie_info(path, expected_frame_rate_hz=11.0)
    assert info.frame_rate_hz == 11.0
    assert info.pixel_size_um is None


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_chunks_and_indexing_return_the_written_frames(tmp_path: Path, compression: str | None) -> None:
    data = _frames(75)
    path = _write(tmp_path / "m.tif", data, compression=compression)
    with TiffMovie(path) as movie:
        chunks = list(movie.iter_chunks(chunk_frames=20))
        assert [start for start, _ in chunks] == [0, 20, 40, 60]
        np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), data)
        np.testing.assert_array_equal(movie[np.array([3, 70, 5])], data[[3, 70, 5]])
        assert movie[10:12].flags.writeable


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_contiguous_reads_return_the_written_frames(tmp_path: Path, byteorder: str, dtype: str) -> None:
    data = _frames(60, dtype=dtype)
    with TiffMovie(_write(tmp_path / "m.tif", data, byteorder=byteorder)) as movie:
        for key in (
            slice(None),
            slice(7, 19),
            slice(-5, None),
            slice(3, 50, 4),
            slice(None, None, -3),
            slice(30, 30),
            np.array([4, 5, 6, 7]),
            np.array([59, 0, 12, 12, 13]),
            [2, -1],
            np.array([], dtype=int),
        ):
            frames = movie[key]
            assert frames.dtype == np.dtype(dtype) and frames.dtype.isnative
            np.testing.assert_array_equal(frames, data[key])
        with pytest.raises(TypeError):
            movie[3]


def test_frames_missing_from_a_file_cut_after_opening_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.tif", _frames(60))
    with tifffile.TiffFile(path) as tif:
        data_offset = tif.series[0].dataoffset
    with TiffMovie(path) as movie:
        os.truncate(path, data_offset + 58 * 16 * 20 * 2 + 100)  # the file now ends within frame 58
        np.testing.assert_array_equal(movie[:58], _frames(60)[:58])
        with pytest.raises(MovieError, match=r"frames 50\.\.59") as caught:
            movie[50:]
        assert str(path) in str(caught.value)
        with pytest.raises(MovieError, match=r"frames 58\.\.58"):
            movie[[3, 58]]


def _resident_bytes() -> int:
    """Resident memory of this process (file-backed pages of memory maps included)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc/self/statm")
def test_reading_a_large_movie_in_chunks_keeps_resident_memory_bounded(tmp_path: Path) -> None:
    n_frames, side, chunk = 400, 512, 20  # 210 MB of uint16, read 10 MB at a time
    first_frame = (np.arange(side * side) % 4096).reshape(side, side).astype(np.uint16)
    path = tmp_path / "large.tif"
    with tifffile.TiffWriter(path) as tif:
        for start in range(0, n_frames, chunk):
            tif.write(
                first_frame + np.arange(start, start + chunk, dtype=np.uint16)[:, None, None],
                contiguous=True,
                metadata=None,
            )
    try:
        with TiffMovie(path) as movie:
            assert movie.shape == (n_frames, side, side)
            baseline = peak = _resident_bytes()
            for start, frames in movie.iter_chunks(chunk_frames=chunk):
                np.testing.assert_array_equal(frames.max(axis=(1, 2)), np.arange(start, start + chunk) + 4095)
                peak = max(peak, _resident_bytes())
    finally:
        path.unlink()
    assert peak - baseline < 60e6


def test_frame_statistics(tmp_path: Path) -> None:
    data = _frames(60, dtype="float32")
    with TiffMovie(_write(tmp_path / "m.tif", data)) as movie:
        stats = frame_statistics(movie, chunk_frames=7)
    np.testing.assert_allclose(stats.mean, data.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(stats.minimum, data.min(axis=(1, 2)))
    np.testing.assert_array_equal(stats.maximum, data.max(axis=(1, 2)))


def _expect_error(path: Path, fragment: str, **kwargs: object) -> None:
    with pytest.raises(MovieError) as caught:
        read_movie_info(path, **kwargs)
    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "absent.tif", "not found")


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "text.tif"
    path.write_text("hello, not a TIFF")
    _expect_error(path, "unreadable")


@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.98])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_file(tmp_path: Path, fraction: float, compression: str | None) -> None:
    whole = _write(tmp_path / "whole.tif", _frames(), compression=compression).read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(whole[: int(len(whole) * fraction)])
    with pytest.raises(MovieError, match="truncated") as caught:
        read_movie_info(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("data", "kwargs", "fragment"),
    [
        (np.zeros((60, 16, 20, 3), np.uint8), {"photometric": "rgb"}, "grayscale"),
        (np.zeros((60, 16, 20), bool), {}, "bool"),
        (np.zeros((60, 16, 20), np.float64), {}, "float64"),
        (np.zeros((60, 16, 20), np.uint8), {}, "uint8"),
        (np.zeros((2, 60, 16, 20), np.uint16), {}, "grayscale"),
    ],
)
def test_refused_layouts_and_pixel_types(tmp_path: Path, data: np.ndarray, kwargs: dict, fragment: str) -> None:
    _expect_error(_write(tmp_path / "bad.tif", data, **kwargs), fragment)


@pytest.mark.filterwarnings("ignore:.*zero-size array")
def test_zero_frames(tmp_path: Path) -> None:
    _expect_error(_write(tmp_path / "empty.tif", np.zeros((0, 16, 20), np.uint16)), "no frames")


def test_single_frame_is_too_short(tmp_path: Path) -> None:
    _expect_error(_write(tmp_path / "one.tif", np.zeros((16, 20), np.uint16)), "only 1 frames")


def test_fewer_than_min_frames(tmp_path: Path) -> None:
    _expect_error(_write(tmp_path / "short.tif", _frames(MIN_FRAMES - 1)), f"at least {MIN_FRAMES}")
    assert read_movie_info(_write(tmp_path / "ok.tif", _frames(MIN_FRAMES))).n_frames == MIN_FRAMES


def test_nan_frame_is_named(tmp_path: Path) -> None:
    data = _frames(60, dtype="float32")
    data[41, 3, 4] = np.nan
    with TiffMovie(_write(tmp_path / "nan.tif", data)) as movie, pytest.raises(MovieError, match="frame 41"):
        frame_statistics(movie, chunk_frames=16)


def test_infinite_value_is_refused(tmp_path: Path) -> None:
    data = _frames(60, dtype="float32")
    data[0, 0, 0] = np.inf
    with TiffMovie(_write(tmp_path / "inf.tif", data)) as movie, pytest.raises(MovieError, match="frame 0"):
        frame_statistics(movie)


def test_frame_rate_contradicting_metadata(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.tif", _frames(), metadata={"frame_rate_hz": 30.0})
    _expect_error(path, "30 Hz but 11 Hz", expected_frame_rate_hz=11.0)
    assert read_movie_info(path, expected_frame_rate_hz=30.1).frame_rate_hz == pytest.approx(30.0)
