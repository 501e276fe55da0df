"""Plain data bundles: everything one NWB file holds, with units and shapes, and no database inside.

The lead fetches these from the tables and hands them to `brainobs.export.writer`. Arrays are numpy;
tables are pandas DataFrames with one row per item. Times are seconds on the session's master clock
(the clock of `SessionInfo.session_start_time`). Per-frame and per-ROI arrays are time first, as in NWB:
`(n_frames, n_roi)` -- build them from per-ROI rows with `np.column_stack(rows)`.

Every bundle checks its shapes on construction and raises `BundleError` naming the field and the problem.
`source_digest(bundle)` is the content hash of everything a file is written from; the release builder
uses it to decide that a file did not change (see `brainobs.export.release`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

import brainobs

# Bump when the writers put the same bundle into a file differently: it changes every source digest, so
# the next release rewrites every file.
NWB_LAYOUT_VERSION = "1"


class BundleError(ValueError):
    """A bundle field has the wrong shape, type or value."""


def _array(value: Any, name: str, ndim: int, dtype_kinds: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != ndim:
        raise BundleError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if array.dtype.kind not in dtype_kinds:
        raise BundleError(f"{name} has dtype {array.dtype}; expected one of the kinds {dtype_kinds!r}")
    return array


def _same_length(name: str, expected: int, **arrays: np.ndarray) -> None:
    for key, array in arrays.items():
        if len(array) != expected:
            raise BundleError(f"{name}.{key} has {len(array)} entries, expected {expected}")


def _increasing(name: str, times: np.ndarray, strict: bool = True) -> None:
    if not np.all(np.isfinite(times)):
        raise BundleError(f"{name} holds NaN or infinite times")
    steps = np.diff(times)
    if (steps <= 0).any() if strict else (steps < 0).any():
        raise BundleError(f"{name} is not {'strictly ' if strict else ''}increasing")


@dataclass(frozen=True, eq=False)
class SubjectInfo:
    """The mouse. `sex` is one of M, F, U, O; `age` an ISO 8601 duration ("P90D"), derived from
    `date_of_birth` (timezone-aware) and the session start when not given; one of the two is required.
    `driver_line` and `reporter_line` are the transgenic lines (Allen's BehaviorSubject fields)."""

    subject_id: str
    sex: str
    genotype: str
    species: str = "Mus musculus"
    date_of_birth: datetime | None = None
    age: str | None = None
    strain: str | None = None
    description: str | None = None
    driver_line: tuple[str, ...] = ()
    reporter_line: str | None = None

    def __post_init__(self) -> None:
        if not self.subject_id or any(c in self.subject_id for c in "/\\ "):
            raise BundleError(f"subject_id {self.subject_id!r} must be non-empty, without slashes or spaces")
        if self.sex not in ("M", "F", "U", "O"):
            raise BundleError(f"subject sex {self.sex!r} must be one of M, F, U, O")
        if self.date_of_birth is None and self.age is None:
            raise BundleError(f"subject {self.subject_id}: give date_of_birth or age")
        if self.date_of_birth is not None and self.date_of_birth.tzinfo is None:
            raise BundleError(f"subject {self.subject_id}: date_of_birth must be timezone-aware")
        if self.age is not None and not self.age.startswith("P"):
            raise BundleError(f"subject {self.subject_id}: age {self.age!r} is not an ISO 8601 duration")

    def age_at(self, when: datetime) -> str:
        """ISO 8601 age in days at `when`, or the given `age`."""
        if self.age is not None:
            return self.age
        days = (when - self.date_of_birth).days
        if days < 0:
            raise BundleError(f"subject {self.subject_id} is born after the session start {when.isoformat()}")
        return f"P{days}D"


@dataclass(frozen=True, eq=False)
class SessionInfo:
    """File-level metadata. `session_start_time` is timezone-aware; `experimenter` entries "Last, First".

    `session_id` is the text of an integer when the file is to be read by AllenSDK (it is the behavior
    session id of Allen's metadata); `session_type`, `equipment_name` (rig), `project_code` and
    `stimulus_frame_rate` (Hz) fill Allen's BehaviorMetadata.
    """

    session_id: str
    session_start_time: datetime
    session_description: str
    experiment_description: str | None = None
    institution: str | None = None
    lab: str | None = None
    experimenter: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    stimulus_notes: str | None = None
    session_type: str = ""
    equipment_name: str = ""
    project_code: str = ""
    stimulus_frame_rate: float = 60.0

    def __post_init__(self) -> None:
        if not self.session_id or "/" in self.session_id:
            raise BundleError(f"session_id {self.session_id!r} must be non-empty and without slashes")
        if self.session_start_time.tzinfo is None:
            raise BundleError(f"session {self.session_id}: session_start_time must be timezone-aware")
        if not self.session_description.strip():
            raise BundleError(f"session {self.session_id}: session_description is empty")


@dataclass(frozen=True, eq=False)
class ParameterSet:
    """One processing step's parameter set as the database holds it: its hash and its (JSON-able) values."""

    step: str
    paramset_hash: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Provenance:
    """Software versions (package -> version; brainobs's own is added) and the parameter sets used."""

    parameter_sets: tuple[ParameterSet, ...] = ()
    software: Mapping[str, str] = field(default_factory=dict)

    def versions(self) -> dict[str, str]:
        return {"brainobs": brainobs.__version__, **dict(self.software)}


# ---------------------------------------------------------------------------------------------------- behavior


@dataclass(frozen=True, eq=False)
class TaskParameters:
    """The change-detection task's parameters (Allen's BehaviorTaskParameters): times in s, volumes in mL;
    `blank_duration_sec` and `response_window_sec` are (low, high) bounds."""

    task: str
    session_type: str
    stimulus: str
    stimulus_name: str
    stimulus_distribution: str
    stimulus_duration_sec: float
    blank_duration_sec: tuple[float, float]
    response_window_sec: tuple[float, float]
    omitted_flash_fraction: float
    reward_volume: float
    auto_reward_volume: float
    n_stimulus_frames: int


@dataclass(frozen=True, eq=False)
class StimulusTemplates:
    """The images of one image set as shown (`warped`) and before warping (`unwarped`, NaN where not
    visible), shapes (n_images, height, width), with their names in display order."""

    image_set: str
    image_names: tuple[str, ...]
    warped: np.ndarray
    unwarped: np.ndarray

    def __post_init__(self) -> None:
        _array(self.warped, f"stimulus_templates[{self.image_set}].warped", 3, "fiu")
        _array(self.unwarped, f"stimulus_templates[{self.image_set}].unwarped", 3, "f")
        if not (len(self.image_names) == len(self.warped) == len(self.unwarped)):
            raise BundleError(f"stimulus_templates[{self.image_set}]: names, warped and unwarped differ in length")


@dataclass(frozen=True, eq=False)
class RunningSpeedData:
    """Running speed in cm/s at `timestamps` (s), filtered and before filtering (`speed_raw`), and the
    encoder's record at the same times: `dx` (wheel rotation since the previous sample, degrees), `v_sig`
    and `v_in` (encoder signal and supply voltages, V); shapes (n,). The raw parts are optional together."""

    timestamps: np.ndarray
    speed: np.ndarray
    speed_raw: np.ndarray | None = None
    dx: np.ndarray | None = None
    v_sig: np.ndarray | None = None
    v_in: np.ndarray | None = None

    def __post_init__(self) -> None:
        _array(self.timestamps, "running_speed.timestamps", 1, "f")
        _array(self.speed, "running_speed.speed", 1, "f")
        raw = {name: getattr(self, name) for name in ("speed_raw", "dx", "v_sig", "v_in")}
        if any(value is None for value in raw.values()) and any(value is not None for value in raw.values()):
            raise BundleError("running_speed: give speed_raw, dx, v_sig and v_in together, or none of them")
        raw = {name: value for name, value in raw.items() if value is not None}
        for name, value in raw.items():
            _array(value, f"running_speed.{name}", 1, "f")
        _same_length("running_speed", len(self.timestamps), speed=self.speed, **raw)
        _increasing("running_speed.timestamps", self.timestamps)


@dataclass(frozen=True, eq=False)
class LickData:
    """Lick times (s) and the stimulus frame each was logged on; shapes (n,)."""

    timestamps: np.ndarray
    frame: np.ndarray

    def __post_init__(self) -> None:
        _array(self.timestamps, "licks.timestamps", 1, "f")
        _array(self.frame, "licks.frame", 1, "iu")
        _same_length("licks", len(self.timestamps), frame=self.frame)
        _increasing("licks.timestamps", self.timestamps, strict=False)


@dataclass(frozen=True, eq=False)
class RewardData:
    """Reward times (s), volume (mL) and whether each was given automatically; shapes (n,)."""

    timestamps: np.ndarray
    volume_ml: np.ndarray
    auto_rewarded: np.ndarray

    def __post_init__(self) -> None:
        _array(self.timestamps, "rewards.timestamps", 1, "f")
        _array(self.volume_ml, "rewards.volume_ml", 1, "f")
        _array(self.auto_rewarded, "rewards.auto_rewarded", 1, "b")
        _same_length("rewards", len(self.timestamps), volume_ml=self.volume_ml, auto_rewarded=self.auto_rewarded)
        _increasing("rewards.timestamps", self.timestamps, strict=False)


@dataclass(frozen=True, eq=False)
class BehaviorBundle:
    """Behavior and stimulus of one session; every part is optional.

    stimulus_presentations: one row per presentation with start_time/stop_time (s, start non-decreasing)
    and the columns of `brainobs.populate.behavior.stimulus.stimulus_presentations`; stimulus_blocks: one
    row per block (`block_epochs`); trials: one row per trial (`compute_trials`). Columns beyond the
    documented ones need a description in `column_descriptions` (see `brainobs.export.nwb_behavior`).
    """

    running_speed: RunningSpeedData | None = None
    licks: LickData | None = None
    rewards: RewardData | None = None
    stimulus_presentations: pd.DataFrame | None = None
    stimulus_blocks: pd.DataFrame | None = None
    trials: pd.DataFrame | None = None
    column_descriptions: Mapping[str, str] = field(default_factory=dict)
    stimulus_timestamps: np.ndarray | None = None
    task_parameters: TaskParameters | None = None
    stimulus_templates: tuple[StimulusTemplates, ...] = ()

    def __post_init__(self) -> None:
        for name in ("stimulus_presentations", "stimulus_blocks", "trials"):
            table = getattr(self, name)
            if table is None:
                continue
            missing = {"start_time", "stop_time"} - set(table.columns)
            if missing:
                raise BundleError(f"{name} lacks the column(s) {sorted(missing)}")
            if len(table) == 0:
                raise BundleError(f"{name} is empty; pass None instead")
            start = table["start_time"].to_numpy(dtype=float)
            _increasing(f"{name}.start_time", start, strict=False)
            if (table["stop_time"].to_numpy(dtype=float) <= start).any():
                raise BundleError(f"{name} has rows whose stop_time is not after start_time")


# ------------------------------------------------------------------------------------------------------- ophys


@dataclass(frozen=True, eq=False)
class ImagingPlaneInfo:
    """One imaging plane of one session (an ophys experiment).

    targeted_structure is an Allen CCF acronym (VISp); imaging_depth_um below the pia; pixel_size_um the
    field-of-view pixel pitch; wavelengths in nm.
    """

    experiment_id: int
    indicator: str
    imaging_rate_hz: float
    targeted_structure: str
    imaging_depth_um: float
    pixel_size_um: float
    excitation_lambda_nm: float = 910.0
    emission_lambda_nm: float = 520.0
    container_id: int | None = None
    device_name: str = "two_photon_microscope"
    device_description: str = "two-photon laser-scanning microscope"
    device_manufacturer: str | None = None
    plane_group: int | None = None  # multi-plane session: the imaging group (pair) of the plane
    plane_order: int | None = None  # its order within the pair
    paired_experiment_id: int | None = None  # the other plane of the pair

    def __post_init__(self) -> None:
        if self.imaging_rate_hz <= 0 or self.pixel_size_um <= 0:
            raise BundleError(f"experiment {self.experiment_id}: imaging rate and pixel size must be positive")
        if not 300 <= self.excitation_lambda_nm <= 1300 or not 300 <= self.emission_lambda_nm <= 1000:
            raise BundleError(f"experiment {self.experiment_id}: wavelengths must be given in nm")


@dataclass(frozen=True, eq=False)
class RoiTable:
    """The segmented ROIs, one entry per ROI.

    cell_roi_id: (n,) int, unique; cell_specimen_id: (n,) int, -1 where no cell specimen is assigned;
    x, y, width, height: (n,) int bounding box in pixels (x = column, y = row of its top-left corner);
    valid_roi: (n,) bool; image_mask: (n, height_px, width_px) full-FOV mask (bool or float weights);
    r: (n,) neuropil contamination ratio; rmse: (n,) RMSE of the neuropil fit (fluorescence units).
    """

    cell_roi_id: np.ndarray
    cell_specimen_id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    width: np.ndarray
    height: np.ndarray
    valid_roi: np.ndarray
    image_mask: np.ndarray
    r: np.ndarray
    rmse: np.ndarray

    def __post_init__(self) -> None:
        ids = _array(self.cell_roi_id, "rois.cell_roi_id", 1, "iu")
        if len(np.unique(ids)) != len(ids):
            raise BundleError("rois.cell_roi_id holds duplicates")
        for name in ("cell_specimen_id", "x", "y", "width", "height"):
            _array(getattr(self, name), f"rois.{name}", 1, "iu")
        _array(self.valid_roi, "rois.valid_roi", 1, "b")
        _array(self.image_mask, "rois.image_mask", 3, "buif")
        _array(self.r, "rois.r", 1, "f")
        _array(self.rmse, "rois.rmse", 1, "f")
        n = len(ids)
        others = {name: getattr(self, name) for name in ("cell_specimen_id", "x", "y", "width", "height")}
        _same_length(
            "rois", n, valid_roi=self.valid_roi, image_mask=self.image_mask, r=self.r, rmse=self.rmse, **others
        )
        if n == 0:
            raise BundleError("rois is empty")

    @property
    def n_roi(self) -> int:
        return len(self.cell_roi_id)


@dataclass(frozen=True, eq=False)
class RoiTraces:
    """Per-frame traces of every ROI, (n_frames, n_roi) float, at `timestamps` (s, (n_frames,)).

    dff: dF/F (unitless); corrected, demixed, neuropil: fluorescence (a.u.); events: L0 event magnitude
    (dF/F units, 0 where none); lambdas, noise_stds: (n_roi,) L0 penalty and noise sigma per ROI.
    """

    timestamps: np.ndarray
    dff: np.ndarray
    corrected: np.ndarray
    demixed: np.ndarray
    neuropil: np.ndarray
    events: np.ndarray
    lambdas: np.ndarray
    noise_stds: np.ndarray

    def __post_init__(self) -> None:
        _array(self.timestamps, "traces.timestamps", 1, "f")
        _increasing("traces.timestamps", self.timestamps)
        shape = None
        for name in ("dff", "corrected", "demixed", "neuropil", "events"):
            array = _array(getattr(self, name), f"traces.{name}", 2, "f")
            if shape is None:
                shape = array.shape
            if array.shape != shape:
                raise BundleError(f"traces.{name} has shape {array.shape}, traces.dff {shape}")
        if shape[0] != len(self.timestamps):
            raise BundleError(f"traces have {shape[0]} frames but {len(self.timestamps)} timestamps")
        _array(self.lambdas, "traces.lambdas", 1, "f")
        _array(self.noise_stds, "traces.noise_stds", 1, "f")
        _same_length("traces", shape[1], lambdas=self.lambdas, noise_stds=self.noise_stds)

    @property
    def n_roi(self) -> int:
        return self.dff.shape[1]


@dataclass(frozen=True, eq=False)
class MotionCorrectionData:
    """Rigid motion correction: x, y offsets (pixels, (n_frames,)) and the largest shift in each direction."""

    x: np.ndarray
    y: np.ndarray
    max_correction_up: float
    max_correction_down: float
    max_correction_left: float
    max_correction_right: float

    def __post_init__(self) -> None:
        _array(self.x, "motion.x", 1, "iuf")
        _array(self.y, "motion.y", 1, "iuf")
        _same_length("motion", len(self.x), y=self.y)


@dataclass(frozen=True, eq=False)
class ProjectionImages:
    """Summary images of the registered movie, each (height_px, width_px)."""

    max_projection: np.ndarray
    average_image: np.ndarray
    segmentation_mask_image: np.ndarray

    def __post_init__(self) -> None:
        shapes = {name: _array(getattr(self, name), f"images.{name}", 2, "buif").shape for name in self.names()}
        if len(set(shapes.values())) != 1:
            raise BundleError(f"images differ in shape: {shapes}")

    @staticmethod
    def names() -> tuple[str, ...]:
        return ("max_projection", "average_image", "segmentation_mask_image")


@dataclass(frozen=True, eq=False)
class OphysExperimentBundle:
    """Everything of one ophys experiment file: one plane, with its session's behavior and stimulus."""

    subject: SubjectInfo
    session: SessionInfo
    plane: ImagingPlaneInfo
    rois: RoiTable
    traces: RoiTraces
    motion: MotionCorrectionData
    images: ProjectionImages
    behavior: BehaviorBundle | None = None
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        if self.rois.n_roi != self.traces.n_roi:
            raise BundleError(f"{self.rois.n_roi} ROIs but traces for {self.traces.n_roi}")
        if len(self.motion.x) != len(self.traces.timestamps):
            raise BundleError(f"motion has {len(self.motion.x)} frames, traces {len(self.traces.timestamps)}")
        if self.rois.image_mask.shape[1:] != self.images.max_projection.shape:
            raise BundleError(
                f"image_mask frames {self.rois.image_mask.shape[1:]} differ from the images "
                f"{self.images.max_projection.shape}"
            )


# ----------------------------------------------------------------------------------------------------- ecephys


@dataclass(frozen=True, eq=False)
class ProbeInfo:
    """One Neuropixels probe insertion; `name` like "probeA", `sampling_rate_hz` of its AP band,
    `lfp_sampling_rate_hz` of its LFP band (None: no LFP recorded) and `has_lfp_data` whether an LFP file
    of the probe is released."""

    name: str
    description: str
    sampling_rate_hz: float = 30000.0
    manufacturer: str = "IMEC"
    targeted_structure: str | None = None
    probe_id: int | None = None
    lfp_sampling_rate_hz: float | None = None
    has_lfp_data: bool = False


@dataclass(frozen=True, eq=False)
class ChannelTable:
    """Recording channels of all probes, one entry per channel.

    channel_id: (n,) int, unique; probe_name: (n,) str naming a ProbeInfo; probe_channel_number: (n,) int;
    probe_vertical_position, probe_horizontal_position: (n,) um on the probe shank; location: (n,) str,
    an Allen CCF acronym or "unknown"; valid_data: (n,) bool, False for a channel whose data are not usable
    (None: every channel is valid); ccf_coordinates: (n, 3) um in the Allen CCF, anterior-posterior,
    dorsal-ventral, left-right (NaN rows: not registered; None: no channel registered).
    """

    channel_id: np.ndarray
    probe_name: np.ndarray
    probe_channel_number: np.ndarray
    probe_vertical_position: np.ndarray
    probe_horizontal_position: np.ndarray
    location: np.ndarray
    valid_data: np.ndarray | None = None
    ccf_coordinates: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids = _array(self.channel_id, "channels.channel_id", 1, "iu")
        if len(np.unique(ids)) != len(ids):
            raise BundleError("channels.channel_id holds duplicates")
        _array(self.probe_name, "channels.probe_name", 1, "UO")
        _array(self.probe_channel_number, "channels.probe_channel_number", 1, "iu")
        _array(self.probe_vertical_position, "channels.probe_vertical_position", 1, "iuf")
        _array(self.probe_horizontal_position, "channels.probe_horizontal_position", 1, "iuf")
        _array(self.location, "channels.location", 1, "UO")
        _same_length(
            "channels",
            len(ids),
            probe_name=self.probe_name,
            probe_channel_number=self.probe_channel_number,
            probe_vertical_position=self.probe_vertical_position,
            probe_horizontal_position=self.probe_horizontal_position,
            location=self.location,
        )
        if self.valid_data is not None:
            _array(self.valid_data, "channels.valid_data", 1, "b")
            _same_length("channels", len(ids), valid_data=self.valid_data)
        if self.ccf_coordinates is not None:
            ccf = _array(self.ccf_coordinates, "channels.ccf_coordinates", 2, "iuf")
            if ccf.shape != (len(ids), 3):
                raise BundleError(f"channels.ccf_coordinates has shape {ccf.shape}, expected ({len(ids)}, 3)")


# Quality and waveform metrics every units table carries (NaN where a metric could not be computed).
UNIT_METRICS: dict[str, str] = {
    "firing_rate": "spikes per second over the recording (Hz)",
    "presence_ratio": "fraction of time blocks of the recording that contain spikes of the unit",
    "isi_violations": "contamination rate estimated from inter-spike-interval violations (Hill et al.)",
    "isi_violations_corrected": "contamination for Poisson contaminating spikes (Llobet et al. 2022); NaN above ~50%",
    "amplitude_cutoff": "estimated fraction of spikes missed below the detection threshold",
    "snr": "peak-channel waveform amplitude over the channel noise",
    "isolation_distance": "Mahalanobis isolation distance in PC space",
    "l_ratio": "L-ratio of cluster isolation in PC space",
    "d_prime": "LDA separability of the unit from its neighbours",
    "nn_hit_rate": "nearest-neighbour hit rate in PC space",
    "nn_miss_rate": "nearest-neighbour miss rate in PC space",
    "silhouette_score": "silhouette score of the cluster",
    "max_drift": "largest change of the unit's depth over the recording (um)",
    "cumulative_drift": "summed change of the unit's depth over the recording (um)",
    "waveform_duration": "trough-to-peak time of the mean waveform (ms)",
    "halfwidth": "width of the waveform trough at half amplitude (ms)",
    "PT_ratio": "ratio of the peak to the trough amplitude of the mean waveform",
    "repolarization_slope": "slope of the waveform from the trough back to baseline (V/s)",
    "recovery_slope": "slope of the waveform from the peak back to baseline (V/s)",
    "amplitude": "largest peak-to-trough amplitude of the mean waveform on the sampled sites (uV)",
    "spread": "sites with more than 12% of that amplitude, times the 10 um site spacing (um)",
    "velocity_above": "slope of trough time against distance on the sites above the peak site (s/m, signed)",
    "velocity_below": "slope of trough time against distance on the sites below the peak site (s/m, signed)",
}


@dataclass(frozen=True, eq=False)
class UnitTable:
    """Sorted units, all of them (no release filter), one entry per unit.

    unit_id: (n,) int, unique; peak_channel_id: (n,) int, a ChannelTable channel_id; quality: (n,) str
    ("good", "noise", ...); spike_times: n arrays of seconds (ascending); spike_amplitudes: n arrays (V),
    each as long as its spike_times; waveform_mean: (n, n_samples, n_waveform_channels) V, on the channels
    `waveform_channel_ids` (n, n_waveform_channels); waveform_rate_hz: sampling rate of the waveforms;
    metrics: DataFrame, one row per unit in the same order, with every UNIT_METRICS column (extra columns
    need an entry in `metric_descriptions`); cluster_id: (n,) int, the sorter's id of the unit on its probe,
    and local_index: (n,) int, the unit's index among its probe's units (Allen's names; optional together).
    """

    unit_id: np.ndarray
    peak_channel_id: np.ndarray
    quality: np.ndarray
    spike_times: tuple[np.ndarray, ...]
    spike_amplitudes: tuple[np.ndarray, ...]
    waveform_mean: np.ndarray
    waveform_channel_ids: np.ndarray
    waveform_rate_hz: float
    metrics: pd.DataFrame
    metric_descriptions: Mapping[str, str] = field(default_factory=dict)
    cluster_id: np.ndarray | None = None
    local_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids = _array(self.unit_id, "units.unit_id", 1, "iu")
        n = len(ids)
        if n == 0:
            raise BundleError("units is empty")
        if len(np.unique(ids)) != n:
            raise BundleError("units.unit_id holds duplicates")
        _array(self.peak_channel_id, "units.peak_channel_id", 1, "iu")
        _array(self.quality, "units.quality", 1, "UO")
        _array(self.waveform_mean, "units.waveform_mean", 3, "f")
        _array(self.waveform_channel_ids, "units.waveform_channel_ids", 2, "iu")
        _same_length(
            "units",
            n,
            peak_channel_id=self.peak_channel_id,
            quality=self.quality,
            spike_times=self.spike_times,
            spike_amplitudes=self.spike_amplitudes,
            waveform_mean=self.waveform_mean,
            waveform_channel_ids=self.waveform_channel_ids,
            metrics=self.metrics,
        )
        if (self.cluster_id is None) != (self.local_index is None):
            raise BundleError("units: give cluster_id and local_index together, or neither")
        if self.cluster_id is not None:
            _array(self.cluster_id, "units.cluster_id", 1, "iu")
            _array(self.local_index, "units.local_index", 1, "iu")
            _same_length("units", n, cluster_id=self.cluster_id, local_index=self.local_index)
        if self.waveform_mean.shape[2] != self.waveform_channel_ids.shape[1]:
            raise BundleError("units.waveform_mean and units.waveform_channel_ids differ in channel count")
        for unit, times, amplitudes in zip(ids, self.spike_times, self.spike_amplitudes, strict=True):
            times = _array(times, f"units.spike_times[{unit}]", 1, "f")
            if len(amplitudes) != len(times):
                raise BundleError(f"unit {unit}: {len(amplitudes)} spike amplitudes for {len(times)} spikes")
            if len(times):
                _increasing(f"units.spike_times[{unit}]", times, strict=False)
                if times[0] < 0:
                    raise BundleError(f"unit {unit} has negative spike times")
        missing = set(UNIT_METRICS) - set(self.metrics.columns)
        if missing:
            raise BundleError(f"units.metrics lacks the column(s) {sorted(missing)}")
        undescribed = set(self.metrics.columns) - set(UNIT_METRICS) - set(self.metric_descriptions)
        if undescribed:
            raise BundleError(f"units.metrics column(s) {sorted(undescribed)} need a metric_descriptions entry")


@dataclass(frozen=True, eq=False)
class EcephysSessionBundle:
    """Everything of one Neuropixels session file: probes, channels, units, behavior and stimulus."""

    subject: SubjectInfo
    session: SessionInfo
    probes: tuple[ProbeInfo, ...]
    channels: ChannelTable
    units: UnitTable
    behavior: BehaviorBundle | None = None
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        names = [probe.name for probe in self.probes]
        if not names or len(set(names)) != len(names):
            raise BundleError(f"probes must be given once each, got {names}")
        unknown = set(np.asarray(self.channels.probe_name).tolist()) - set(names)
        if unknown:
            raise BundleError(f"channels name probe(s) {sorted(unknown)} that are not in probes")
        known = set(np.asarray(self.channels.channel_id).tolist())
        for name in ("peak_channel_id", "waveform_channel_ids"):
            stray = set(np.asarray(getattr(self.units, name)).ravel().tolist()) - known
            if stray:
                raise BundleError(f"units.{name} names channel(s) {sorted(stray)[:5]} not in channels")


@dataclass(frozen=True, eq=False)
class BehaviorSessionBundle:
    """Everything of one behavior-only session file: running, licks, rewards, stimulus and trials."""

    subject: SubjectInfo
    session: SessionInfo
    behavior: BehaviorBundle
    provenance: Provenance = field(default_factory=Provenance)


# ------------------------------------------------------------------------------------------------------ digest


def source_digest(bundle: Any) -> str:
    """sha256 (hex) of a bundle's full content and NWB_LAYOUT_VERSION: equal digests, equal file content."""
    digest = hashlib.sha256(f"brainobs-nwb-layout:{NWB_LAYOUT_VERSION}".encode())
    _feed(digest, bundle)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    """Feed a value into a hash with its type and shape, so that different values never collide."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"<{type(value).__name__}>".encode())
        for item in dataclasses.fields(value):
            digest.update(item.name.encode())
            _feed(digest, getattr(value, item.name))
    elif isinstance(value, pd.DataFrame):
        digest.update(f"<DataFrame {value.shape}>".encode())
        for column in value.columns:
            digest.update(str(column).encode())
            _feed(digest, value[column].to_numpy())
    elif isinstance(value, np.ndarray) and value.dtype.kind != "O":
        digest.update(f"<ndarray {value.dtype.str} {value.shape}>".encode())
        digest.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
    elif isinstance(value, np.ndarray | list | tuple):
        digest.update(f"<seq {len(value)}>".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, Mapping):
        digest.update(f"<map {len(value)}>".encode())
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, datetime):
        digest.update(f"<datetime {value.isoformat()}>".encode())
    else:
        digest.update(f"<{type(value).__name__} {value!r}>".encode())
