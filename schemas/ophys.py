"""2-photon processing as tables, one per stage, so every number's lineage is visible.

OphysParamSet -> OphysSelection (Experiment x parameter set) -> MotionCorrection -> Segmentation (Part ROI,
ExclusionLabel) -> Fluorescence (Part Trace: ROI and neuropil) -> Demixing (Part Trace) -> NeuropilCorrection
(Part Trace: corrected, r, RMSE) -> DeltaFOverF (Part Trace: dF/F, sigma) -> EventDetection (Part Event).

Each make fetches, calls one core function of ``brainobs.populate.ophys``, inserts. The long steps use the
three-part make so no transaction stays open while suite2p runs. Per-ROI arrays go to the object store
(``<npy@main>``); the registered movie is written once into the store and referenced (``<filepath@main>``).
"""

from __future__ import annotations

import datajoint as dj
import numpy as np

from brainobs.ingest.movie import TiffMovie
from brainobs.populate.ophys import decrosstalk, dff, events, extraction, indicators, neuropil, rois
from brainobs.populate.ophys.demix import demix_traces
from brainobs.populate.ophys.params import OPHYS_PRESETS
from brainobs.populate.ophys.registration import RegisteredMovie, open_registered_movie, register_movie
from brainobs.populate.ophys.segmentation import segment_movie
from brainobs.schemas import active_settings, finite_or_none, stores
from brainobs.schemas.acquisition import Experiment, PlaneGroup, paired_experiment
from brainobs.schemas.params import insert_params, paramset_definition, select_new
from brainobs.schemas.subject import Subject

schema = dj.Schema()


def default_paramset() -> str:
    """The preset new experiments are paired with: the ``ophys_paramset`` setting (``allen`` by default)."""
    name = active_settings().ophys_paramset
    if name not in OPHYS_PRESETS:
        raise ValueError(f"BRAINOBS_OPHYS_PARAMSET {name!r} is not a 2-photon preset; known: {sorted(OPHYS_PRESETS)}")
    return name


@schema
class OphysParamSet(dj.Lookup):
    definition = paramset_definition(
        "ophys_paramset", "every 2-photon processing parameter, hashed (Allen Brain Observatory preset by default)"
    )

    @classmethod
    def insert_default(cls) -> str:
        """Insert every preset of `OPHYS_PRESETS`; returns the default one's name."""
        for name, (params, description) in OPHYS_PRESETS.items():
            insert_params(cls, name, params, description)
        return default_paramset()


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
    return select_new(Experiment, OphysSelection, OphysParamSet, OphysParamSet.insert_default())


def select_paramset(name: str, experiment_ids: list[int] | None = None) -> int:
    """Pair experiments with parameter set ``name`` (every experiment not yet paired with it when
    ``experiment_ids`` is empty or None); returns how many pairs were added. Results of other parameter sets
    stay. ValueError naming the unknown preset or experiment ids."""
    if name not in OPHYS_PRESETS:
        raise ValueError(f"{name!r} is not a 2-photon preset; known: {sorted(OPHYS_PRESETS)}")
    OphysParamSet.insert_default()
    paramset = {"ophys_paramset": name}
    if experiment_ids:
        wanted = [{"experiment_id": int(i)} for i in experiment_ids]
        unknown = sorted(k["experiment_id"] for k in wanted if not Experiment & k)
        if unknown:
            raise ValueError(f"no experiment with id {', '.join(map(str, unknown))}")
        candidates = Experiment & wanted
    else:
        candidates = Experiment
    unpaired = (candidates - (OphysSelection & paramset).proj()).proj().to_dicts()
    keys = [{**k, **paramset} for k in unpaired]
    OphysSelection.insert(keys, skip_duplicates=True)
    return len(keys)


def _params(key: dict) -> dict:
    return (OphysParamSet & key).fetch1("params")


