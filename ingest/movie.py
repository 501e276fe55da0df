"""Read and validate a 2-photon movie stored as a multi-page TIFF.

A movie is one imaging plane: frames x height x width, one sample per pixel. Accepted pixel types:

- ``uint16`` (what the acquisition writes), ``int16`` (suite2p's own type),
- ``float32`` (a denoised movie, e.g. DeepInterpolation output, in the same photon-count-like units).

Anything else is refused: RGB or multi-channel data, ``bool``, 8-bit, ``float64`` (usually an analysis
product, not a recording). Frames that hold NaN or infinite values are refused by `frame_statistics`.

Metadata read when present (first match wins):

- frame rate: the tifffile JSON description (``frame_rate_hz`` or ``fps``), ImageJ ``finterval`` (s)
  or ``fps``, ScanImage ``SI.hRoiManager.scanFrameRate`` (parsed by tifffile, or a ``key = value`` line
  of the first page's description, as the synthetic generator writes it);
- pixel size: the tifffile JSON description (``pixel_size_um``), else the TIFF XResolution tag (pixels
  per unit) with ImageJ ``unit`` um / micron, or ResolutionUnit centimeter / millimeter / micrometer.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from types import TracebackType

import numpy as np
import tifffile

ACCEPTED_DTYPES = ("uint16", "int16", "float32")
MIN_FRAMES = 50
FRAME_RATE_TOLERANCE = 0.01  # relative disagreement allowed between metadata and the caller's frame rate
_MICRON_UNITS = ("um", "micron", "microns", "\\u00B5m", "µm")
_RESOLUTION_UNIT_UM = {3: 1e4, 4: 1e3, 5: 1.0}  # TIFF ResolutionUnit centimeter, millimeter, micrometer
_SCANIMAGE_FRAME_RATE = "SI.hRoiManager.scanFrameRate"
_SCANIMAGE_HEADER_RATE = re.compile(r"^\s*SI\.hRoiManager\.scanFrameRate\s*=\s*([-+0-9.eE]+)\s*$", re.MULTILINE)


class MovieError(ValueError):
    """A movie file that cannot be processed; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"movie {self.path}: {problem}")


@dataclass(frozen=True)
class MovieInfo:
    """Shape, pixel type and acquisition metadata of one movie."""

    path: Path
    n_frames: int
    height: int
    width: int
    dtype: str
    frame_rate_hz: float | None
    pixel_size_um: float | None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_frames, self.height, self.width)


@dataclass(frozen=True)
class FrameStatistics:
    """Per-frame mean, minimum and maximum intensity (float64 arrays of length n_frames)."""

    mean: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray


