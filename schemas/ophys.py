"""2-photon processing as tables, one per stage, so every number's lineage is visible.

OphysParamSet -> OphysSelection (Experiment x parameter set) -> MotionCorrection -> Segmentation (Part ROI,
ExclusionLabel) -> Fluorescence (Part Trace: ROI and neuropil) -> Demixing (Part Trace) -> NeuropilCorrection
(Part Trace: corrected, r, RMSE) -> DeltaFOverF (Part Trace: dF/F, sigma) -> EventDetection (Part Event).

Each make fetches, calls one core function of ``brainobs.populate.ophys``, inserts. The long steps use the
three-part make so no transaction stays open while suite2p runs. Per-ROI arrays go to the object store
(``<npy@main>``); the registered movie is written once into the store and referenced (``<filepath@main>``).
"""

from __future__ import annotations

import math

import datajoint as dj
import numpy as np

from brainobs.populate.ophys import dff, events, extraction, neuropil, rois
from brainobs.populate.ophys.demix import demix_traces
from brainobs.populate.ophys.params import ALLEN_OPHYS_PARAMS
from brainobs.populate.ophys.registration import RegisteredMovie, open_registered_movie, register_movie
from brainobs.populate.ophys.segmentation import segment_movie
from brainobs.schemas import finite_or_none, stores
from brainobs.schemas.acquisition import Experiment
from brainobs.schemas.params import insert_params, paramset_definition, select_new
from brainobs.schemas.subject import Indicator, Subject

schema = dj.Schema()
DEFAULT_PARAMSET = "allen"


@schema
class OphysParamSet(dj.Lookup):
    definition = paramset_definition(
        "ophys_paramset", "every 2-photon processing parameter, hashed (Allen Brain Observatory preset by default)"
    )

    @classmethod
    def insert_default(cls) -> str:
        return insert_params(cls, DEFAULT_PARAMSET, ALLEN_OPHYS_PARAMS, "Allen Brain Observatory preset")


@schema
class OphysSelection(dj.Manual):
    definition = """
    # an experiment to process with a parameter set
    -> Experiment
    -> OphysParamSet
    """


SELECTIONS = ((Experiment, OphysSelection),)  # source and selection: `brainobs status` counts what waits


def schedule_defaults() -> int:
    """Pair every experiment not yet selected with the default parameter set; returns how many were added."""
    OphysParamSet.insert_default()
    return select_new(Experiment, OphysSelection, OphysParamSet, DEFAULT_PARAMSET)


def _params(key: dict) -> dict:
    return (OphysParamSet & key).fetch1("params")


@schema
class MotionCorrection(dj.Computed):
    definition = """
    # suite2p rigid registration with the Allen empty-frame and outlier rules
    -> OphysSelection
    ---
    registered_movie : <filepath@main>     # int16 (frames, height, width), raw binary
    n_frames : int32
    x_offset : <npy@main>                  # px per frame; +x: content right of the reference
    y_offset : <npy@main>                  # px per frame; +y: content below the reference
    correlation : <npy@main>               # phase-correlation peak per frame
    n_clipped : int32                      # frames whose offset the outlier clip changed
    n_empty : int32                        # empty frames at start and end (zero shift)
    frame_mean : <npy@main>                # mean raw intensity per frame (drift and bleaching QC)
    saturation_level : float64             # a saturated raw pixel, in registered units (QC)
    average_image : <blob>
    max_image : <blob>
    max_correction_left : float64          # motion border, px
    max_correction_right : float64
    max_correction_up : float64
    max_correction_down : float64
    """

    def make_fetch(self, key):
        movie_file, frame_rate = (Experiment & key).fetch1("movie_file", "frame_rate")
        return movie_file, frame_rate, _params(key)

    def make_compute(self, key, movie_file, frame_rate, params):
        target = stores.path("registered", stores.key_name(key) + ".bin")
        result = register_movie(stores.raw_path(movie_file), target, frame_rate, params)
        return (result,)

    def make_insert(self, key, result):
        border = result.motion_border
        self.insert1(
            {
                **key,
                "registered_movie": stores.relative(result.registered_path),
                "n_frames": result.shape[0],
                "x_offset": result.x_offset,
                "y_offset": result.y_offset,
                "correlation": result.correlation,
                "n_clipped": int(result.clipped.sum()),
                "n_empty": int((~result.is_valid).sum()),
                "frame_mean": np.asarray(result.frame_mean, dtype=np.float64),
                "saturation_level": min(result.saturation_level, 1e300),
                "average_image": result.average_projection,
                "max_image": result.max_projection,
                "max_correction_left": border.left,
                "max_correction_right": border.right,
                "max_correction_up": border.up,
                "max_correction_down": border.down,
            }
        )


