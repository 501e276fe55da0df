"""Neuropil subtraction F_C = F_M - r F_N with the Allen contamination-ratio estimate.

For a candidate r, the smooth F_C solves (I + lam L^T L) F_C = F_M - r F_N (L = first difference,
lam = 0.05); the error is ``sqrt(mean((F_C - (F_M - r F_N))^2)) / mean(F_M)`` (absolute value), averaged
over 4 contiguous folds of ``T // 4`` frames. Since F_C is linear in r, each fold's error is computed in
closed form from two banded solves (exactly the same numbers as solving per r). r is searched on
[0, 2) in steps of 0.1 (the range is extended upwards while the minimum sits on its upper edge), then
refined 3 times around the minimum with steps 10x finer each time. Negative r -> 0; when the mean of
``F_M - r F_N`` is <= 0, r = 0 and F_C = F_M.

Experiment level: every r > 1 is replaced by the mean of the experiment's r values in (0, 1] when at least
5 ROIs have one, else by 0.7; their F_C and RMSE are recomputed. RMSE is always the fold-averaged error at
the final r. Rows with NaN (excluded ROIs) give NaN r, RMSE and F_C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solveh_banded

SMOOTHING = 0.05
FOLDS = 4
R_START, R_STOP, R_STEP = 0.0, 2.0, 0.1
REFINEMENTS = 3
R_MAX = 100.0
UNCONVERGED_R = 1.0
MIN_CONVERGED_ROIS = 5
FALLBACK_R = 0.7


@dataclass(frozen=True)
class NeuropilResult:
    """Per ROI: r (contamination ratio), rmse (fold-averaged normalised error at r), r_estimated (r before
    the experiment-level r > 1 rule), all (n_roi,); corrected: (n_roi, T) F_C."""

    r: np.ndarray
    rmse: np.ndarray
    r_estimated: np.ndarray
    corrected: np.ndarray


class FoldError:
    """Fold-averaged error of F_M - r F_N against its smooth version, as a function of r."""

    def __init__(self, roi_trace: np.ndarray, neuropil_trace: np.ndarray, lam: float = SMOOTHING, folds: int = FOLDS):
        fold_len = roi_trace.size // folds
        if fold_len < 2:
            raise ValueError(f"{roi_trace.size} frames are too few for {folds} folds")
        banded = np.zeros((2, fold_len))
        banded[0, 1:] = -lam
        banded[1] = 1.0 + 2.0 * lam
        banded[1, [0, -1]] = 1.0 + lam
        usable = folds * fold_len
        fm = roi_trace[:usable].reshape(folds, fold_len)
        fn = neuropil_trace[:usable].reshape(folds, fold_len)
        rhs = np.concatenate((fm, fn)).T
        smooth = solveh_banded(banded, rhs).T
        u = smooth[:folds] - fm
        v = smooth[folds:] - fn
        self._uu = np.einsum("ij,ij->i", u, u) / fold_len
        self._uv = np.einsum("ij,ij->i", u, v) / fold_len
        self._vv = np.einsum("ij,ij->i", v, v) / fold_len
        self._mean = fm.mean(axis=1)

    def __call__(self, r: np.ndarray | float) -> np.ndarray:
        """Error at each r (array or scalar)."""
        r = np.asarray(r, dtype=np.float64)[..., None]
        mse = np.maximum(self._uu - 2.0 * r * self._uv + r * r * self._vv, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(np.sqrt(mse) / self._mean).mean(axis=-1)


def search_r(error: FoldError) -> float:
    """Grid search of r (step 0.1 on [0, 2), then 3 refinements 10x finer around the minimum)."""
    low, high, step = R_START, R_STOP, R_STEP
    best_r, best_error = R_START, np.inf
    refinements = 0
    while refinements <= REFINEMENTS:
        grid = np.arange(low, high, step)
        errors = error(grid)
        i = int(np.argmin(errors))
        if errors[i] < best_error:
            best_r, best_error = float(grid[i]), float(errors[i])
        if i == grid.size - 1 and grid[-1] < R_MAX:
            low, high = grid[-1], grid[-1] + (grid[-1] - grid[0])
            continue
        low, high = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        step /= 10.0
        refinements += 1
    return max(best_r, 0.0)


def estimate_neuropil(
    roi_traces: np.ndarray, neuropil_traces: np.ndarray, lam: float = SMOOTHING, folds: int = FOLDS
) -> NeuropilResult:
    """Contamination ratios and corrected traces of (n_roi, T) ROI (F_M) and neuropil (F_N) traces."""
    fm_all = np.atleast_2d(np.asarray(roi_traces, dtype=np.float64))
    fn_all = np.atleast_2d(np.asarray(neuropil_traces, dtype=np.float64))
    if fm_all.shape != fn_all.shape or fm_all.ndim != 2:
        raise ValueError(f"ROI traces {fm_all.shape} and neuropil traces {fn_all.shape} must both be (n_roi, T)")
    n_roi = fm_all.shape[0]
    r = np.full(n_roi, np.nan)
    corrected = np.full_like(fm_all, np.nan)
    errors: list[FoldError | None] = [None] * n_roi
    for i in range(n_roi):
        fm, fn = fm_all[i], fn_all[i]
        if np.isnan(fm).any() or np.isnan(fn).any():
            continue
        errors[i] = FoldError(fm, fn, lam, folds)
        r[i] = search_r(errors[i])
        corrected[i] = fm - r[i] * fn
        if corrected[i].mean() <= 0:
            r[i] = 0.0
            corrected[i] = fm
    r_estimated = r.copy()
    unconverged = r > UNCONVERGED_R
    if unconverged.any():
        converged = r[(r > 0) & (r <= UNCONVERGED_R)]
        fill = float(converged.mean()) if converged.size >= MIN_CONVERGED_ROIS else FALLBACK_R
        r[unconverged] = fill
        corrected[unconverged] = fm_all[unconverged] - fill * fn_all[unconverged]
    rmse = np.array([float(e(r[i])) if e is not None else np.nan for i, e in enumerate(errors)])
    return NeuropilResult(r, rmse, r_estimated, corrected)