class _TiffWarnings(logging.Handler):
    """Collects tifffile's warnings: it logs (rather than raises) on a broken IFD chain."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class TiffMovie:
    """An open, validated TIFF movie giving frames by slice or index, in the file's pixel type.

    Use as a context manager. Frames of a contiguous uncompressed file are read straight from the file
    (`read_raw_frames`), so memory use follows the frames asked for; other files are read page by page
    through tifffile.
    """

    def __init__(self, path: str | Path, expected_frame_rate_hz: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MovieError(self.path, "file not found")
        self._tif = _open_tiff(self.path)
        self._raw: FileIO | None = None
        try:
            self._series = self._tif.series[0]
            self.info = self._validate(expected_frame_rate_hz)
            self._data_offset = self._series.dataoffset
            if self._data_offset is not None:
                self._raw = FileIO(self.path, "r")
        except BaseException:
            self._tif.close()
            raise

    def __enter__(self) -> TiffMovie:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        self._tif.close()

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.info.shape

    def __len__(self) -> int:
        return self.info.n_frames

    def __getitem__(self, key: slice | np.ndarray | list[int]) -> np.ndarray:
        """Frames ``key`` (a slice or an array of frame indices) as a (n, height, width) array."""
        indices = np.arange(self.info.n_frames)[key]
        if indices.ndim != 1:
            raise TypeError("index a movie with a slice or a 1-D sequence of frame indices")
        if self._raw is not None:
            dtype = np.dtype(self.info.dtype).newbyteorder(self._tif.byteorder)
            frame_shape = (self.info.height, self.info.width)
            return read_raw_frames(self._raw, self.path, self._data_offset, dtype, frame_shape, indices)
        try:
            if indices.size == 0:
                frames = np.empty((0, self.info.height, self.info.width), self.info.dtype)
            else:
                frames = self._tif.asarray(key=indices.tolist(), series=0)
        except (OSError, ValueError) as exc:
            raise MovieError(self.path, f"cannot read frames {indices[:1]}..{indices[-1:]}: {exc}") from exc
        frames = frames.reshape(indices.size, self.info.height, self.info.width)
        return np.array(frames, dtype=frames.dtype.newbyteorder("="))

    def iter_chunks(self, chunk_frames: int = 500) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_frame_index, frames)`` over the whole movie, ``chunk_frames`` at a time."""
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        for start in range(0, self.info.n_frames, chunk_frames):
            yield start, self[start : start + chunk_frames]

    def _validate(self, expected_frame_rate_hz: float | None) -> MovieInfo:
        series = self._series
        axes, shape = series.axes, tuple(series.shape)
        if 0 in shape:
            raise MovieError(self.path, f"movie has no frames (shape {shape})")
        if len(shape) not in (2, 3) or not axes.endswith("YX"):
            raise MovieError(
                self.path, f"expected one grayscale plane (frames, height, width), got axes {axes} {shape}"
            )
        dtype = np.dtype(series.dtype).name
        if dtype not in ACCEPTED_DTYPES:
            raise MovieError(self.path, f"pixel type {dtype} is not accepted; expected one of {ACCEPTED_DTYPES}")
        n_frames = shape[0] if len(shape) == 3 else 1
        height, width = shape[-2:]
        if n_frames < MIN_FRAMES:
            raise MovieError(self.path, f"only {n_frames} frames; at least {MIN_FRAMES} are needed")
        self._check_data_within_file()
        frame_rate = _metadata_frame_rate(self._tif)
        expected = expected_frame_rate_hz
        if (
            frame_rate is not None
            and expected is not None
            and abs(frame_rate - expected) > FRAME_RATE_TOLERANCE * expected
        ):
            raise MovieError(
                self.path, f"frame rate in metadata is {frame_rate:.4g} Hz but {expected:.4g} Hz was expected"
            )
        return MovieInfo(
            path=self.path,
            n_frames=n_frames,
            height=height,
            width=width,
            dtype=dtype,
            frame_rate_hz=frame_rate if frame_rate is not None else expected_frame_rate_hz,
            pixel_size_um=_metadata_pixel_size(self._tif),
        )

    def _check_data_within_file(self) -> None:
        size = self.path.stat().st_size
        offset = self._series.dataoffset
        if offset is not None:
            end = offset + self._series.nbytes
        else:
            end = max(
                int(page.dataoffsets[-1]) + int(page.databytecounts[-1])
                for page in self._series.pages
                if page is not None
            )
        if end > size:
            raise MovieError(self.path, f"truncated TIFF: image data ends at byte {end}, file has {size}")


def read_raw_frames(
    handle: FileIO,
    path: Path,
    data_offset: int,
    dtype: np.dtype,
    frame_shape: tuple[int, int],
    indices: np.ndarray,
) -> np.ndarray:
    """Frames ``indices`` of a headerless C-order movie stored at ``data_offset`` of an open raw file.

    ``dtype`` gives the pixel type and byte order on disk; the result is a new (len(indices), height,
    width) array in native byte order. Each run of consecutive indices is read in one call, straight
    into the result. Raises `MovieError` naming ``path`` and the frames when the file cannot be read
    or ends before them.
    """
    frames = np.empty((indices.size, *frame_shape), dtype.newbyteorder("="))
    if indices.size == 0:
        return frames
    frame_bytes = frames.itemsize * frame_shape[0] * frame_shape[1]
    bounds = (np.flatnonzero(np.diff(indices) != 1) + 1).tolist()
    for start, stop in zip([0, *bounds], [*bounds, indices.size], strict=True):
        first, last = int(indices[start]), int(indices[stop - 1])
        buffer = frames[start:stop].reshape(-1).view(np.uint8)
        try:
            got = _read_into(handle, buffer, data_offset + first * frame_bytes)
        except OSError as exc:
            raise MovieError(path, f"cannot read frames {first}..{last}: {exc}") from exc
        if got < buffer.size:
            raise MovieError(path, f"file ends within frames {first}..{last} ({got} of {buffer.size} bytes read)")
    if not dtype.isnative:
        frames.byteswap(inplace=True)
    return frames