@schema
class MotionCorrection(dj.Computed):
    definition = """
    # suite2p rigid registration with the Allen empty-frame and outlier rules
    -> OphysSelection
    ---
    registered_movie : <filepath@main>     # int16 (frames, height, width), raw binary
    registered_size : int64                # bytes, checked on every open
    registered_sha256 : char(64)           # of the file as written
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
        movie_file, frame_rate, height, width = (Experiment & key).fetch1("movie_file", "frame_rate", "height", "width")
        return movie_file, frame_rate, (height, width), _params(key)

    def make_compute(self, key, movie_file, frame_rate, frame_shape, params):
        target = stores.path("registered", stores.key_name(key) + ".bin")
        result = register_movie(stores.raw_path(movie_file), target, frame_rate, params, frame_shape=frame_shape)
        return result, *stores.file_digest(result.registered_path)

    def make_insert(self, key, result, size, sha256):
        border = result.motion_border
        self.insert1(
            {
                **key,
                "registered_movie": stores.relative(result.registered_path),
                "registered_size": size,
                "registered_sha256": sha256,
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


def open_registered(key: dict) -> tuple[RegisteredMovie, rois.MotionBorder]:
    row = (MotionCorrection * Experiment & key).fetch1()
    shape = (row["n_frames"], row["height"], row["width"])
    target = stores.verified(stores.root() / row["registered_movie"].path, row["registered_size"])
    movie = open_registered_movie(target, shape)
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
        # one binary ROI mask; cell_roi_id is unique across the survey (every experiment and parameter set)
        -> master
        cell_roi_id : int64
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
        unique index (cell_roi_id)
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
        movie, border = open_registered(key)
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
        first_id = next_cell_roi_id()
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
                "cell_roi_id": first_id + r.roi_index,
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
            {**key, "cell_roi_id": first_id + r.roi_index, "exclusion_label": label}
            for r in records
            for label in r.exclusion_labels
        )


def next_cell_roi_id() -> int:
    """The first unused cell_roi_id: ids are allocated in blocks, one per segmentation, and never reused
    while their rows exist. Two segmentations inserted at the same instant may pick the same block; the unique
    index refuses the second, whose job is then retried."""
    top = dj.U().aggr(Segmentation.ROI, top="max(cell_roi_id)").to_dicts()
    return int(top[0]["top"]) + 1 if top and top[0]["top"] is not None else 1


def roi_ids(key: dict) -> list[int]:
    """The experiment's cell_roi_ids, in order: position i of every per-ROI array is ROI ``ids[i]``."""
    return [row["cell_roi_id"] for row in (Segmentation.ROI & key).proj().to_dicts(order_by="cell_roi_id")]


def roi_records(key: dict) -> list[rois.RoiRecord]:
    """The experiment's ROIs as the core's records, in cell_roi_id order (``roi_index`` is the position)."""
    height, width = (Experiment & key).fetch1("height", "width")
    labels: dict[int, list[str]] = {}
    for row in (Segmentation.ExclusionLabel & key).to_dicts():
        labels.setdefault(row["cell_roi_id"], []).append(row["exclusion_label"])
    return [
        rois.RoiRecord(
            roi_index=position,
            source_index=position,
            ypix=np.asarray(row["ypix"], dtype=np.int64),
            xpix=np.asarray(row["xpix"], dtype=np.int64),
            frame_shape=(height, width),
            exclusion_labels=tuple(sorted(labels.get(row["cell_roi_id"], ()))),
        )
        for position, row in enumerate((Segmentation.ROI & key).to_dicts(order_by="cell_roi_id"))
    ]


def exclusion_labels(key: dict) -> dict[int, list[str]]:
    """Every exclusion label of the experiment's ROIs, from all stages (segmentation, extraction, demixing),
    by cell_roi_id; a ROI is valid, as in Allen's releases, when it has none."""
    labels: dict[int, set[str]] = {}
    for part in (
        Segmentation.ExclusionLabel,
        Fluorescence.ExclusionLabel,
        Demixing.ExclusionLabel,
        Decrosstalk.ExclusionLabel,
    ):
        for row in (part & key).to_dicts():
            labels.setdefault(row["cell_roi_id"], set()).add(row["exclusion_label"])
    return {roi: sorted(names) for roi, names in labels.items()}


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


def roi_rows(key: dict, ids: list[int], **columns) -> list[dict]:
    """One Part row per ROI of the columns (name=per-ROI values): ``key``, ROI ``ids[i]`` and each i-th value."""
    n_rois = min(len(values) for values in columns.values())
    return [{**key, "cell_roi_id": ids[i], **{name: v[i] for name, v in columns.items()}} for i in range(n_rois)]


