"""Motion correction: suite2p rigid (optionally non-rigid) registration with the Allen additions.

Steps of `register_movie`:

1. read the movie once for per-frame statistics (NaN frames are refused, see `movie.frame_statistics`);
2. frames at the start or end whose mean is ``registration_empty_frame_sigma`` robust sigmas below the
   median frame mean are *empty*: left out of the reference and given zero shift;
3. reference image from up to ``registration_reference_max_frames`` frames sampled evenly from the
   non-empty range (suite2p's algorithm: 20-frame seed, 8 refinement iterations; run in bounded memory
   by `brainobs.populate.ophys.reference`);
4. per-frame shifts by phase correlation against the reference (suite2p ``register_frames``; its rigid pass
   runs in bounded memory in `brainobs.populate.ophys.rigid` when there is no non-rigid or temporal smoothing);
5. offsets cleaned: x and y detrended with a median filter of ``int(3 s * fs)`` frames, residuals clipped
   to ``int(0.05 * frame size)`` px; the non-rigid block shifts of every frame whose rigid shift
   changed (clipped or empty) are set to zero; with ``registration_subpixel_rigid`` (``enhanced`` preset)
   the offsets returned are sub-pixel: a second whole-frame pass, partially whitened
   (``registration_subpixel_whitening``, `rigid.rigid_shifts`), refines each peak (`rigid.peak_offset`) and
   its fraction is added to the integer shift (`subpixel_offsets`);
   the movie itself is moved by the integer shift and, with the non-rigid pass, by the block shifts, which
   carry the fraction;
6. the movie is shifted with the cleaned offsets and written once (see `register_movie` for the format),
   with average and max projections taken on the way.

Sign convention (suite2p's): ``x_offset[t] = +2`` means the content of frame t sits 2 px further right
(larger column index) than in the reference; the frame is corrected by rolling it 2 px to the left.
``y_offset`` likewise for rows (down is positive).

The registered movie is written as a raw binary file: int16, little-endian, C order, shape
(frames, height, width), no header (suite2p's ``data.bin`` layout); `open_registered_movie` reads it.

Speed: glibc's malloc thresholds make suite2p registration 2.5-3.4x slower than needed. Start worker
processes with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824``
(read by glibc at process start; setting them from Python has no effect). Output is identical.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import median_filter

from brainobs.ingest.movie import MovieError, TiffMovie, frame_statistics, read_raw_frames
from brainobs.partials import owner, remove_stale
from brainobs.populate.ophys.rigid import compute_reference, rigid_shifts

INT16_MIN, INT16_MAX = -32768, 32767
CONVERT_FRAMES = 64  # frames read and converted to int16 at a time
IQR_TO_SIGMA = 1.349  # interquartile range of a normal distribution, in standard deviations


@dataclass(frozen=True)
class MotionBorder:
    """Largest motion correction in each direction, px (Allen naming: right = -min(x), left = max(x),
    down = -min(y), up = max(y)); negative on a side the movie never moved towards, as in Allen."""

    left: float
    right: float
    up: float
    down: float


@dataclass
class RegistrationResult:
    """Outputs of `register_movie`; arrays are per frame unless stated."""

    registered_path: Path
    shape: tuple[int, int, int]  # (frames, height, width) of the registered int16 binary
    x_offset: np.ndarray  # int32 rigid shift applied (after cleaning); float64, sub-pixel, with subpixel_rigid
    y_offset: np.ndarray
    x_offset_raw: np.ndarray  # int32, suite2p's rigid shift before cleaning
    y_offset_raw: np.ndarray
    correlation: np.ndarray  # float32, phase-correlation peak against the reference
    is_valid: np.ndarray  # bool, False for the empty frames at the start and end
    clipped: np.ndarray  # bool, offset changed by the outlier clip
    reference_image: np.ndarray  # (height, width)
    average_projection: np.ndarray  # (height, width) float32, mean of the registered movie
    max_projection: np.ndarray  # (height, width) float32, max of the registered movie
    motion_border: MotionBorder
    intensity_scale: float  # registered value = round(raw value * intensity_scale)
    nonrigid_x_offset: np.ndarray | None = None  # (frames, blocks) float32, when non-rigid ran
    nonrigid_y_offset: np.ndarray | None = None
    nonrigid_correlation: np.ndarray | None = None
    elapsed_s: dict[str, float] = field(default_factory=dict)
    frame_mean: np.ndarray | None = None  # (frames,) float64, mean raw intensity of each frame
    saturation_level: float = float("inf")  # the raw pixel type's maximum, in registered units


def find_empty_frames(frame_means: np.ndarray, n_sigma: float = 5.0) -> tuple[int, int]:
    """Number of empty frames at the start and at the end of a movie.

    A frame is faint when its mean is more than ``n_sigma`` robust sigmas (IQR / 1.349) below the
    median frame mean; the empty frames are the runs of faint frames touching each end. Faint frames
    elsewhere are not empty (they are registered like any other).
    """
    means = np.asarray(frame_means, dtype=np.float64)
    q25, median, q75 = np.percentile(means, [25, 50, 75])
    faint = means < median - n_sigma * (q75 - q25) / IQR_TO_SIGMA
    n_start = len(faint) if faint.all() else int(np.argmin(faint))
    n_end = len(faint) if faint.all() else int(np.argmin(faint[::-1]))
    return n_start, n_end


def detrend_window_frames(fs: float, window_s: float) -> int:
    """Median-filter length (frames) for offset detrending: ``int(window_s * fs)``, at least 1."""
    return max(1, int(window_s * fs))


def clip_offset_outliers(offsets: np.ndarray, window_frames: int, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip offsets to within ``max_shift`` of their running median over ``window_frames``.

    Returns the cleaned offsets and a boolean mask of the frames that changed.
    """
    offsets = np.asarray(offsets)
    trend = median_filter(offsets, size=window_frames, mode="nearest")
    cleaned = np.clip(offsets, trend - max_shift, trend + max_shift)
    return cleaned, cleaned != offsets


