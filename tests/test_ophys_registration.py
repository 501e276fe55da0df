"""Motion correction (brainobs.populate.ophys.registration)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from ophys_fake_movie import make_fake_movie

from brainobs.ingest.movie import MovieError
from brainobs.ingest.synthetic.scoring.rois import registration_rmse
from brainobs.populate.ophys.params import ALLEN_OPHYS_PARAMS, allen_ophys_params
from brainobs.populate.ophys.registration import (
    MotionBorder,
    clean_offsets,
    clip_offset_outliers,
    detrend_window_frames,
    find_empty_frames,
    intensity_scale,
    motion_border,
    open_registered_movie,
    register_movie,
    saturation_level,
    to_int16,
)


def test_allen_registration_preset_is_pinned() -> None:
    p = ALLEN_OPHYS_PARAMS
    assert p["registration_nonrigid"] is False
    assert p["registration_reference_max_frames"] == 5000
    assert p["registration_maxregshift"] == 0.2
    assert p["registration_smooth_sigma"] == 1.15
    assert p["registration_smooth_sigma_time"] == 0
    assert p["registration_batch_size"] == 500
    assert p["registration_snr_thresh"] == 1.2
    assert p["registration_block_size"] == [128, 128]
    assert p["registration_maxregshift_nonrigid"] == 5
    assert p["registration_empty_frame_sigma"] == 5
    assert p["registration_outlier_detrend_window_s"] == 3
    assert p["registration_outlier_max_shift_fraction"] == 0.05
    assert p["registration_motion_border_max_shift_px"] == 30


def test_overrides_copy_the_preset_and_refuse_unknown_keys() -> None:
    params = allen_ophys_params(registration_nonrigid=True)
    assert params["registration_nonrigid"] is True
    assert ALLEN_OPHYS_PARAMS["registration_nonrigid"] is False
    params["registration_block_size"].append(1)
    assert ALLEN_OPHYS_PARAMS["registration_block_size"] == [128, 128]
    with pytest.raises(KeyError, match="registration_typo"):
        allen_ophys_params(registration_typo=1)


# --- empty frames


def _means_with_unit_sigma(n: int = 200) -> np.ndarray:
    """Frame means around 100 whose IQR is exactly 1.349 (robust sigma 1)."""
    return 100 + np.linspace(-1.349, 1.349, n)


def test_empty_frames_at_both_ends() -> None:
    means = _means_with_unit_sigma()
    means[:3] = 2.0
    means[-2:] = 0.0
    assert find_empty_frames(means) == (3, 2)


def test_empty_frame_threshold_is_five_robust_sigmas_below_median() -> None:
    means = _means_with_unit_sigma()
    means[0] = 100 - 5.05
    means[-1] = 100 - 4.95
    assert find_empty_frames(means) == (1, 0)
    assert find_empty_frames(means, n_sigma=4.9) == (1, 1)


def test_faint_frames_in_the_middle_are_not_empty() -> None:
    means = _means_with_unit_sigma()
    means[1] = 0.0  # not touching the start: frame 0 is bright
    means[100:105] = 0.0
    assert find_empty_frames(means) == (0, 0)


def test_no_empty_frames_in_a_constant_movie() -> None:
    assert find_empty_frames(np.full(100, 7.0)) == (0, 0)


# --- offset cleaning


@pytest.mark.parametrize(("fs", "frames"), [(30.0, 90), (31.0, 93), (10.0, 30), (0.2, 1)])
def test_detrend_window_is_three_seconds(fs: float, frames: int) -> None:
    assert detrend_window_frames(fs, ALLEN_OPHYS_PARAMS["registration_outlier_detrend_window_s"]) == frames


def test_clip_offset_outliers_clips_residuals_around_the_running_median() -> None:
    offsets = np.zeros(30, np.int32)
    offsets[7], offsets[20] = 10, -2
    cleaned, changed = clip_offset_outliers(offsets, window_frames=5, max_shift=3)
    assert cleaned[7] == 3
    assert cleaned[20] == -2
    np.testing.assert_array_equal(np.flatnonzero(changed), [7])


def test_clip_offset_outliers_follows_a_slow_trend() -> None:
    offsets = np.repeat(np.arange(10), 10)
    offsets[55] = 20  # trend is 5 there
    cleaned, changed = clip_offset_outliers(offsets, window_frames=9, max_shift=4)
    assert cleaned[55] == 9
    assert changed.sum() == 1
    np.testing.assert_array_equal(np.delete(cleaned, 55), np.delete(offsets, 55))


def test_clean_offsets_clips_to_five_percent_of_the_frame_and_zeroes_empty_frames() -> None:
    n = 200
    y, x = np.full(n, 2, np.int32), np.full(n, -1, np.int32)
    x[100] = 40  # residual 41 > int(0.05 * 512) = 25
    y[101] = -30  # residual 32 > int(0.05 * 256) = 12
    y[:4] = 9  # empty frames keep no shift, and are not used for the trend
    y_clean, x_clean, clipped = clean_offsets(y, x, (4, 1), 30.0, (256, 512), ALLEN_OPHYS_PARAMS)
    assert x_clean[100] == -1 + 25
    assert y_clean[101] == 2 - 12
    np.testing.assert_array_equal(np.flatnonzero(clipped), [100, 101])
    assert (y_clean[:4] == 0).all() and (x_clean[:4] == 0).all()
    assert y_clean[-1] == 0 and x_clean[-1] == 0
    assert (y_clean[4:-1][[0, 50, 150]] == 2).all()


# --- motion border


def test_motion_border_is_the_largest_correction_per_direction() -> None:
    x = np.array([-3, 5, 40, -50, 0])
    y = np.array([2, -7, 31, 0, -31])
    assert motion_border(x, y) == MotionBorder(left=5, right=3, up=2, down=7)


def test_motion_border_keeps_shifts_of_exactly_30_px() -> None:
    assert motion_border(np.array([30, -30]), np.array([0, 0])) == MotionBorder(30, 30, 0, 0)


def test_motion_border_is_negative_on_a_side_never_moved_towards_as_in_allen() -> None:
    assert motion_border(np.array([2, 4]), np.array([-1, -6])) == MotionBorder(left=4, right=-2, up=-1, down=6)


def test_motion_border_without_inliers_is_an_error() -> None:
    with pytest.raises(ValueError, match="x offset"):
        motion_border(np.array([99]), np.array([0]))


# --- intensity conversion


@pytest.mark.parametrize(
    ("low", "high", "scale"),
    [(0, 30000, 1.0), (0, 32767, 1.0), (0, 32768, 0.5), (0, 65535, 0.5), (-1e5, 10, 0.25), (0.0, 1.0, 1.0)],
)
def test_intensity_scale_is_a_power_of_two_fitting_int16(low: float, high: float, scale: float) -> None:
    assert intensity_scale(low, high) == scale


def test_saturation_level_in_registered_units() -> None:
    assert saturation_level("uint16", 0.5) == 32767.0
    assert saturation_level("uint16", 1.0) == 32767.0
    assert saturation_level("int16", 1.0) == 32767.0
    assert saturation_level("uint16", 0.25) == pytest.approx(16383.75)
    assert saturation_level("float32", 1.0) == float("inf")


def test_to_int16() -> None:
    np.testing.assert_array_equal(to_int16(np.array([0, 32767], np.uint16), 1.0), [0, 32767])
    np.testing.assert_array_equal(to_int16(np.array([1, 65535], np.uint16), 0.5), [0, 32767])
    np.testing.assert_array_equal(to_int16(np.array([1.4, -2.6], np.float32), 1.0), [1, -3])


def test_open_registered_movie_checks_size(tmp_path: Path) -> None:
    path = tmp_path / "reg.bin"
    np.arange(2 * 3 * 4, dtype="<i2").tofile(path)
    assert open_registered_movie(path, (2, 3, 4))[1, 2, 3] == 23
    with pytest.raises(MovieError, match="reg.bin"):
        open_registered_movie(path, (3, 3, 4))
    with pytest.raises(MovieError, match="not found"):
        open_registered_movie(tmp_path / "absent.bin", (2, 3, 4))


def test_registered_movie_reads_frames_by_int_slice_and_index(tmp_path: Path) -> None:
    data = np.arange(-300, 30 * 4 * 5 - 300, dtype=np.int16).reshape(30, 4, 5)
    path = tmp_path / "reg.bin"
    data.astype("<i2").tofile(path)
    movie = open_registered_movie(path, (30, 4, 5))
    assert (movie.shape, len(movie), movie.dtype, movie.path) == ((30, 4, 5), 30, np.int16, path)
    for key in (
        0,
        -1,
        np.int64(17),
        slice(None),
        slice(4, 9),
        slice(2, 29, 5),
        slice(None, None, -2),
        slice(8, 8),
        [5, 6, 7],
        np.array([29, 0, 3, 3, 4]),
        (7, 2, 3),
        (slice(10, 20), slice(1, 3), [0, 4]),
        (np.array([1, 12]), 0),
    ):
        frames = movie[key]
        np.testing.assert_array_equal(frames, data[key])
        assert np.asarray(frames).dtype == np.int16
    np.testing.assert_array_equal(np.asarray(movie), data)
    np.testing.assert_array_equal(np.asarray(movie, dtype=np.float32), data.astype(np.float32))
    with pytest.raises(IndexError):
        movie[30]


def test_registered_movie_cut_after_opening_names_the_file_and_frames(tmp_path: Path) -> None:
    path = tmp_path / "reg.bin"
    np.zeros((30, 4, 5), "<i2").tofile(path)
    movie = open_registered_movie(path, (30, 4, 5))
    os.truncate(path, 20 * 4 * 5 * 2 + 7)  # the file now ends within frame 20
    assert movie[:20].shape == (20, 4, 5)
    with pytest.raises(MovieError, match=r"frames 15\.\.24") as caught:
        movie[15:25]
    assert str(path) in str(caught.value)


def _resident_bytes() -> int:
    """Resident memory of this process (file-backed pages of memory maps included)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc/self/statm")