def insert_labels(part: type[dj.Part], key: dict, ids, labels) -> None:
    """One ``part`` row per exclusion label of each ROI: ``labels[i]`` are the labels of ROI ``ids[i]``."""
    part.insert(
        {**key, "cell_roi_id": ids[i], "exclusion_label": label}
        for i, roi_labels in enumerate(labels)
        for label in roi_labels
    )


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
        movie, border = open_registered(key)
        keep = bool(params.get("traces_keep_motion_border", False))
        return (extraction.extract_traces(movie, roi_records(key), border, keep_motion_border=keep),)

    def make_insert(self, key, result):
        ids = roi_ids(key)
        self.insert1({**key, "n_frames": result.roi_traces.shape[1] if result.roi_traces.size else 0})
        self.Trace.insert(
            roi_rows(
                key,
                ids,
                roi_trace=result.roi_traces,
                neuropil_trace=result.neuropil_traces,
                neuropil_npix=[int(pixels[0].size) for pixels in result.neuropil_pixels],
            )
        )
        insert_labels(self.ExclusionLabel, key, ids, result.exclusion_labels)


@schema
class Demixing(dj.Computed):
    definition = """
    # demixing of overlapping ROIs, frame by frame (Allen); ROIs with a negative or zero baseline (and the
    # two-hop overlap neighbours of a negative one) become NaN and are labelled demix_error; negative
    # transients are labelled negative_transient
    -> Fluorescence
    ---
    n_groups : int32                       # groups of overlapping ROIs solved jointly
    n_dropped_frames : int32               # frames where a trace was 0: demixed value 0 for every ROI
    n_negative_transient : int32
    n_negative_baseline : int32
    n_made_nan : int32                     # ROIs set to NaN (label demix_error)
    """

    class Trace(dj.Part):
        definition = """
        -> master
        -> Fluorescence.Trace
        ---
        demixed_trace : <npy@main>         # NaN for ROIs not demixed (excluded) and ROIs labelled demix_error
        negative_transient : bool
        negative_baseline : bool           # mean + std < 0
        zero_baseline : bool               # mean < std
        skipped_frames : int32             # dropped frames (demixed value 0), for ROIs taking part
        """

    class ExclusionLabel(dj.Part):
        definition = """
        # demixing labels: demix_error (trace set to NaN), negative_transient
        -> master.Trace
        exclusion_label : varchar(32)
        """

    def make_fetch(self, key):
        return _stage_fetch(key)

    def make_compute(self, key, params, n_rois):
        if n_rois == 0:  # an experiment without ROIs: the stage runs, nothing to demix
            return (None,)
        movie, _border = open_registered(key)
        records = roi_records(key)
        labels = [set(r.exclusion_labels) for r in records]
        position = {roi_id: i for i, roi_id in enumerate(roi_ids(key))}
        for row in (Fluorescence.ExclusionLabel & key).to_dicts():
            labels[position[row["cell_roi_id"]]].add(row["exclusion_label"])
        traces = stack(Fluorescence.Trace, key, "roi_trace")
        keep = bool(params.get("traces_keep_motion_border", False))
        return (demix_traces(movie, records, traces, labels, keep_motion_border=keep),)

    def make_insert(self, key, result):
        if result is None:
            empty = ("n_groups", "n_dropped_frames", "n_negative_transient", "n_negative_baseline", "n_made_nan")
            self.insert1({**key, **dict.fromkeys(empty, 0)})
            return
        ids = roi_ids(key)
        n_dropped = int(result.dropped_frames.sum())
        self.insert1(
            {
                **key,
                "n_groups": len(result.groups),
                "n_dropped_frames": n_dropped,
                "n_negative_transient": int(result.negative_transient.sum()),
                "n_negative_baseline": int(result.negative_baseline.sum()),
                "n_made_nan": int(result.made_nan.sum()),
            }
        )
        taking_part = ~np.isnan(result.demixed_before_nan).all(axis=1)
        self.Trace.insert(
            roi_rows(
                key,
                ids,
                demixed_trace=result.demixed_traces,
                negative_transient=result.negative_transient.tolist(),
                negative_baseline=result.negative_baseline.tolist(),
                zero_baseline=result.zero_baseline.tolist(),
                skipped_frames=[n_dropped if taking else 0 for taking in taking_part],
            )
        )
        insert_labels(self.ExclusionLabel, key, ids, result.exclusion_labels)


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
        result = neuropil.correct_neuropil(demixed, neuropil_traces, params)
        return (result,)

    def make_insert(self, key, result):
        if result is None:
            self.insert1({**key, "mean_r": None})
            return
        ids = roi_ids(key)
        finite = result.r[np.isfinite(result.r)]
        self.insert1({**key, "mean_r": float(finite.mean()) if finite.size else None})
        self.Trace.insert(
            roi_rows(
                key,
                ids,
                corrected_trace=result.corrected,
                r=[finite_or_none(v) for v in result.r],
                rmse=[finite_or_none(v) for v in result.rmse],
                r_estimated=[finite_or_none(v) for v in result.r_estimated],
            )
        )


