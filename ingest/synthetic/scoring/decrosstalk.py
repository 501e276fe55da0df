"""Ghost detection scored against the synthetic truth of a mesoscope pair (docs/methods.md).

The truth of an ROI of plane A: it is a ghost when the calcium activity its mask sees from the cells of the
paired plane B, scaled by B's crosstalk into A, exceeds the activity it sees from A's own cells. A cell's
activity in a mask is its resting brightness x dF/F per spike x its footprint averaged over the mask. An ROI
is flagged when decrosstalk gave it any label (a ghost, or no activity of its own after unmixing).
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


def _activity_in_masks(masks: np.ndarray, footprints: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n_roi,) summed weight x mean footprint over each mask; masks (n_roi, H, W) bool, footprints (n, H, W)."""
    flat_masks = masks.reshape(len(masks), -1).astype(float)
    sizes = np.maximum(flat_masks.sum(axis=1), 1.0)
    flat_footprints = footprints.reshape(len(footprints), -1)
    return (flat_masks @ flat_footprints.T / sizes[:, None]) @ weights


def ghost_truth(
    masks: np.ndarray,
    own_footprints: np.ndarray,
    own_weights: np.ndarray,
    partner_footprints: np.ndarray,
    partner_weights: np.ndarray,
    crosstalk: float,
) -> np.ndarray:
    """(n_roi,) bool: the partner's leaked activity in the mask exceeds the own plane's cells' activity."""
    own = _activity_in_masks(masks, own_footprints, own_weights)
    leaked = crosstalk * _activity_in_masks(masks, partner_footprints, partner_weights)
    return leaked > own


def score_ghosts(flagged: np.ndarray, truth: np.ndarray) -> GhostScore:
    """Compare per-ROI flags with the truth."""
    flagged, truth = np.asarray(flagged, dtype=bool), np.asarray(truth, dtype=bool)
    if flagged.shape != truth.shape:
        raise ValueError(f"{flagged.shape[0]} flags for {truth.shape[0]} ROIs")
    return GhostScore(int(truth.size), int(truth.sum()), int(flagged.sum()), int((flagged & truth).sum()))