def motion_border(x_offset: np.ndarray, y_offset: np.ndarray, max_shift: float = 30.0) -> MotionBorder:
    """Motion border from rigid offsets, ignoring offsets beyond ``max_shift`` px as outliers (Allen
    ``get_max_correction_values``): left = max(x), right = -min(x), up = max(y), down = -min(y) of the
    inliers. As in Allen a side the movie never moved towards gets a negative value (e.g. right = -2 when
    every x offset is >= 2); it only widens the valid region past the frame edge, so no ROI changes label.
    ValueError when an axis has no inlier."""

    def largest(values: np.ndarray, axis: str) -> tuple[float, float]:
        inliers = values[np.abs(values) <= max_shift]
        if inliers.size == 0:
            raise ValueError(f"every {axis} offset is beyond the {max_shift} px motion-border limit")
        return float(inliers.max()), float(-inliers.min())

    left, right = largest(np.asarray(x_offset, dtype=np.float64), "x")
    up, down = largest(np.asarray(y_offset, dtype=np.float64), "y")
    return MotionBorder(left=left, right=right, up=up, down=down)


def clean_offsets(
    y_offset: np.ndarray,
    x_offset: np.ndarray,
    empty: tuple[int, int],
    fs: float,
    frame_shape: tuple[int, int],
    params: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Allen offset cleaning: clip outliers on the non-empty frames, zero shift for the empty ones.

    Returns cleaned (y, x) offsets and a mask of frames whose offset was clipped.
    """
    n_frames = len(y_offset)
    window = detrend_window_frames(fs, params["registration_outlier_detrend_window_s"])
    fraction = params["registration_outlier_max_shift_fraction"]
    start, stop = empty[0], n_frames - empty[1]
    y_clean, x_clean = np.zeros(n_frames, np.int32), np.zeros(n_frames, np.int32)
    clipped = np.zeros(n_frames, bool)
    if stop > start:
        y_clean[start:stop], y_clipped = clip_offset_outliers(
            y_offset[start:stop], window, int(frame_shape[0] * fraction)
        )
        x_clean[start:stop], x_clipped = clip_offset_outliers(
            x_offset[start:stop], window, int(frame_shape[1] * fraction)
        )
        clipped[start:stop] = y_clipped | x_clipped
    return y_clean, x_clean, clipped


def subpixel_offsets(offset: np.ndarray, raw: np.ndarray, refined: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Cleaned integer ``offset`` plus, on the frames in ``keep``, the sub-pixel correction of a whole-frame
    correlation: ``refined`` minus suite2p's integer ``raw`` shift, where they agree within a pixel (a true
    residual of up to half a pixel, estimated by two noisy peaks, can round the other way in either)."""
    fraction = np.asarray(refined, np.float64) - np.asarray(raw, np.float64)
    fraction = np.where(np.abs(fraction) <= 1.0, fraction, 0.0)
    return np.asarray(offset, np.float64) + np.where(keep, fraction, 0.0)


def intensity_scale(minimum: float, maximum: float) -> float:
    """Largest power-of-two factor <= 1 that brings [minimum, maximum], once rounded, into int16.

    Half a unit of overshoot is tolerated and clipped by `to_int16` (uint16 65535 -> 32767 at 0.5).
    """
    scale = 1.0
    while maximum * scale > INT16_MAX + 0.5 or minimum * scale < INT16_MIN - 0.5:
        scale /= 2
    return scale


def saturation_level(dtype: str, scale: float) -> float:
    """The value a saturated pixel of raw type ``dtype`` has in the registered movie (inf for floats)."""
    kind = np.dtype(dtype)
    if kind.kind not in "iu":
        return float("inf")
    return float(min(np.iinfo(kind).max * scale, INT16_MAX))


def to_int16(frames: np.ndarray, scale: float) -> np.ndarray:
    """Frames as int16 for suite2p: ``round(value * scale)`` (exact for integer input with scale 1)."""
    if frames.dtype == np.int16 and scale == 1.0:
        return np.ascontiguousarray(frames)
    if frames.dtype.kind in "iu" and scale == 1.0:
        return frames.astype(np.int16)
    return np.clip(np.rint(frames * scale), INT16_MIN, INT16_MAX).astype(np.int16)


class _Int16Frames:
    """A movie seen by suite2p: ``shape`` and int16 frames by slice or index array, converted
    ``CONVERT_FRAMES`` at a time into the output (a 5000-frame reference stack costs its int16 bytes only)."""

    def __init__(self, movie: TiffMovie, scale: float) -> None:
        self._movie, self._scale = movie, scale
        self.shape = movie.shape

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        indices = np.arange(self.shape[0])[key]
        out = np.empty((indices.size, *self.shape[1:]), np.int16)
        for start in range(0, indices.size, CONVERT_FRAMES):
            part = indices[start : start + CONVERT_FRAMES]
            out[start : start + part.size] = to_int16(self._movie[part], self._scale)
        return out


class RegisteredMovie:
    """Read-only registered movie file: int16, little-endian, C order, (frames, height, width), no header.

    Every indexing reads just the frames asked for from the file into a new native int16 array, so
    memory use follows the chunk read; ``np.asarray(movie)`` loads the whole movie.
    """

    dtype = np.dtype(np.int16)
    _disk_dtype = np.dtype("<i2")

    def __init__(self, path: Path, shape: tuple[int, int, int]) -> None:
        self.path = path
        self.shape = tuple(int(n) for n in shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        """Frames by int, slice or 1-D index sequence, optionally followed by indices within the frames
        (``movie[t, y, x]``)."""
        key, within = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        indices = np.arange(self.shape[0])[key]
        if indices.ndim > 1:
            raise TypeError("index frames of a registered movie with an int, a slice or a 1-D index sequence")
        with self.path.open("rb", buffering=0) as handle:
            frames = read_raw_frames(handle, self.path, 0, self._disk_dtype, self.shape[1:], np.atleast_1d(indices))
        if indices.ndim == 0:
            return frames[0][within]
        return frames[(slice(None), *within)]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The whole movie, read into memory."""
        if copy is False:
            raise ValueError(f"registered movie {self.path} is read from its file: it cannot be viewed without a copy")
        frames = self[:]
        return frames if dtype is None else frames.astype(dtype, copy=False)


def open_registered_movie(path: str | Path, shape: tuple[int, int, int]) -> RegisteredMovie:
    """Open a registered movie written by `register_movie` for reading, checking its size."""
    path = Path(path)
    if not path.is_file():
        raise MovieError(path, "registered movie not found")
    expected = int(np.prod(shape)) * 2
    if path.stat().st_size != expected:
        raise MovieError(path, f"registered movie has {path.stat().st_size} bytes, {expected} expected for {shape}")
    return RegisteredMovie(path, shape)


def _torch_device(device: str | None) -> Any:
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _suite2p_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The suite2p settings that `rigid.compute_reference` and `rigid.rigid_shifts` read."""
    return {
        "norm_frames": params["registration_norm_frames"],
        "smooth_sigma": params["registration_smooth_sigma"],
        "spatial_taper": params["registration_spatial_taper"],
        "maxregshift": params["registration_maxregshift"],
    }


def nonrigid_block_size(block_size: tuple[int, int], frame_shape: tuple[int, int]) -> tuple[int, int]:
    """The non-rigid block (height, width): at most half the frame on each axis, so every axis holds at least
    two blocks (suite2p's block-shift interpolation fails on an axis of one block, e.g. 128 px blocks on a
    128 px frame)."""
    return tuple(max(1, min(int(block), side // 2)) for block, side in zip(block_size, frame_shape, strict=True))


def _register_frames_kwargs(params: dict[str, Any], frame_shape: tuple[int, int]) -> dict[str, Any]:
    """Keyword arguments of suite2p ``register_frames`` from our parameter names."""
    block_size = tuple(params["registration_block_size"])
    if params["registration_nonrigid"]:
        block_size = nonrigid_block_size(block_size, frame_shape)
    return {
        "batch_size": int(params["registration_batch_size"]),
        "norm_frames": params["registration_norm_frames"],
        "smooth_sigma": params["registration_smooth_sigma"],
        "spatial_taper": params["registration_spatial_taper"],
        "block_size": block_size,
        "nonrigid": bool(params["registration_nonrigid"]),
        "maxregshift": params["registration_maxregshift"],
        "smooth_sigma_time": params["registration_smooth_sigma_time"],
        "snr_thresh": params["registration_snr_thresh"],
        "maxregshiftNR": params["registration_maxregshift_nonrigid"],
        "subpixel": params["registration_subpixel"],
    }


def register_movie(
    movie_path: str | Path,
    out_path: str | Path,
    fs: float,
    params: dict[str, Any],
    device: str | None = None,
    frame_shape: tuple[int, int] | None = None,
) -> RegistrationResult:
    """Motion-correct a TIFF movie and write the registered movie once to ``out_path``.

    ``fs`` is the expected frame rate (checked against the file's metadata); ``params`` holds the
    ``registration_*`` keys of `ALLEN_OPHYS_PARAMS`; ``device`` is a torch device name ("cpu",
    "cuda"; default: cuda when available). ``out_path`` is written under a temporary name in its
    folder and renamed when complete. ``frame_shape`` (height, width), when given, is what the movie's
    frames must measure (the session record); a mismatch raises MovieError before anything is written.
    See the module docstring for the steps, format and sign convention.
    """
    elapsed: dict[str, float] = {}
    clock = time.perf_counter()
    batch = int(params["registration_batch_size"])
    out_path = Path(out_path)
    with TiffMovie(movie_path, expected_frame_rate_hz=fs) as movie:
        n_frames, height, width = movie.shape
        if frame_shape is not None and (height, width) != tuple(frame_shape):
            raise MovieError(
                movie_path,
                f"frames are {height} x {width} pixels (height x width) but the manifest says "
                f"{frame_shape[0]} x {frame_shape[1]}",
            )
        stats = frame_statistics(movie, batch)
        scale = intensity_scale(stats.minimum.min(), stats.maximum.max())
        empty = find_empty_frames(stats.mean, params["registration_empty_frame_sigma"])
        frames = _Int16Frames(movie, scale)
        elapsed["scan"] = time.perf_counter() - clock

        clock = time.perf_counter()
        from suite2p.registration.register import register_frames

        torch_device = _torch_device(device)
        elapsed["import"] = time.perf_counter() - clock

        clock = time.perf_counter()
        first, stop = empty[0], n_frames - empty[1]
        n_reference = min(int(params["registration_reference_max_frames"]), stop - first)
        reference_index = np.linspace(first, stop, n_reference + 1).astype(int)[:-1]
        reference = compute_reference(frames[reference_index], _suite2p_settings(params))
        elapsed["reference"] = time.perf_counter() - clock

        clock = time.perf_counter()
        if params["registration_nonrigid"] or params["registration_smooth_sigma_time"] > 0:
            _, _, _, offsets, blocks, *_ = register_frames(
                frames,
                reference,
                device=torch_device,
                apply_shifts=False,
                **_register_frames_kwargs(params, (height, width)),
            )
            y_raw, x_raw, correlation, y_block, x_block, block_correlation = offsets[:6]
        else:  # the same rigid pass in bounded memory
            y_raw, x_raw, correlation = rigid_shifts(frames, reference, _suite2p_settings(params))
            y_block = x_block = block_correlation = blocks = None
        y_raw, x_raw = y_raw.astype(np.int32), x_raw.astype(np.int32)
        y_offset, x_offset, clipped = clean_offsets(y_raw, x_raw, empty, fs, (height, width), params)
        is_valid = np.zeros(n_frames, bool)
        is_valid[first:stop] = True
        if y_block is not None:
            reset = clipped | ~is_valid
            y_block, x_block = y_block.astype(np.float32), x_block.astype(np.float32)
            y_block[reset], x_block[reset] = 0.0, 0.0
        elapsed["shifts"] = time.perf_counter() - clock

        clock = time.perf_counter()
        average, maximum = _write_registered(
            frames, out_path, y_offset, x_offset, y_block, x_block, blocks, batch, torch_device
        )
        elapsed["write"] = time.perf_counter() - clock
        if params.get("registration_subpixel_rigid", False):
            clock = time.perf_counter()
            whitening = params.get("registration_subpixel_whitening", 1.0)
            y_fine, x_fine, _ = rigid_shifts(frames, reference, _suite2p_settings(params), True, whitening)
            keep = is_valid & ~clipped
            y_offset = subpixel_offsets(y_offset, y_raw, y_fine, keep)
            x_offset = subpixel_offsets(x_offset, x_raw, x_fine, keep)
            elapsed["subpixel"] = time.perf_counter() - clock

    return RegistrationResult(
        registered_path=out_path,
        shape=(n_frames, height, width),
        x_offset=x_offset,
        y_offset=y_offset,
        x_offset_raw=x_raw,
        y_offset_raw=y_raw,
        correlation=np.asarray(correlation, dtype=np.float32),
        is_valid=is_valid,
        clipped=clipped,
        reference_image=np.asarray(reference),
        average_projection=average,
        max_projection=maximum,
        motion_border=motion_border(x_offset, y_offset, params["registration_motion_border_max_shift_px"]),
        intensity_scale=scale,
        nonrigid_x_offset=x_block,
        nonrigid_y_offset=y_block,
        nonrigid_correlation=None if block_correlation is None else np.asarray(block_correlation, np.float32),
        elapsed_s=elapsed,
        frame_mean=stats.mean,
        saturation_level=saturation_level(movie.info.dtype, scale),
    )


def _partial_pattern(out_path: Path) -> re.Pattern[str]:
    """Names of the temporary files of ``out_path``: ``.<name>.<host>-<pid>.<random>.part``."""
    return re.compile(rf"\.{re.escape(out_path.name)}\.(?P<owner>[A-Za-z0-9-]+-\d+)\.[A-Za-z0-9_]+\.part")


def _write_registered(
    frames: _Int16Frames,
    out_path: Path,
    y_offset: np.ndarray,
    x_offset: np.ndarray,
    y_block: np.ndarray | None,
    x_block: np.ndarray | None,
    blocks: Any,
    batch: int,
    device: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Shift every frame, write the int16 binary under a temporary name, rename; return (mean, max). The
    temporary files of this movie left by killed runs (their process gone) are removed first."""
    import torch
    from suite2p.registration.register import shift_frames

    n_frames, height, width = frames.shape
    total = np.zeros((height, width), np.float64)
    maximum = np.full((height, width), -np.inf, np.float32)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out_path.parent, _partial_pattern(out_path))  # a killed run's half-written movie
    handle, temporary = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.{owner()}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as registered:
            for start in range(0, n_frames, batch):
                stop = min(start + batch, n_frames)
                shifted = shift_frames(
                    torch.from_numpy(frames[start:stop]).to(device),
                    y_offset[start:stop].tolist(),
                    x_offset[start:stop].tolist(),
                    None if y_block is None else y_block[start:stop],
                    None if x_block is None else x_block[start:stop],
                    blocks,
                    device=device,
                )
                shifted = to_int16(np.asarray(shifted), 1.0)
                registered.write(np.ascontiguousarray(shifted, dtype="<i2").data)
                total += shifted.sum(axis=0, dtype=np.float64)
                np.maximum(maximum, shifted.max(axis=0), out=maximum)
        os.replace(temporary, out_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return (total / n_frames).astype(np.float32), maximum