@schema
class DeltaFOverF(dj.Computed):
    definition = """
    # dF/F against a 10th-percentile / median baseline of inactive frames (Allen windows: 600 s, 3.333 s)
    -> NeuropilCorrection
    ---
    long_window : int32                    # frames actually used
    short_window : int32                   # frames
    long_window_clamped = 0 : bool         # shortened to fit a short movie (dff_clamp_long_window; not Allen)
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
        return dff.compute_dff_clamped(
            corrected,
            frame_rate,
            params["dff_long_window_s"],
            params["dff_short_window_s"],
            clamp_long_window=params["dff_clamp_long_window"],
        )

    def make_insert(self, key, result, clamped=False):
        if result is None:  # an experiment without ROIs: the stage ran, nothing to store
            self.insert1({**key, "long_window": 0, "short_window": 0})
            return
        ids = roi_ids(key)
        self.insert1(
            {
                **key,
                "long_window": result.long_window,
                "short_window": result.short_window,
                "long_window_clamped": clamped,
            }
        )
        self.Trace.insert(
            roi_rows(
                key,
                ids,
                dff=result.dff,
                sigma_dff=[finite_or_none(v) for v in result.sigma_dff],
                num_small_baseline_frames=[int(v) for v in result.num_small_baseline_frames],
            )
        )


@schema
class EventDetection(dj.Computed):
    definition = """
    # events: Allen's L0 (Jewell & Witten, lambda searched per ROI) or thresholded OASIS, by events_method
    -> DeltaFOverF
    ---
    decay_time : float64                   # s: Allen's genotype table, else the explicit decay time
    gamma : float64                        # exp(-ln 2 / (halflife * frame_rate)), halflife = ln 2 * decay_time
    noise_multiplier : float64             # smallest event, in noise sigmas
    """

    class Event(dj.Part):
        definition = """
        -> master
        -> DeltaFOverF.Trace
        ---
        events : <npy@main>                # event magnitude per frame (dF/F units), 0 where none
        filtered_events : <npy@main>       # causal half-normal filter of the events
        l0_lambda = null : float64         # the L0 penalty found for this ROI (null for OASIS)
        noise_std = null : float64
        """

    def make_fetch(self, key):
        return _stage_fetch(key)

    def make_compute(self, key, params, n_rois):
        traces = stack(DeltaFOverF.Trace, key, "dff")
        frame_rate = (Experiment & key).fetch1("frame_rate")
        genotype, subject_decay = (Subject & key).fetch1("full_genotype", "decay_time")
        explicit = params.get("events_decay_time_s")
        decay_time = indicators.decay_time_s(genotype, subject_decay if explicit is None else explicit)
        if traces.size == 0:
            gamma_value = indicators.gamma(decay_time, frame_rate)
            multiplier = params["events_noise_multiplier"] or events.default_noise_multiplier(frame_rate)
            return None, decay_time, gamma_value, multiplier
        result = events.detect_events_with(traces, frame_rate, decay_time, params)
        return result, decay_time, result.gamma, result.noise_multiplier

    def make_insert(self, key, result, decay_time, gamma_value, multiplier):
        self.insert1({**key, "decay_time": decay_time, "gamma": gamma_value, "noise_multiplier": multiplier})
        if result is None:
            return
        ids = roi_ids(key)
        self.Event.insert(
            roi_rows(
                key,
                ids,
                events=result.events,
                filtered_events=result.filtered_events,
                l0_lambda=[finite_or_none(v) for v in result.lambdas],
                noise_std=[finite_or_none(v) for v in result.noise_std],
            )
        )


def run_decrosstalk(key: dict, partner: int, params: dict) -> decrosstalk.DecrosstalkResult:
    """The core's decrosstalk of the plane against its partner with ``params``: both registered movies, and
    when the partner is read at this plane's scan points (``decrosstalk.reads_raw_pair``) both raw movies and
    this plane's registration offsets."""
    keys = (key, {**key, "experiment_id": partner})
    movie, paired_movie = (open_registered(k)[0] for k in keys)
    plane_rois = roi_records(key)
    if not decrosstalk.reads_raw_pair(params):  # ophys_etl's ICA reads the registered movies only
        return decrosstalk.decrosstalk_plane(movie, paired_movie, plane_rois, params)
    offsets = tuple(np.asarray(v) for v in (MotionCorrection & key).fetch1("y_offset", "x_offset"))
    raw, paired_raw = (stores.raw_path((Experiment & k).fetch1("movie_file")) for k in keys)
    with TiffMovie(raw) as raw_movie, TiffMovie(paired_raw) as paired_raw_movie:
        return decrosstalk.decrosstalk_plane(
            movie, paired_movie, plane_rois, params, (raw_movie, paired_raw_movie), offsets
        )


