"""Ghost detection scored against the synthetic truth of a mesoscope pair (docs/methods.md).

The truth of an ROI of plane A: it is a ghost when it lies on cells of the paired plane B (at least half of
its pixels inside their footprints at >= 0.5, the cells' masks) and the activity its mask sees from B's cells,
scaled by B's crosstalk into A, varies more than the activity it sees from A's own cells. A plane's activity in
a mask is the trace sum over its cells of footprint averaged over the mask x resting brightness x true dF/F
(the calcium, saturation included); its spread is the standard deviation over time. Which decrosstalk labels
count as a ghost call is `brainobs.api.score_decrosstalk`'s choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GhostScore:
    """Ghost detection of one plane or several: counts, precision and recall (NaN when undefined)."""

    n_rois: int
    n_ghosts: int  # true ghosts among the ROIs
    n_flagged: int
    n_correct: int  # flagged true ghosts

    @property
    def precision(self) -> float:
        return self.n_correct / self.n_flagged if self.n_flagged else float("nan")

    @property
    def recall(self) -> float:
        return self.n_correct / self.n_ghosts if self.n_ghosts else float("nan")

    def __add__(self, other: GhostScore) -> GhostScore:
        return GhostScore(
            self.n_rois + other.n_rois,
            self.n_ghosts + other.n_ghosts,
            self.n_flagged + other.n_flagged,
            self.n_correct + other.n_correct,
        )


def _mask_means(masks: np.ndarray, footprints: np.ndarray) -> np.ndarray:
    """(n_roi, n_cell) each cell's footprint averaged over each mask; masks (n_roi, H, W) bool."""
    flat_masks = masks.reshape(len(masks), -1).astype(float)
    sizes = np.maximum(flat_masks.sum(axis=1), 1.0)
    return flat_masks @ footprints.reshape(len(footprints), -1).T / sizes[:, None]


def _activity_spread(masks: np.ndarray, footprints: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """(n_roi,) standard deviation over time of the summed activity (n_cell, T) that each mask sees."""
    if len(footprints) == 0:
        return np.zeros(len(masks))
    return (_mask_means(masks, footprints) @ activity).std(axis=1)


def ghost_truth(
    masks: np.ndarray,
    own_footprints: np.ndarray,
    own_activity: np.ndarray,
    partner_footprints: np.ndarray,
    partner_activity: np.ndarray,
    crosstalk: float,
) -> np.ndarray:
    """(n_roi,) bool: the mask lies on the partner's cells and their leaked activity varies more than the own
    plane's cells' activity. Activities are (n_cell, T) traces in the same units (brightness x dF/F)."""
    partner_cells = (np.asarray(partner_footprints) >= 0.5).any(axis=0)
    sizes = np.maximum(masks.reshape(len(masks), -1).sum(axis=1), 1)
    on_partner = (masks & partner_cells).reshape(len(masks), -1).sum(axis=1) >= 0.5 * sizes
    own = _activity_spread(masks, own_footprints, own_activity)
    leaked = crosstalk * _activity_spread(masks, partner_footprints, partner_activity)
    return on_partner & (leaked > own)


def score_ghosts(flagged: np.ndarray, truth: np.ndarray) -> GhostScore:
    """Compare per-ROI flags with the truth."""
    flagged, truth = np.asarray(flagged, dtype=bool), np.asarray(truth, dtype=bool)
    if flagged.shape != truth.shape:
        raise ValueError(f"{flagged.shape[0]} flags for {truth.shape[0]} ROIs")
    return GhostScore(int(truth.size), int(truth.sum()), int(flagged.sum()), int((flagged & truth).sum()))
