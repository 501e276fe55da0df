"""Conformance adapters of the 2-photon stages: dff, neuropil, demix and roi_postprocess.

Each adapter turns a case's sidecar and inputs into the arguments of the core function the pipeline table
calls (`brainobs.populate.ophys`), and names the results as the case's outputs (see `brainobs.conformance`).
"""

from __future__ import annotations

import numpy as np

from brainobs.populate.ophys import demix, dff, neuropil, rois


def _require(sidecar: dict, **expected: object) -> None:
    """Refuse a case whose fixed parameters differ from those brainobs implements (ValueError would read
    as a refusal of the input, so this is a RuntimeError: the case fails, naming the parameter)."""
    scalars = sidecar["scalars"]
    for name, value in expected.items():
        if name in scalars and scalars[name] != value:
            raise RuntimeError(f"{sidecar['case']}: {name}={scalars[name]!r}; brainobs implements {value!r}")


def _dff(sidecar: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    _require(sidecar, inactive_percentile=dff.INACTIVE_PERCENTILE, active_threshold_sigmas=dff.ACTIVE_SIGMAS,
             detrending=False)
    scalars = sidecar["scalars"]
    fs = float(scalars["frame_rate_hz"])
    long_window = dff.window_frames(fs, float(scalars["long_baseline_filter_s"]))
    short_window = dff.window_frames(fs, float(scalars["short_filter_s"]))
    result = dff.dff_trace(inputs["trace"], long_window, short_window)
    out = {
        "dff": result.dff,
        "sigma_dff": np.float64(result.sigma_dff),
        "num_small_baseline_frames": np.int64(result.num_small_baseline_frames),
    }
    if result.baseline is not None:
        out |= {
            "sigma_f": np.float64(result.sigma_f),
            "low_baseline": result.low_baseline,
            "active_mask": result.active_mask,
            "baseline": result.baseline,
        }
    return out


def _neuropil(sidecar: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    _require(
        sidecar,
        iterations=neuropil.PASSES,
        r_range=[neuropil.R_START, neuropil.R_STOP],
        dr=neuropil.R_STEP,
        dr_factor=neuropil.STEP_FACTOR,
        dt=1.0,
        fill_flag_threshold=neuropil.UNCONVERGED_R,
        fill_r_default=neuropil.FALLBACK_R,
        fill_min_rois=neuropil.MIN_CONVERGED_ROIS,
    )
    scalars = sidecar["scalars"]
    result = neuropil.estimate_neuropil(
        inputs["roi_traces"], inputs["neuropil_traces"], lam=float(scalars["lam"]), folds=int(scalars["folds"])
    )
    return {
        "r": result.r,
        "corrected": result.corrected,
        "rmse": result.rmse,
        "r_per_roi": result.r_estimated,
        "err_per_roi": result.error_estimated,
        "n_error_evaluations": result.n_error_evaluations,
        "filled": result.filled,
    }


ADAPTERS = {
    "dff": _dff,
    "neuropil": _neuropil,
}
