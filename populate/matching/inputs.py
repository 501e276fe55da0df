"""Inputs of cross-session cell matching: ROIs, experiments and the parameter set."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


class MatchingInputError(ValueError):
    """An experiment or ROI handed to cell matching is malformed."""


@dataclass(frozen=True)
class RoiPixels:
    """One segmented ROI of an experiment, as the pixel coordinates of its binary footprint.

    ys, xs: integer row and column of every pixel in the experiment's own field of view.
    """

    cell_roi_id: int
    ys: np.ndarray
    xs: np.ndarray
    valid: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "ys", np.asarray(self.ys, dtype=np.int64))
        object.__setattr__(self, "xs", np.asarray(self.xs, dtype=np.int64))

    @classmethod
    def from_mask(cls, cell_roi_id: int, mask: np.ndarray, valid: bool = True) -> RoiPixels:
        """Build an ROI from a full-FOV boolean mask (any nonzero pixel belongs to the ROI)."""
        ys, xs = np.nonzero(np.asarray(mask))
        return cls(int(cell_roi_id), ys, xs, bool(valid))


@dataclass(frozen=True)
class ExperimentROIs:
    """One experiment of a container: its average projection (Ly, Lx) and its ROIs."""

    experiment_id: int
    average_projection: np.ndarray
    rois: tuple[RoiPixels, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        image = np.asarray(self.average_projection, dtype=float)
        where = f"experiment {self.experiment_id}"
        if image.ndim != 2 or min(image.shape) < 16:
            raise MatchingInputError(f"{where}: average projection must be 2-D and at least 16x16, got {image.shape}")
        if not np.all(np.isfinite(image)):
            raise MatchingInputError(f"{where}: average projection holds NaN or infinite values")
        object.__setattr__(self, "average_projection", image)
        object.__setattr__(self, "rois", tuple(self.rois))
        seen: set[int] = set()
        for roi in self.rois:
            if roi.cell_roi_id in seen:
                raise MatchingInputError(f"{where}: cell_roi_id {roi.cell_roi_id} appears twice")
            seen.add(roi.cell_roi_id)
            ys, xs = np.asarray(roi.ys), np.asarray(roi.xs)
            if ys.size == 0 or ys.shape != xs.shape:
                raise MatchingInputError(f"{where}: ROI {roi.cell_roi_id} has no pixels or unequal ys/xs")
            if ys.min() < 0 or xs.min() < 0 or ys.max() >= image.shape[0] or xs.max() >= image.shape[1]:
                raise MatchingInputError(
                    f"{where}: ROI {roi.cell_roi_id} has pixels outside the {image.shape} field of view"
                )

    @classmethod
    def from_masks(
        cls,
        experiment_id: int,
        average_projection: np.ndarray,
        masks: np.ndarray,
        cell_roi_ids: list[int] | np.ndarray,
        valid: list[bool] | np.ndarray | None = None,
    ) -> ExperimentROIs:
        """Build an experiment from a (n_rois, Ly, Lx) stack of full-FOV boolean masks."""
        masks = np.asarray(masks)
        valid = np.ones(len(cell_roi_ids), bool) if valid is None else np.asarray(valid, bool)
        if masks.shape[0] != len(cell_roi_ids) or len(valid) != len(cell_roi_ids):
            raise MatchingInputError(
                f"experiment {experiment_id}: {masks.shape[0]} masks, {len(cell_roi_ids)} cell_roi_ids "
                f"and {len(valid)} valid flags differ in number"
            )
        pairs = zip(cell_roi_ids, masks, valid, strict=True)
        rois = tuple(RoiPixels.from_mask(rid, mask, ok) for rid, mask, ok in pairs)
        return cls(int(experiment_id), average_projection, rois)

    @property
    def shape(self) -> tuple[int, int]:
        return self.average_projection.shape


@dataclass(frozen=True)
class MatchingParams:
    """Parameters of cross-session matching (defaults: the Allen n-way matching values).

    Registration settings are specified for a `reference_fov_px` (512 px) field of view. For a smaller image
    the edge crop, the CLAHE tile count and the SSIM sigma scale by min(Ly, Lx) / reference_fov_px, so that
    crop and CLAHE tiles keep the same size relative to the image and a cell (e.g. 160 px: crop 12 px,
    8 x 8 CLAHE tiles, SSIM sigma 6.25). They never scale up.

    min_ssim (ours; registered pairs of the test tissue score 0.6-0.8, unrelated synthetic 64 px fields of view
    up to 0.27, so 0.2 let them through): a best candidate below it is a failed registration.
    rotation_search_deg / rotation_step_deg (ours): the grid of rotations over which the phase-correlation
    candidate is repeated, so that it also starts ECC well when two sessions differ by a few degrees.
    """

    max_distance_px: float = 10.0
    far_pair_cost: float = 999.0
    min_edge_weight: float = 0.002
    missing_pair_cost: float = 1000.0
    clahe_grid: int = 24
    clahe_clip: float = 2.5
    edge_buffer_px: int = 40
    reference_fov_px: int = 512
    ecc_max_iterations: int = 1000
    ecc_epsilon: float = 1.5e-7
    ecc_gauss_filter: int = 5
    ssim_sigma: float = 20.0
    min_ssim: float = 0.35
    rotation_search_deg: float = 8.0
    rotation_step_deg: float = 1.0

    def __post_init__(self) -> None:
        problems = [f"{k} must be > 0" for k, v in asdict(self).items() if k not in _MAY_BE_ZERO and not v > 0]
        if self.edge_buffer_px < 0:
            problems.append("edge_buffer_px must be >= 0")
        if self.ecc_gauss_filter % 2 == 0:
            problems.append("ecc_gauss_filter must be odd")
        if problems:
            raise ValueError(f"MatchingParams: {'; '.join(problems)}")


_MAY_BE_ZERO = ("edge_buffer_px", "min_ssim")
