"""Neuropil subtraction F_C = F_M - r F_N with the Allen contamination-ratio estimate (ophys_etl
``neuropil_correction``, AllenSDK ``r_neuropil``; docs/methods.md).

For a candidate r, the smooth F_C solves (I + lam L^T L) F_C = F_M - r F_N (L = first difference,
lam = 0.05); the error is ``|sqrt(mean((F_C - (F_M - r F_N))^2)) / mean(F_M)|``, averaged over 4
contiguous folds of ``int(T / 4)`` frames (the tail is unused). Since F_C is linear in r, each fold's error
is computed in closed form from two banded solves. r is searched on ``np.arange(0, 2, 0.1)``; while the
pass's minimum sits on the grid's last point the range is extended to ``[rs[-1], 2 rs[-1] - rs[0]]`` and
the pass repeated; otherwise the next range is ``[rs[i-1], rs[i+1]]`` with the step times 0.1. Three passes
(steps 0.1, 0.01, 0.001) in all; the result is the lowest error seen. Negative r -> 0; when the mean of
``F_M - r F_N`` is <= 0, r = 0 and F_C = F_M.

Experiment level: when any r > 1, every r > 1 is replaced by the mean of the experiment's r values in
(0, 1] when at least 5 ROIs have one, else by 0.7; their F_C is recomputed, and the RMSE of every ROI is
recomputed at its final r. Rows with NaN (excluded ROIs) give NaN r, RMSE and F_C.

:func:`regress_neuropil` is the ``enhanced`` preset's alternative (``neuropil_method = "baseline_regression"``):
r is the slope of F_M against F_N over the frames without calcium transients, found by refitting
``F_M = r F_N + b`` (least squares) on the frames whose residual of the previous fit is at or below its median,
``REGRESSION_ITERATIONS`` times, starting from all frames. :func:`correct_neuropil` runs the method a
parameter set names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solveh_banded

SMOOTHING = 0.05
FOLDS = 4
R_START, R_STOP, R_STEP = 0.0, 2.0, 0.1
STEP_FACTOR = 0.1
PASSES = 3
R_MAX = 100.0  # upward range extension stops here (Allen has no bound; only a degenerate trace gets there)
UNCONVERGED_R = 1.0
MIN_CONVERGED_ROIS = 5
FALLBACK_R = 0.7
METHODS = ("allen", "baseline_regression")
REGRESSION_ITERATIONS = 5


@dataclass(frozen=True)
class NeuropilResult:
    """Per ROI, (n_roi,): r (contamination ratio), rmse (fold-averaged normalised error: the search minimum,
    or the error at the final r when the r > 1 rule applied), r_estimated and error_estimated (r and error
    before that rule), n_error_evaluations (grid points the search evaluated), filled (bool: r replaced by
    the rule); corrected: (n_roi, T) F_C."""

    r: np.ndarray
    rmse: np.ndarray
    r_estimated: np.ndarray
    corrected: np.ndarray
    error_estimated: np.ndarray
    n_error_evaluations: np.ndarray
    filled: np.ndarray


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


@dataclass(frozen=True)
class RSearch:
    """The grid search's answer: r (not yet clipped at 0), its error, and how many r values it evaluated."""

    r: float
    error: float
    n_evaluations: int


def search_r(error: FoldError, passes: int = PASSES) -> RSearch:
    """Allen's grid search of r (see the module docstring)."""
    low, high, step = R_START, R_STOP, R_STEP
    best_r, best_error = R_START, np.inf
    evaluations = 0
    done = 0
    while done < passes:
        grid = np.arange(low, high, step)
        errors = error(grid)
        evaluations += grid.size
        i = int(np.argmin(errors))
        if errors[i] < best_error:
            best_r, best_error = float(grid[i]), float(errors[i])
        if i == grid.size - 1 and grid[-1] < R_MAX:
            low, high = grid[-1], grid[-1] + (grid[-1] - grid[0])
            continue
        low, high = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        step *= STEP_FACTOR
        done += 1
    return RSearch(best_r, best_error, evaluations)


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
    rmse = np.full(n_roi, np.nan)
    evaluations = np.zeros(n_roi, dtype=np.int64)
    corrected = np.full_like(fm_all, np.nan)
    errors: list[FoldError | None] = [None] * n_roi
    for i in range(n_roi):
        fm, fn = fm_all[i], fn_all[i]
        if np.isnan(fm).any() or np.isnan(fn).any():
            continue
        errors[i] = FoldError(fm, fn, lam, folds)
        found = search_r(errors[i])
        r[i], rmse[i], evaluations[i] = max(found.r, 0.0), found.error, found.n_evaluations
        corrected[i] = fm - r[i] * fn
        if corrected[i].mean() <= 0:
            r[i] = 0.0
            corrected[i] = fm
    r_estimated, error_estimated = r.copy(), rmse.copy()
    filled = r > UNCONVERGED_R
    if filled.any():
        converged = r[(r > 0) & (r <= UNCONVERGED_R)]
        fill = float(converged.mean()) if converged.size >= MIN_CONVERGED_ROIS else FALLBACK_R
        r[filled] = fill
        corrected[filled] = fm_all[filled] - fill * fn_all[filled]
        rmse = np.array([float(e(r[i])) if e is not None else np.nan for i, e in enumerate(errors)])
    return NeuropilResult(r, rmse, r_estimated, corrected, error_estimated, evaluations, filled)