def test_reading_a_large_registered_movie_in_chunks_keeps_resident_memory_bounded(tmp_path: Path) -> None:
    n_frames, side, chunk = 400, 512, 20  # 210 MB of int16, read 10 MB at a time
    first_frame = (np.arange(side * side) % 4096).reshape(side, side).astype("<i2")
    path = tmp_path / "large.bin"
    with path.open("wb") as handle:
        for start in range(0, n_frames, chunk):
            handle.write(first_frame + np.arange(start, start + chunk, dtype="<i2")[:, None, None])
    try:
        movie = open_registered_movie(path, (n_frames, side, side))
        baseline = peak = _resident_bytes()
        for start in range(0, n_frames, chunk):
            frames = np.asarray(movie[start : start + chunk])
            np.testing.assert_array_equal(frames.max(axis=(1, 2)), np.arange(start, start + chunk) + 4095)
            peak = max(peak, _resident_bytes())
    finally:
        path.unlink()
    assert peak - baseline < 60e6


# --- suite2p runs


@pytest.mark.slow
def test_register_movie_recovers_known_shifts(tmp_path: Path) -> None:
    fake = make_fake_movie(tmp_path / "movie.tif", n_frames=300, drift_px=3.0)
    out = tmp_path / "store" / "registered.bin"
    result = register_movie(fake.path, out, fake.fs, ALLEN_OPHYS_PARAMS, device="cpu")

    assert registration_rmse(result.y_offset, result.x_offset, fake.dy, fake.dx) <= 0.25
    assert result.shape == (300, 64, 64) and result.intensity_scale == 1.0
    assert result.saturation_level == 32767.0
    np.testing.assert_allclose(result.frame_mean, fake.frames.mean(axis=(1, 2)))
    assert result.is_valid.all() and not result.clipped.any()
    assert result.correlation.shape == (300,)
    assert list(out.parent.iterdir()) == [out]

    registered = open_registered_movie(out, result.shape)
    for t in (0, 137, 299):
        expected = np.roll(fake.frames[t], (-result.y_offset[t], -result.x_offset[t]), axis=(0, 1))
        np.testing.assert_array_equal(registered[t], expected)
    np.testing.assert_allclose(result.average_projection, np.asarray(registered).mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(result.max_projection, np.asarray(registered).max(axis=0))
    assert result.motion_border == motion_border(result.x_offset, result.y_offset)


@pytest.mark.slow
def test_register_movie_empty_frames_and_clipped_outlier(tmp_path: Path) -> None:
    fake = make_fake_movie(tmp_path / "raw.tif", n_frames=240, drift_px=0.0, jitter_px=0, seed=3)
    frames = fake.frames.copy()
    frames[:4] //= 40  # shutter still closed
    frames[-2:] //= 40
    frames[120] = np.roll(frames[120], 8, axis=1)  # a jump of 8 px for one frame, limit int(0.05*64) = 3
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, frames, metadata={"frame_rate_hz": fake.fs})
    result = register_movie(path, tmp_path / "reg.bin", fake.fs, ALLEN_OPHYS_PARAMS, device="cpu")

    np.testing.assert_array_equal(np.flatnonzero(~result.is_valid), [0, 1, 2, 3, 238, 239])
    assert not result.x_offset[~result.is_valid].any() and not result.y_offset[~result.is_valid].any()
    assert result.clipped[120] and result.clipped.sum() == 1
    assert result.x_offset_raw[120] - result.x_offset[120] == 8 - 3
    assert len(set(result.x_offset[result.is_valid])) == 2  # a constant, and constant + 3 at frame 120
    assert len(set(result.y_offset[result.is_valid])) == 1
    registered = open_registered_movie(result.registered_path, result.shape)
    np.testing.assert_array_equal(registered[0], frames[0])
    expected = np.roll(frames[120], (-result.y_offset[120], -result.x_offset[120]), axis=(0, 1))
    np.testing.assert_array_equal(registered[120], expected)