def _registered(key: dict) -> tuple[RegisteredMovie, rois.MotionBorder]:
    row = (MotionCorrection * Experiment & key).fetch1()
    shape = (row["n_frames"], row["height"], row["width"])
    movie = open_registered_movie(stores.root() / row["registered_movie"].path, shape)
    border = rois.MotionBorder(
        right=row["max_correction_right"],
        left=row["max_correction_left"],
        down=row["max_correction_down"],
        up=row["max_correction_up"],
    )
    return movie, border


@schema
class Segmentation(dj.Computed):
    definition = """
    # suite2p sparse detection, then the Allen ROI post-processing (aspect ratio, binarize, labels, morphology)
    -> MotionCorrection
    ---
    n_detected : int32                     # ROIs suite2p found
    n_rois : int32                         # ROIs kept after post-processing
    n_valid : int32                        # ROIs without exclusion labels
    """

    class ROI(dj.Part):
        definition = """
        # one binary ROI mask; cell_roi_id is per experiment
        -> master
        cell_roi_id : int32
        ---
        ypix : <blob>                      # int32 rows of the mask pixels
        xpix : <blob>                      # int32 columns
        x : int32                          # bounding box, px
        y : int32
        width : int32
        height : int32
        centroid_x : float64
        centroid_y : float64
        npix : int32
        valid_roi : bool                   # no exclusion label
        """

    class ExclusionLabel(dj.Part):
        definition = """
        # why a ROI is not valid (motion_border, small_size); labels are kept, never silently dropped
        -> master.ROI
        exclusion_label : varchar(32)
        """

    def make_fetch(self, key):
        n_frames, frame_rate = (MotionCorrection * Experiment & key).fetch1("n_frames", "frame_rate")
        return n_frames, frame_rate, _params(key)

    def make_compute(self, key, n_frames, frame_rate, params):
        movie, border = _registered(key)
        detected = segment_movie(movie.path, movie.shape, frame_rate, params)
        result = rois.postprocess_rois(
            detected,
            movie.shape[1:],
            border,
            aspect_ratio_threshold=params["roi_aspect_ratio_threshold"],
            binary_quantile=params["roi_binary_quantile"],
            npixel_threshold=params["roi_npixel_threshold"],
        )
        return len(detected), result.rois

    def make_insert(self, key, n_detected, records):
        self.insert1(
            {
                **key,
                "n_detected": n_detected,
                "n_rois": len(records),
                "n_valid": sum(r.valid_roi for r in records),
            }
        )
        self.ROI.insert(
            {
                **key,
                "cell_roi_id": r.roi_index,
                "ypix": r.ypix.astype(np.int32),
                "xpix": r.xpix.astype(np.int32),
                "x": r.x,
                "y": r.y,
                "width": r.width,
                "height": r.height,
                "centroid_x": float(r.centroid[1]),
                "centroid_y": float(r.centroid[0]),
                "npix": r.npix,
                "valid_roi": r.valid_roi,
            }
            for r in records
        )
        self.ExclusionLabel.insert(
            {**key, "cell_roi_id": r.roi_index, "exclusion_label": label}
            for r in records
            for label in r.exclusion_labels
        )


def roi_records(key: dict) -> list[rois.RoiRecord]:
    """The experiment's ROIs as the core's records, in cell_roi_id order."""
    height, width = (Experiment & key).fetch1("height", "width")
    labels: dict[int, list[str]] = {}
    for row in (Segmentation.ExclusionLabel & key).to_dicts():
        labels.setdefault(row["cell_roi_id"], []).append(row["exclusion_label"])
    return [
        rois.RoiRecord(
            roi_index=row["cell_roi_id"],
            source_index=row["cell_roi_id"],
            ypix=np.asarray(row["ypix"], dtype=np.int64),
            xpix=np.asarray(row["xpix"], dtype=np.int64),
            frame_shape=(height, width),
            exclusion_labels=tuple(sorted(labels.get(row["cell_roi_id"], ()))),
        )
        for row in (Segmentation.ROI & key).to_dicts(order_by="cell_roi_id")
    ]


def stack_rows(part: type[dj.Part], key: dict, attribute: str) -> tuple[np.ndarray, np.ndarray]:
    """cell_roi_ids and the per-ROI arrays of ``part`` stacked as (n_roi, T), in cell_roi_id order.

    One query; the stored .npy files stay lazy references (``to_arrays`` would load them all, then copy them
    again) and each is read straight into its row of a preallocated array."""
    rows = (part & key).proj(attribute).to_dicts(order_by="cell_roi_id")
    ids = np.array([row["cell_roi_id"] for row in rows], dtype=np.int64)
    if not rows:
        return ids, np.empty((0, 0))
    first = rows[0][attribute]
    out = np.empty((len(rows), *first.shape), dtype=first.dtype)
    store_root = stores.root()
    for target, row in zip(out, rows, strict=True):
        stores.read_npy_into(row[attribute], target, store_root)
    return ids, out