def baseline_slope(roi_trace: np.ndarray, neuropil_trace: np.ndarray, iterations: int = REGRESSION_ITERATIONS) -> float:
    """Slope r of ``F_M = r F_N + b`` over the frames without transients (module docstring); 0 for a flat F_N."""
    baseline = np.ones(roi_trace.size, dtype=bool)
    slope = 0.0
    for _ in range(iterations):
        fn, fm = neuropil_trace[baseline], roi_trace[baseline]
        spread = fn - fn.mean()
        denominator = float(np.dot(spread, spread))
        if denominator == 0:
            return 0.0
        slope = float(np.dot(spread, fm - fm.mean())) / denominator
        residual = roi_trace - slope * neuropil_trace
        baseline = residual <= np.median(residual)
    return slope


def regress_neuropil(
    roi_traces: np.ndarray, neuropil_traces: np.ndarray, lam: float = SMOOTHING, folds: int = FOLDS
) -> NeuropilResult:
    """Contamination ratios by baseline regression (module docstring) and corrected traces of (n_roi, T) ROI
    (F_M) and neuropil (F_N) traces. Negative r -> 0; r = 0 when ``F_M - r F_N`` has a mean <= 0, as in
    :func:`estimate_neuropil`; rmse is Allen's fold error at r (``lam``, ``folds``); nothing is filled."""
    fm_all = np.atleast_2d(np.asarray(roi_traces, dtype=np.float64))
    fn_all = np.atleast_2d(np.asarray(neuropil_traces, dtype=np.float64))
    if fm_all.shape != fn_all.shape or fm_all.ndim != 2:
        raise ValueError(f"ROI traces {fm_all.shape} and neuropil traces {fn_all.shape} must both be (n_roi, T)")
    r = np.full(fm_all.shape[0], np.nan)
    rmse = np.full(fm_all.shape[0], np.nan)
    corrected = np.full_like(fm_all, np.nan)
    for i, (fm, fn) in enumerate(zip(fm_all, fn_all, strict=True)):
        if np.isnan(fm).any() or np.isnan(fn).any():
            continue
        r[i] = max(baseline_slope(fm, fn), 0.0)
        corrected[i] = fm - r[i] * fn
        if corrected[i].mean() <= 0:
            r[i], corrected[i] = 0.0, fm
        rmse[i] = float(FoldError(fm, fn, lam, folds)(r[i]))
    none = np.zeros(fm_all.shape[0], dtype=np.int64)
    return NeuropilResult(r, rmse, r.copy(), corrected, rmse.copy(), none, none.astype(bool))


def correct_neuropil(roi_traces: np.ndarray, neuropil_traces: np.ndarray, params: dict) -> NeuropilResult:
    """Neuropil correction by the method an ophys parameter set names: ``neuropil_method`` "allen" (absent:
    Allen's, :func:`estimate_neuropil`) or "baseline_regression" (:func:`regress_neuropil`), with
    ``neuropil_lambda`` and ``neuropil_folds``."""
    method = params.get("neuropil_method", "allen")
    if method not in METHODS:
        raise ValueError(f"unknown neuropil_method {method!r}; choose one of {', '.join(METHODS)}")
    run = estimate_neuropil if method == "allen" else regress_neuropil
    return run(roi_traces, neuropil_traces, lam=params["neuropil_lambda"], folds=params["neuropil_folds"])
