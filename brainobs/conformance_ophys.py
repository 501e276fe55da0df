"""Conformance adapters of the 2-photon stages: dff, neuropil, demix and roi_postprocess.

Each adapter turns a case's sidecar and inputs into the arguments of the core function the pipeline table
calls (`brainobs.populate.ophys`), and names the results as the case's outputs (see `brainobs.conformance`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse

from brainobs.populate.ophys import demix, dff, neuropil, registration, rois


def _require(sidecar: dict, **expected: object) -> None:
    """Refuse a case whose fixed parameters differ from those brainobs implements (ValueError would read
    as a refusal of the input, so this is a RuntimeError: the case fails, naming the parameter)."""
    scalars = sidecar["scalars"]
    for name, value in expected.items():
        given = scalars.get(name, value)
        if isinstance(value, frozenset):
            given = frozenset(given)
        if given != value:
            raise RuntimeError(f"{sidecar['case']}: {name}={scalars[name]!r}; brainobs implements {value!r}")


def _dff(sidecar: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    _require(
        sidecar,
        inactive_percentile=dff.INACTIVE_PERCENTILE,
        active_threshold_sigmas=dff.ACTIVE_SIGMAS,
        detrending=False,
    )
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


def _allen_nan_order(masks: np.ndarray, result: demix.DemixResult, taking_part: np.ndarray) -> list[int]:
    """The NaN set's indices (into the ROIs taking part) in the order Allen's JSON lists them: Allen collects
    them in a Python set (per negative-baseline ROI: itself, then its two-hop neighbours; then the zero-baseline
    ROIs) and writes ``list(set)``; CPython orders a set of ints by hash, so the same insertions give the same
    order."""
    flat = sparse.csr_matrix(masks.reshape(masks.shape[0], -1).astype(np.float64))
    inserted: list[int] = []
    for seed in np.flatnonzero(result.negative_baseline[taking_part]):
        alone = np.zeros(flat.shape[0], dtype=bool)
        alone[seed] = True
        reached = np.flatnonzero(demix.two_hop_neighbours(flat, alone))
        inserted += [int(seed)] + [int(i) for i in reached if i != seed]
    inserted += [int(i) for i in np.flatnonzero(result.zero_baseline[taking_part])]
    order = list(set(inserted))
    if sorted(order) != np.flatnonzero(result.made_nan[taking_part]).tolist():
        raise RuntimeError("the NaN set rebuilt in Allen's order differs from demixing's")
    return order


def _roi_postprocess(sidecar: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    scalars = sidecar["scalars"]
    _require(sidecar, abs_threshold=None, morphological_ops=True)
    shape = (int(scalars["movie_height"]), int(scalars["movie_width"]))
    owner = inputs["pixel_roi"]
    n_input = int(scalars.get("n_input_rois", owner.max() + 1 if owner.size else 0))
    stat = [
        {"ypix": inputs["ypix"][owner == i], "xpix": inputs["xpix"][owner == i], "lam": inputs["lam"][owner == i]}
        for i in range(n_input)
    ]
    border = registration.motion_border(inputs["motion_x"], inputs["motion_y"], float(scalars["maximum_motion_shift"]))
    result = rois.postprocess_rois(
        stat,
        shape,
        border,
        aspect_ratio_threshold=float(scalars["aspect_ratio_threshold"]),
        binary_quantile=float(scalars["binary_quantile"]),
        npixel_threshold=int(scalars["npixel_threshold"]),
    )
    aspect_kept = np.array([result.dropped.get(i) != "aspect_ratio" for i in range(n_input)], dtype=bool)
    allen_id = np.cumsum(aspect_kept) - 1  # Allen numbers the ROIs that passed the aspect-ratio filter
    records = result.rois
    return {
        "max_frame_shift": np.array([border.left, border.right, border.up, border.down]),
        "aspect_ratio_kept": aspect_kept,
        "id": np.array([allen_id[r.source_index] for r in records], dtype=np.int64),
        "source_index": np.array([r.source_index for r in records], dtype=np.int64),
        "x": np.array([r.x for r in records], dtype=np.int64),
        "y": np.array([r.y for r in records], dtype=np.int64),
        "width": np.array([r.width for r in records], dtype=np.int64),
        "height": np.array([r.height for r in records], dtype=np.int64),
        "motion_border": np.array(["motion_border" in r.exclusion_labels for r in records], dtype=bool),
        "small_size": np.array(["small_size" in r.exclusion_labels for r in records], dtype=bool),
        "valid_roi": np.array([r.valid_roi for r in records], dtype=bool),
        "full_mask": np.array([r.full_mask() for r in records], dtype=bool).reshape(len(records), *shape),
        # the vectors' README says "before the morphology", but the stored values are the pixel counts of
        # the final masks (out_full_mask), which brainobs's records hold
        "binarized_npixels": np.array([r.npix for r in records], dtype=np.int64),
    }


def _demix(sidecar: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    scalars = sidecar["scalars"]
    _require(
        sidecar,
        exclude_labels=demix.NOT_DEMIXED_LABELS,
        negative_transient_window=demix.TRANSIENT_WINDOW,
        negative_transient_length=demix.TRANSIENT_LENGTH,
        negative_transient_std_devs=demix.TRANSIENT_SIGMAS,
    )
    masks, ids = inputs["masks"], inputs["roi_ids"]
    shape = (int(masks.shape[1]), int(masks.shape[2]))
    records = []
    for i, mask in enumerate(masks):
        ypix, xpix = np.nonzero(mask)
        records.append(rois.RoiRecord(i, i, ypix.astype(np.int64), xpix.astype(np.int64), shape))
    excluded = inputs["excluded"].astype(bool)
    named = scalars.get("roi_labels")
    labels = [named[str(int(i))] for i in ids] if named else [["union"] if e else [] for e in excluded]
    result = demix.demix_traces(inputs["movie"], records, inputs["traces"], labels)
    taking_part = ~np.isnan(result.demixed_before_nan).all(axis=1)
    if not np.array_equal(taking_part, ~excluded):
        raise RuntimeError(f"{sidecar['case']}: brainobs's label rule excludes other ROIs than in_excluded")
    return {
        "demixed": result.demixed_traces,
        "demixed_before_nan": result.demixed_before_nan,
        "dropped_frames": result.dropped_frames,
        "dropped_roi": np.isnan(result.demixed_traces).all(axis=1),
        "negative_transient_roi_ids": ids[result.negative_transient],
        "negative_baseline_roi_ids": ids[taking_part][_allen_nan_order(masks[taking_part], result, taking_part)],
        "negative_baseline_only": result.negative_baseline,
        "zero_baseline": result.zero_baseline,
        # Allen's runner re-creates its plot folder per negative-baseline ROI and fails (README); brainobs does not
        "runner_raises_file_exists_error": np.bool_(result.negative_baseline.any()),
    }


ADAPTERS = {
    "dff": _dff,
    "neuropil": _neuropil,
    "roi_postprocess": _roi_postprocess,
    "demix": _demix,
}