def stack(part: type[dj.Part], key: dict, attribute: str) -> np.ndarray:
    """Per-ROI arrays of ``part`` stacked as (n_roi, T), in cell_roi_id order."""
    return stack_rows(part, key, attribute)[1]


def _stage_fetch(key: dict) -> tuple:
    """What a trace stage's make depends on: its parameters and the upstream ROI count (cheap to re-check)."""
    return _params(key), len(Segmentation.ROI & key)


@schema
class Fluorescence(dj.Computed):
    definition = """
    # ROI traces (mean over the mask) and neuropil traces (13 dilations minus all ROIs minus the border)
    -> Segmentation
    ---
    n_frames : int32
    """

    class Trace(dj.Part):
        definition = """
        -> master
        -> Segmentation.ROI
        ---
        roi_trace : <npy@main>             # movie intensity units, per frame; NaN when excluded
        neuropil_trace : <npy@main>
        neuropil_npix : int32
        """

    class ExclusionLabel(dj.Part):
        definition = """
        # extraction labels: empty_roi_mask, empty_neuropil_mask, zero_pixels
        -> master.Trace
        exclusion_label : varchar(32)
        """

    def make_fetch(self, key):
        return _stage_fetch(key)

    def make_compute(self, key, params, n_rois):
        movie, border = _registered(key)
        return (extraction.extract_traces(movie, roi_records(key), border),)

    def make_insert(self, key, result):
        self.insert1({**key, "n_frames": result.roi_traces.shape[1] if result.roi_traces.size else 0})
        self.Trace.insert(
            {
                **key,
                "cell_roi_id": i,
                "roi_trace": result.roi_traces[i],
                "neuropil_trace": result.neuropil_traces[i],
                "neuropil_npix": int(result.neuropil_pixels[i][0].size),
            }
            for i in range(result.roi_traces.shape[0])
        )
        self.ExclusionLabel.insert(
            {**key, "cell_roi_id": i, "exclusion_label": label}
            for i, labels in enumerate(result.exclusion_labels)
            for label in labels
        )


@schema
class Demixing(dj.Computed):
    definition = """
    # demixing of overlapping ROIs, frame by frame (Allen); QC flags for negative transients and baselines
    -> Fluorescence
    ---
    n_groups : int32                       # groups of overlapping ROIs solved jointly
    n_negative_transient : int32
    n_negative_baseline : int32
    """

    class Trace(dj.Part):
        definition = """
        -> master
        -> Fluorescence.Trace
        ---
        demixed_trace : <npy@main>         # NaN for ROIs not demixed (excluded)
        negative_transient : bool
        negative_baseline : bool
        skipped_frames : int32             # frames with a zero trace in the ROI's group
        """

    def make_fetch(self, key):
        return _stage_fetch(key)

    def make_compute(self, key, params, n_rois):
        movie, _border = _registered(key)
        records = roi_records(key)
        labels = [set(r.exclusion_labels) for r in records]
        for row in (Fluorescence.ExclusionLabel & key).to_dicts():
            labels[row["cell_roi_id"]].add(row["exclusion_label"])
        traces = stack(Fluorescence.Trace, key, "roi_trace")
        return (demix_traces(movie, records, traces, labels),)

    def make_insert(self, key, result):
        self.insert1(
            {
                **key,
                "n_groups": len(result.groups),
                "n_negative_transient": int(result.negative_transient.sum()),
                "n_negative_baseline": int(result.negative_baseline.sum()),
            }
        )
        self.Trace.insert(
            {
                **key,
                "cell_roi_id": i,
                "demixed_trace": result.demixed_traces[i],
                "negative_transient": bool(result.negative_transient[i]),
                "negative_baseline": bool(result.negative_baseline[i]),
                "skipped_frames": int(result.skipped_frames[i]),
            }
            for i in range(result.demixed_traces.shape[0])
        )


@schema
class NeuropilCorrection(dj.Computed):
    definition = """
    # F_C = F_M - r F_N with r fit per ROI (folds, refinements, the experiment-level r > 1 rule)
    -> Demixing
    ---
    mean_r = null : float64
    """

    class Trace(dj.Part):
        definition = """
        -> master
        -> Demixing.Trace
        ---
        corrected_trace : <npy@main>
        r = null : float64                 # neuropil contamination ratio (null for excluded ROIs)
        rmse = null : float64
        r_estimated = null : float64       # r before the r > 1 rule
        """

    def make_fetch(self, key):
        return _stage_fetch(key)

    def make_compute(self, key, params, n_rois):
        demixed = stack(Demixing.Trace, key, "demixed_trace")
        neuropil_traces = stack(Fluorescence.Trace, key, "neuropil_trace")
        if demixed.size == 0:
            return (None,)
        result = neuropil.estimate_neuropil(
            demixed, neuropil_traces, lam=params["neuropil_lambda"], folds=params["neuropil_folds"]
        )
        return (result,)

    def make_insert(self, key, result):
        if result is None:
            self.insert1({**key, "mean_r": None})
            return
        finite = result.r[np.isfinite(result.r)]
        self.insert1({**key, "mean_r": float(finite.mean()) if finite.size else None})
        self.Trace.insert(
            {
                **key,
                "cell_roi_id": i,
                "corrected_trace": result.corrected[i],
                "r": finite_or_none(result.r[i]),
                "rmse": finite_or_none(result.rmse[i]),
                "r_estimated": finite_or_none(result.r_estimated[i]),
            }
            for i in range(result.corrected.shape[0])
        )


