"""ROI post-processing of suite2p detections into binary masks with exclusion labels (Allen ophys_etl
``postprocess_rois``; docs/methods.md).

In order, per ROI (suite2p ``stat`` entry with ``ypix``, ``xpix``, ``lam``):

1. drop it when its bounding box aspect ratio ``min(h / w, w / h)`` is <= 0.2;
2. binarize the weighted mask at the 10th percentile of its weights (keep weight >= threshold);
3. label ``motion_border`` when the bounding box crosses the motion-border inset, ``small_size`` when the
   binary mask has <= 50 pixels;
4. binary closing then opening with a radius-1 disk; drop it when nothing is left.

Labels are computed on the mask of step 2, before the morphological clean-up (as Allen does).
``valid_roi`` is True when an ROI has no exclusion label. Coordinates are pixels: y = row, x = column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage.morphology import closing, disk, opening

ASPECT_RATIO_THRESHOLD = 0.2
BINARY_QUANTILE = 0.1
NPIXEL_THRESHOLD = 50
_MORPH_MARGIN = 3


@dataclass(frozen=True)
class MotionBorder:
    """Largest motion correction in each direction, px (right = -min(x), left = max(x), down = -min(y),
    up = max(y) of the registration offsets)."""

    right: float = 0.0
    left: float = 0.0
    down: float = 0.0
    up: float = 0.0

    @classmethod
    def coerce(cls, border: Any) -> MotionBorder:
        """A MotionBorder from one, from a mapping with right/left/down/up keys, or from an object with
        those attributes (e.g. the registration result's border)."""
        if isinstance(border, cls):
            return border
        get = border.get if isinstance(border, Mapping) else lambda name: getattr(border, name)
        try:
            values = {name: float(get(name)) for name in ("right", "left", "down", "up")}
        except (AttributeError, TypeError) as err:
            raise ValueError(f"motion border needs right, left, down and up values in px, got {border!r}") from err
        return cls(**values)

    def valid_region(self, frame_shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """Inclusive (first_row, last_row, first_col, last_col) of the area no frame lost to motion."""
        height, width = frame_shape
        return (
            math.ceil(self.down),
            math.floor(height - self.up) - 1,
            math.ceil(self.right),
            math.floor(width - self.left) - 1,
        )

    def valid_mask(self, frame_shape: tuple[int, int]) -> np.ndarray:
        """Full-frame bool image, True inside :meth:`valid_region`."""
        first_row, last_row, first_col, last_col = self.valid_region(frame_shape)
        mask = np.zeros(frame_shape, dtype=bool)
        mask[max(first_row, 0) : max(last_row + 1, 0), max(first_col, 0) : max(last_col + 1, 0)] = True
        return mask


@dataclass(frozen=True)
class RoiRecord:
    """One binary ROI of an experiment.

    roi_index: position in the post-processed list (what traces are indexed by);
    source_index: index of the ROI in the segmentation output it came from;
    ypix, xpix: int64 pixel rows and columns, row-major sorted; frame_shape: (height, width) of the movie;
    exclusion_labels: sorted label names (empty when valid).
    """

    roi_index: int
    source_index: int
    ypix: np.ndarray
    xpix: np.ndarray
    frame_shape: tuple[int, int]
    exclusion_labels: tuple[str, ...] = field(default=())

    @property
    def npix(self) -> int:
        return int(self.ypix.size)

    @property
    def valid_roi(self) -> bool:
        return not self.exclusion_labels

    @property
    def x(self) -> int:
        return int(self.xpix.min())

    @property
    def y(self) -> int:
        return int(self.ypix.min())

    @property
    def width(self) -> int:
        return int(self.xpix.max()) - self.x + 1

    @property
    def height(self) -> int:
        return int(self.ypix.max()) - self.y + 1

    @property
    def centroid(self) -> tuple[float, float]:
        """(y, x) mean pixel position."""
        return float(self.ypix.mean()), float(self.xpix.mean())

    @property
    def mask(self) -> np.ndarray:
        """Bool (height, width) mask cropped to the bounding box at (y, x)."""
        cropped = np.zeros((self.height, self.width), dtype=bool)
        cropped[self.ypix - self.y, self.xpix - self.x] = True
        return cropped

    def full_mask(self) -> np.ndarray:
        """Bool mask on the full frame."""
        full = np.zeros(self.frame_shape, dtype=bool)
        full[self.ypix, self.xpix] = True
        return full

    @property
    def linear_index(self) -> np.ndarray:
        """Pixel indices into the flattened (row-major) frame."""
        return self.ypix * self.frame_shape[1] + self.xpix


@dataclass(frozen=True)
class PostprocessResult:
    """Kept ROIs and, for each dropped segmentation ROI, why: ``aspect_ratio``, ``empty`` or ``vanished``."""

    rois: list[RoiRecord]
    dropped: dict[int, str]


def records_from_masks(masks: np.ndarray) -> list[RoiRecord]:
    """Valid RoiRecords of (n, H, W) boolean masks, in order (roi_index = source_index = position)."""
    return [
        RoiRecord(k, k, *(np.asarray(a, np.int64) for a in np.nonzero(mask)), mask.shape)
        for k, mask in enumerate(np.asarray(masks, bool))
    ]


def aspect_ratio(ypix: np.ndarray, xpix: np.ndarray) -> float:
    """min(h / w, w / h) of the bounding box of the given pixels."""
    height = int(ypix.max() - ypix.min()) + 1
    width = int(xpix.max() - xpix.min()) + 1
    return min(height / width, width / height)


def binarize(lam: np.ndarray, quantile: float = BINARY_QUANTILE) -> np.ndarray:
    """Bool keep-mask: weights at or above their ``quantile``."""
    return lam >= np.quantile(lam, quantile)


def crosses_motion_border(
    ypix: np.ndarray, xpix: np.ndarray, frame_shape: tuple[int, int], border: MotionBorder
) -> bool:
    """True when the bounding box of the pixels leaves the motion border's valid region."""
    first_row, last_row, first_col, last_col = border.valid_region(frame_shape)
    return bool(ypix.min() < first_row or ypix.max() > last_row or xpix.min() < first_col or xpix.max() > last_col)


def _unique_pixels(
    ypix: np.ndarray, xpix: np.ndarray, lam: np.ndarray, frame_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-major sorted pixels with repeated pixels' weights summed (weights keep their dtype)."""
    linear = ypix * frame_shape[1] + xpix
    unique, inverse = np.unique(linear, return_inverse=True)
    weights = np.zeros(unique.size, dtype=lam.dtype)
    np.add.at(weights, inverse, lam)
    return unique // frame_shape[1], unique % frame_shape[1], weights


def _clean(ypix: np.ndarray, xpix: np.ndarray, frame_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Closing then opening with a radius-1 disk, on a crop with margin (same result as the full frame)."""
    row0 = max(int(ypix.min()) - _MORPH_MARGIN, 0)
    col0 = max(int(xpix.min()) - _MORPH_MARGIN, 0)
    row1 = min(int(ypix.max()) + _MORPH_MARGIN + 1, frame_shape[0])
    col1 = min(int(xpix.max()) + _MORPH_MARGIN + 1, frame_shape[1])
    crop = np.zeros((row1 - row0, col1 - col0), dtype=bool)
    crop[ypix - row0, xpix - col0] = True
    footprint = disk(1)
    crop = opening(closing(crop, footprint, mode="ignore"), footprint, mode="ignore")
    rows, cols = np.nonzero(crop)
    return rows.astype(np.int64) + row0, cols.astype(np.int64) + col0


def _pixels(entry: Mapping[str, Any], index: int, frame_shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    try:
        ypix = np.asarray(entry["ypix"], dtype=np.int64).ravel()
        xpix = np.asarray(entry["xpix"], dtype=np.int64).ravel()
        lam = np.asarray(entry["lam"]).ravel()
    except KeyError as err:
        raise ValueError(f"ROI {index}: missing {err.args[0]!r} (need ypix, xpix, lam)") from err
    if lam.dtype.kind != "f":
        lam = lam.astype(np.float64)
    if not ypix.size == xpix.size == lam.size:
        raise ValueError(f"ROI {index}: ypix, xpix and lam lengths differ ({ypix.size}, {xpix.size}, {lam.size})")
    height, width = frame_shape
    if ypix.size and (ypix.min() < 0 or xpix.min() < 0 or ypix.max() >= height or xpix.max() >= width):
        raise ValueError(f"ROI {index}: pixels outside the {height}x{width} frame")
    return ypix, xpix, lam


def postprocess_rois(
    stat: Sequence[Mapping[str, Any]],
    frame_shape: tuple[int, int],
    motion_border: Any,
    aspect_ratio_threshold: float = ASPECT_RATIO_THRESHOLD,
    binary_quantile: float = BINARY_QUANTILE,
    npixel_threshold: int = NPIXEL_THRESHOLD,
) -> PostprocessResult:
    """Binary ROI records with exclusion labels from suite2p-like ROIs (see the module docstring).

    stat: sequence of mappings with ``ypix``, ``xpix`` (int pixel rows/columns) and ``lam`` (weights).
    frame_shape: (height, width) of the movie. motion_border: :class:`MotionBorder` or equivalent (px).
    """
    frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
    border = MotionBorder.coerce(motion_border)
    records: list[RoiRecord] = []
    dropped: dict[int, str] = {}
    for index, entry in enumerate(stat):
        ypix, xpix, lam = _pixels(entry, index, frame_shape)
        if ypix.size == 0:
            dropped[index] = "empty"
            continue
        ypix, xpix, lam = _unique_pixels(ypix, xpix, lam, frame_shape)
        if aspect_ratio(ypix, xpix) <= aspect_ratio_threshold:
            dropped[index] = "aspect_ratio"
            continue
        keep = binarize(lam, binary_quantile)
        ypix, xpix = ypix[keep], xpix[keep]
        labels = []
        if crosses_motion_border(ypix, xpix, frame_shape, border):
            labels.append("motion_border")
        if ypix.size <= npixel_threshold:
            labels.append("small_size")
        ypix, xpix = _clean(ypix, xpix, frame_shape)
        if ypix.size == 0:
            dropped[index] = "vanished"
            continue
        records.append(RoiRecord(len(records), index, ypix, xpix, frame_shape, tuple(sorted(labels))))
    return PostprocessResult(records, dropped)
