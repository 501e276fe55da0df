"""ROI assignment between two registered experiments.

The moving experiment's masks are warped into the fixed frame (bilinear sampling of each binary mask,
kept where >= 0.5; pixels that leave the fixed field of view are dropped). For every fixed/moving ROI pair:
cost = centroid_distance / max_distance_px + (1 - IoU), and a distance above max_distance_px replaces the
distance term by far_pair_cost (999). Edges carry weight 1 / (1 + cost) and only weights above
min_edge_weight (0.002) enter the graph, which leaves exactly the pairs within max_distance_px.

The maximum-weight matching of that bipartite graph is solved with scipy's linear_sum_assignment on the
weight matrix (zero where there is no edge, maximize=True), dropping assigned pairs of zero weight: all
weights are positive, so a maximum-weight assignment restricted to its nonzero pairs is a maximum-weight
matching (the problem networkx.max_weight_matching solves), found in polynomial time even for hundreds of
ROIs and with deterministic tie-breaking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from brainobs.populate.matching.inputs import ExperimentROIs, MatchingParams, RoiPixels


@dataclass(frozen=True)
class RoiPair:
    """One assigned pair: a fixed-experiment ROI and a moving-experiment ROI."""

    fixed_roi_id: int
    moving_roi_id: int
    distance_px: float
    iou: float
    cost: float


@dataclass(frozen=True)
class PairMatch:
    """Assignment between two experiments.

    candidate_costs: cost of every (fixed_roi_id, moving_roi_id) edge of the matching graph, assigned or not
        (with the default parameters: every pair within max_distance_px).
    match_fraction: n_matched / min(n_fixed_rois, n_moving_rois) (0 when either experiment has no ROIs).
    """

    fixed_experiment_id: int
    moving_experiment_id: int
    n_fixed_rois: int
    n_moving_rois: int
    matches: tuple[RoiPair, ...]
    candidate_costs: dict[tuple[int, int], float]

    @property
    def n_matched(self) -> int:
        return len(self.matches)

    @property
    def match_fraction(self) -> float:
        fewer = min(self.n_fixed_rois, self.n_moving_rois)
        return self.n_matched / fewer if fewer else 0.0

    @property
    def mean_cost(self) -> float:
        return float(np.mean([m.cost for m in self.matches])) if self.matches else math.nan


def footprints_in_frame(rois: tuple[RoiPixels, ...], matrix: np.ndarray, shape: tuple[int, int]) -> list[np.ndarray]:
    """Each ROI's footprint after the 2x3 `matrix` (source (x, y, 1) -> target (x, y)), as sorted flat
    indices into a target frame of `shape`; pixels outside the target frame are dropped."""
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    out = []
    for roi in rois:
        y0, x0 = int(roi.ys.min()) - 1, int(roi.xs.min()) - 1
        local = np.zeros((int(roi.ys.max()) - y0 + 2, int(roi.xs.max()) - x0 + 2))
        local[roi.ys - y0, roi.xs - x0] = 1.0
        h, w = local.shape
        corners = np.array([[x0, y0, 1], [x0 + w, y0, 1], [x0, y0 + h, 1], [x0 + w, y0 + h, 1]], float) @ matrix.T
        lo = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
        hi = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, [shape[1], shape[0]])
        if np.any(hi <= lo):
            out.append(np.empty(0, dtype=np.int64))
            continue
        ty, tx = np.mgrid[lo[1] : hi[1], lo[0] : hi[0]]
        sx = inverse[0, 0] * tx + inverse[0, 1] * ty + inverse[0, 2] - x0
        sy = inverse[1, 0] * tx + inverse[1, 1] * ty + inverse[1, 2] - y0
        inside = ndimage.map_coordinates(local, [sy, sx], order=1, cval=0.0) >= 0.5
        out.append(np.sort(ty[inside].astype(np.int64) * shape[1] + tx[inside]))
    return out


def _centroids(footprints: list[np.ndarray], width: int) -> np.ndarray:
    """(n, 2) centroid (x, y) of each flat-index footprint; NaN for an empty one."""
    return np.array(
        [[np.mean(f % width), np.mean(f // width)] if f.size else [np.nan, np.nan] for f in footprints]
    ).reshape(-1, 2)


def match_pair(fixed: ExperimentROIs, moving: ExperimentROIs, matrix: np.ndarray, params: MatchingParams) -> PairMatch:
    """Assign the moving experiment's ROIs to the fixed one's, given the moving -> fixed 2x3 `matrix`."""
    shape = fixed.shape
    identity = np.eye(2, 3)
    fixed_fp = footprints_in_frame(fixed.rois, identity, shape)
    moving_fp = footprints_in_frame(moving.rois, np.asarray(matrix, float), shape)
    distance = cdist(_centroids(fixed_fp, shape[1]), _centroids(moving_fp, shape[1]))
    distance = distance.reshape(len(fixed_fp), len(moving_fp))
    distance_term = np.where(
        distance <= params.max_distance_px, distance / params.max_distance_px, params.far_pair_cost
    )
    distance_term[np.isnan(distance)] = np.inf
    weight = np.zeros_like(distance)
    costs: dict[tuple[int, int], tuple[float, float, float]] = {}
    # 1 - IoU >= 0, so a pair whose distance term alone leaves the weight at or below min_edge_weight never
    # becomes an edge; only the others need their IoU.
    for i, j in zip(*np.nonzero(1.0 / (1.0 + distance_term) > params.min_edge_weight), strict=True):
        overlap = np.intersect1d(fixed_fp[i], moving_fp[j], assume_unique=True).size
        iou = overlap / (fixed_fp[i].size + moving_fp[j].size - overlap)
        cost = distance_term[i, j] + (1.0 - iou)
        if 1.0 / (1.0 + cost) > params.min_edge_weight:
            weight[i, j] = 1.0 / (1.0 + cost)
            costs[(i, j)] = (float(distance[i, j]), float(iou), float(cost))
    rows, cols = linear_sum_assignment(weight, maximize=True)
    matches = tuple(
        RoiPair(fixed.rois[i].cell_roi_id, moving.rois[j].cell_roi_id, *costs[(i, j)])
        for i, j in zip(rows, cols, strict=True)
        if weight[i, j] > 0
    )
    candidate_costs = {(fixed.rois[i].cell_roi_id, moving.rois[j].cell_roi_id): c[2] for (i, j), c in costs.items()}
    return PairMatch(
        fixed.experiment_id, moving.experiment_id, len(fixed.rois), len(moving.rois), matches, candidate_costs
    )