def long_window_s(params: dict, n_frames: int, frame_rate: float) -> float:
    """The dF/F baseline window: the preset's, or (when allowed) the longest odd window the trace holds."""
    wanted = params["dff_long_window_s"]
    if dff.window_frames(frame_rate, wanted) <= n_frames or not params["dff_clamp_long_window"]:
        return wanted
    return (n_frames - 2) / frame_rate


@schema
class DeltaFOverF(dj.Computed):
    definition = """
    # dF/F against a 10th-percentile / median baseline of inactive frames (Allen windows: 600 s, 3.333 s)
    -> NeuropilCorrection
    ---
    long_window : int32                    # frames actually used (shorter than 600 s only for short movies)
    short_window : int32                   # frames
    """

    class Trace(dj.Part):
        definition = """
        -> master
        -> NeuropilCorrection.Trace
        ---
        dff : <npy@main>
        sigma_dff = null : float64         # robust noise of the dF/F trace
        num_small_baseline_frames : int32
        """

    def make_fetch(self, key):
        return _stage_fetch(key)

    def make_compute(self, key, params, n_rois):
        corrected = stack(NeuropilCorrection.Trace, key, "corrected_trace")
        frame_rate = (Experiment & key).fetch1("frame_rate")
        if corrected.size == 0:
            return (None,)
        long_s = long_window_s(params, corrected.shape[1], frame_rate)
        return (dff.compute_dff(corrected, frame_rate, long_s, params["dff_short_window_s"]),)

    def make_insert(self, key, result):
        if result is None:  # an experiment without ROIs: the stage ran, nothing to store
            self.insert1({**key, "long_window": 0, "short_window": 0})
            return
        self.insert1({**key, "long_window": result.long_window, "short_window": result.short_window})
        self.Trace.insert(
            {
                **key,
                "cell_roi_id": i,
                "dff": result.dff[i],
                "sigma_dff": finite_or_none(result.sigma_dff[i]),
                "num_small_baseline_frames": int(result.num_small_baseline_frames[i]),
            }
            for i in range(result.dff.shape[0])
        )


@schema
class EventDetection(dj.Computed):
    definition = """
    # L0 events (Jewell & Witten, AR(1) with positivity), lambda searched per ROI
    -> DeltaFOverF
    ---
    decay_time : float64                   # s, from the subject's indicator
    gamma : float64                        # exp(-1 / (decay_time * frame_rate))
    noise_multiplier : float64             # smallest event, in noise sigmas
    """

    class Event(dj.Part):
        definition = """
        -> master
        -> DeltaFOverF.Trace
        ---
        events : <npy@main>                # event magnitude per frame (dF/F units), 0 where none
        filtered_events : <npy@main>       # causal half-normal filter of the events
        l0_lambda = null : float64         # the L0 penalty found for this ROI
        noise_std = null : float64
        """

    def make_fetch(self, key):
        return _stage_fetch(key)

    def make_compute(self, key, params, n_rois):
        traces = stack(DeltaFOverF.Trace, key, "dff")
        frame_rate = (Experiment & key).fetch1("frame_rate")
        decay_time = (Indicator * Subject & key).fetch1("decay_time")
        multiplier = params["events_noise_multiplier"]
        if traces.size == 0:
            gamma_value = math.exp(-1.0 / (decay_time * frame_rate))
            return None, decay_time, gamma_value, multiplier or events.default_noise_multiplier(frame_rate)
        result = events.detect_events(traces, frame_rate, decay_time, multiplier)
        return result, decay_time, result.gamma, result.noise_multiplier

    def make_insert(self, key, result, decay_time, gamma_value, multiplier):
        self.insert1({**key, "decay_time": decay_time, "gamma": gamma_value, "noise_multiplier": multiplier})
        if result is None:
            return
        self.Event.insert(
            {
                **key,
                "cell_roi_id": i,
                "events": result.events[i],
                "filtered_events": result.filtered_events[i],
                "l0_lambda": finite_or_none(result.lambdas[i]),
                "noise_std": finite_or_none(result.noise_std[i]),
            }
            for i in range(result.events.shape[0])
        )