@pytest.mark.slow
def test_register_movie_nonrigid(tmp_path: Path) -> None:
    fake = make_fake_movie(tmp_path / "movie.tif", n_frames=200, shape=(64, 64), seed=5)
    params = allen_ophys_params(registration_nonrigid=True, registration_block_size=[32, 32])
    result = register_movie(fake.path, tmp_path / "reg.bin", fake.fs, params, device="cpu")
    assert registration_rmse(result.y_offset, result.x_offset, fake.dy, fake.dx) <= 0.25
    assert result.nonrigid_x_offset.shape[0] == 200 and result.nonrigid_x_offset.shape[1] >= 4
    # rigid motion only: most block shifts left after the rigid pass stay below a pixel
    residual = np.abs(np.concatenate([result.nonrigid_x_offset, result.nonrigid_y_offset]))
    assert np.percentile(residual, 90) < 1


def test_register_movie_refuses_a_bad_movie_and_writes_nothing(tmp_path: Path) -> None:
    fake = make_fake_movie(tmp_path / "movie.tif", n_frames=60)
    out = tmp_path / "out" / "reg.bin"
    with pytest.raises(MovieError, match="frame rate"):
        register_movie(fake.path, out, 31.0, ALLEN_OPHYS_PARAMS, device="cpu")
    assert not out.exists()


def test_register_movie_removes_the_partials_of_killed_runs_of_that_movie(tmp_path: Path) -> None:
    """A half-written movie whose process is gone is removed before writing; one of a live process, of
    another movie or of another host stays."""
    import subprocess
    import sys

    from brainobs.partials import HOST

    fake = make_fake_movie(tmp_path / "movie.tif", n_frames=60)
    out = tmp_path / "registered" / "key-1.bin"
    out.parent.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    stale = out.parent / f".key-1.bin.{HOST}-{dead}.k2j_x9ab.part"
    kept = [
        out.parent / f".key-1.bin.{HOST}-{os.getpid()}.abcdefgh.part",  # a live process
        out.parent / f".key-2.bin.{HOST}-{dead}.abcdefgh.part",  # another movie's
        out.parent / f".key-1.bin.otherhost-{dead}.abcdefgh.part",  # another host's
    ]
    for partial in (stale, *kept):
        partial.write_bytes(b"half a movie")
    register_movie(fake.path, out, fake.fs, ALLEN_OPHYS_PARAMS, device="cpu")
    assert sorted(out.parent.iterdir()) == sorted([out, *kept])