def decrosstalk_as(key: dict, preset: str, **overrides: object) -> decrosstalk.DecrosstalkResult:
    """The plane's stored Decrosstalk row rerun on the same ROIs and movies with the ``decrosstalk_*``
    parameters of another preset, then ``overrides``: methods compared on the same ROIs (benchmarks, tests)."""
    partner = (Decrosstalk & key).fetch1("paired_experiment_id")
    method = {name: value for name, value in OPHYS_PRESETS[preset][0].items() if name.startswith("decrosstalk_")}
    return run_decrosstalk(key, partner, {**_params(key), **method, **overrides})


@schema
class Decrosstalk(dj.Computed):
    definition = """
    # Allen's decrosstalk of a mesoscope plane against the other plane of its pair: per-ROI 2x2 ICA unmixing
    # of the traces of this plane's masks in both registered movies, then the ghost test (docs/methods.md)
    -> Segmentation
    ---
    paired_experiment_id : int64           # the other plane of the pair (same session and parameter set)
    crosstalk = null : float64             # median mixing[0, 1] of converged ROIs: the partner's share of light
    n_converged : int32                    # ROIs whose own ICA converged (the others took the mean matrix)
    n_ghosts : int32                       # ROIs labelled decrosstalk_ghost
    n_flagged : int32                      # ROIs with any decrosstalk label
    """

    class ROI(dj.Part):
        definition = """
        -> master
        -> Segmentation.ROI
        ---
        mixing : <blob>                    # 2x2, raw [signal, crosstalk] = mixing @ sources; NaN if not unmixed
        converged : bool                   # the ROI's own ICA converged
        raw_ratio = null : float64         # 100 x slope of crosstalk on signal, active frames, raw traces
        unmixed_ratio = null : float64     # the same on the unmixed traces
        """

    class ExclusionLabel(dj.Part):
        definition = """
        # decrosstalk_ghost, decrosstalk_invalid_raw(_active), decrosstalk_invalid_unmixed(_active)
        -> master.ROI
        exclusion_label : varchar(40)
        """

    @property
    def key_source(self):
        """Segmented planes whose pair partner is motion corrected with the same parameter set."""
        partner = PlaneGroup.proj(paired_experiment_id="experiment_id", paired_group="plane_group")
        pairs = (PlaneGroup * partner & "plane_group = paired_group" & "experiment_id <> paired_experiment_id").proj()
        corrected = MotionCorrection.proj(paired_experiment_id="experiment_id")
        return Segmentation.proj() & ((Segmentation.proj() * pairs) & corrected)

    def make_fetch(self, key):
        partner = paired_experiment(key)["experiment_id"]
        return partner, _params(key), len(Segmentation.ROI & key)

    def make_compute(self, key, partner, params, n_rois):
        return (run_decrosstalk(key, partner, params),)

    def make_insert(self, key, result):
        ids = roi_ids(key)
        labels = result.labels
        self.insert1(
            {
                **key,
                "paired_experiment_id": paired_experiment(key)["experiment_id"],
                "crosstalk": finite_or_none(result.crosstalk),
                "n_converged": int(result.converged.sum()),
                "n_ghosts": sum(decrosstalk.GHOST in roi_labels for roi_labels in labels),
                "n_flagged": sum(bool(roi_labels) for roi_labels in labels),
            }
        )
        self.ROI.insert(
            roi_rows(
                key,
                ids,
                mixing=result.mixing,
                converged=result.converged.tolist(),
                raw_ratio=[finite_or_none(v) for v in result.raw_ratio],
                unmixed_ratio=[finite_or_none(v) for v in result.unmixed_ratio],
            )
        )
        insert_labels(self.ExclusionLabel, key, ids, labels)