def _read_into(handle: FileIO, buffer: np.ndarray, offset: int) -> int:
    """Fill ``buffer`` with the file's bytes from ``offset``; the count read, less at the end of the file."""
    view = memoryview(buffer)
    handle.seek(offset)
    done = 0
    while done < len(view):
        count = handle.readinto(view[done:])
        if not count:
            break
        done += count
    return done


def _open_tiff(path: Path) -> tifffile.TiffFile:
    """Open a TIFF and parse all its pages, turning tifffile's errors and warnings into `MovieError`."""
    handler = _TiffWarnings()
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    tif = None
    try:
        tif = tifffile.TiffFile(path)
        _ = tif.series[0].shape
        _ = len(tif.pages)  # walks the whole IFD chain, where a truncation shows up
    except Exception as exc:  # tifffile raises many types for a broken file
        if tif is not None:
            tif.close()
        raise MovieError(path, f"unreadable or truncated TIFF ({type(exc).__name__}: {exc})") from exc
    finally:
        log.removeHandler(handler)
    if handler.messages:
        tif.close()
        raise MovieError(path, f"corrupt or truncated TIFF ({handler.messages[0]})")
    return tif


def _metadata_frame_rate(tif: tifffile.TiffFile) -> float | None:
    for meta in tif.shaped_metadata or ():
        for key in ("frame_rate_hz", "fps"):
            if _positive(meta.get(key)):
                return float(meta[key])
    imagej = tif.imagej_metadata or {}
    if _positive(imagej.get("finterval")):
        return 1.0 / float(imagej["finterval"])
    if _positive(imagej.get("fps")):
        return float(imagej["fps"])
    scanimage = (tif.scanimage_metadata or {}).get("FrameData", {})
    if _positive(scanimage.get(_SCANIMAGE_FRAME_RATE)):
        return float(scanimage[_SCANIMAGE_FRAME_RATE])
    header = _SCANIMAGE_HEADER_RATE.search(tif.pages.first.description or "")
    if header and _positive(header.group(1)):
        return float(header.group(1))
    return None


def _metadata_pixel_size(tif: tifffile.TiffFile) -> float | None:
    for meta in tif.shaped_metadata or ():
        if _positive(meta.get("pixel_size_um")):
            return float(meta["pixel_size_um"])
    tags = tif.pages.first.tags
    resolution, unit = tags.get("XResolution"), tags.get("ResolutionUnit")
    if resolution is None or not all(_positive(v) for v in resolution.value):
        return None
    pixels_per_unit = resolution.value[0] / resolution.value[1]
    if str((tif.imagej_metadata or {}).get("unit", "")).lower() in _MICRON_UNITS:
        return 1.0 / pixels_per_unit
    microns_per_unit = _RESOLUTION_UNIT_UM.get(int(unit.value) if unit is not None else 0)
    return None if microns_per_unit is None else microns_per_unit / pixels_per_unit


def _positive(value: object) -> bool:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number > 0


def read_movie_info(path: str | Path, expected_frame_rate_hz: float | None = None) -> MovieInfo:
    """Validate a movie's header and return its shape, pixel type and metadata.

    ``expected_frame_rate_hz`` (from the session record) is checked against the metadata when the file
    has a frame rate, and becomes the movie's frame rate when it has none.
    Raises `MovieError` for a missing, unreadable or truncated file, a refused pixel type or layout,
    zero frames, fewer than `MIN_FRAMES` frames, or a contradicting frame rate.
    """
    with TiffMovie(path, expected_frame_rate_hz) as movie:
        return movie.info


def frame_statistics(movie: TiffMovie, chunk_frames: int = 500) -> FrameStatistics:
    """Read the whole movie once and return per-frame mean, minimum and maximum.

    Raises `MovieError` naming the first frame that holds NaN or infinite values.
    """
    n = len(movie)
    mean, minimum, maximum = np.empty(n), np.empty(n), np.empty(n)
    for start, frames in movie.iter_chunks(chunk_frames):
        flat = frames.reshape(frames.shape[0], -1)
        if flat.dtype.kind == "f":
            finite = np.isfinite(flat).all(axis=1)
            if not finite.all():
                bad = start + int(np.flatnonzero(~finite)[0])
                raise MovieError(movie.path, f"frame {bad} holds NaN or infinite values")
        stop = start + flat.shape[0]
        mean[start:stop] = flat.mean(axis=1, dtype=np.float64)
        minimum[start:stop] = flat.min(axis=1)
        maximum[start:stop] = flat.max(axis=1)
    return FrameStatistics(mean=mean, minimum=minimum, maximum=maximum)
