"""The ophys experiment file: one imaging plane with its session's behavior and stimulus.

Layout (Allen Brain Observatory names where standard NWB types fit):
- /general/devices/<device_name>, /general/optophysiology/imaging_plane_1: indicator, excitation and
  emission wavelengths (nm), imaging rate, location = targeted structure (CCF acronym), pixel pitch
  (grid_spacing, um); the depth below the pia is origin_coords[2] (um) and in the description.
- /processing/ophys/image_segmentation/cell_specimen_table: PlaneSegmentation, id = cell_roi_id, full-FOV
  image_mask, columns cell_specimen_id (-1: none), x, y, width, height, valid_roi,
  max_correction_{up,down,left,right} (pixels, the experiment's values on every row), r and RMSE (neuropil
  correction), event_lambda and event_noise_std (event detection; the lambda is NaN unless it is L0).
- RoiResponseSeries "traces" (frames x ROIs) in dff (DfOverF), corrected_fluorescence, demixed_trace and
  neuropil_trace (Fluorescence); /processing/ophys/event_detection: Allen's OphysEventDetection (events,
  frames x ROIs, with the lambdas and noise_stds of every ROI). They share one time base: the dF/F series
  holds the timestamps (or starting_time and rate where regular), the others link to them.
- /processing/ophys/images: max_projection, average_image, segmentation_mask_image (GrayscaleImage;
  the mask image is Allen's 0/1 uint8); `resolution` = pixels per cm from the pixel size.
- /processing/ophys/ophys_motion_correction_x and _y: TimeSeries, pixels.
- /general/metadata: Allen's OphysBehaviorMetadata; the file's identifier is the experiment id.
"""

from __future__ import annotations

import warnings

import numpy as np
from hdmf.common import VectorData
from pynwb import NWBFile, ProcessingModule, TimeSeries
from pynwb.base import Images
from pynwb.image import GrayscaleImage
from pynwb.ophys import (
    DfOverF,
    Fluorescence,
    ImageSegmentation,
    ImagingPlane,
    OpticalChannel,
    PlaneSegmentation,
    RoiResponseSeries,
)

from brainobs.export.allen_types import BEHAVIOR_OPHYS, EVENT_DETECTION, allen_class
from brainobs.export.bundles import ImagingPlaneInfo, OphysExperimentBundle, ProjectionImages, RoiTable, RoiTraces
from brainobs.export.nwb_behavior import add_behavior, behavior_metadata
from brainobs.export.nwb_common import dataset, new_nwbfile, table_expectations, time_base, time_expectation
from brainobs.export.provenance import add_provenance
from brainobs.export.readback import Expectation

MODULE = "ophys"
PLANE_SEGMENTATION = "cell_specimen_table"
ROI_COLUMNS = {
    "cell_specimen_id": "cell specimen (the same cell across sessions of the container); -1 where none",
    "x": "column of the top-left corner of the ROI's bounding box (pixels)",
    "y": "row of the top-left corner of the ROI's bounding box (pixels)",
    "width": "width of the ROI's bounding box (pixels)",
    "height": "height of the ROI's bounding box (pixels)",
    "valid_roi": "whether the ROI passed the ROI filters (is a cell)",
    "max_correction_up": "largest motion correction upward in the experiment (pixels)",
    "max_correction_down": "largest motion correction downward in the experiment (pixels)",
    "max_correction_left": "largest motion correction leftward in the experiment (pixels)",
    "max_correction_right": "largest motion correction rightward in the experiment (pixels)",
    "r": "neuropil contamination ratio of the ROI (corrected = demixed - r * neuropil)",
    "RMSE": "root-mean-square error of the neuropil fit (fluorescence units)",
    "event_lambda": "L0 penalty chosen by event detection (NaN for a parameter set whose events are not L0)",
    "event_noise_std": "robust noise standard deviation of the dF/F trace used by event detection",
}
# (container name, container type, series name, bundle field, unit, description)
TRACE_SERIES = (
    ("dff", DfOverF, "traces", "dff", "n.a.", "dF/F of every ROI (unitless)"),
    ("corrected_fluorescence", Fluorescence, "traces", "corrected", "a.u.", "neuropil-corrected fluorescence"),
    ("demixed_trace", Fluorescence, "traces", "demixed", "a.u.", "fluorescence after demixing overlapping ROIs"),
    ("neuropil_trace", Fluorescence, "traces", "neuropil", "a.u.", "neuropil fluorescence around each ROI"),
)
UM_PER_CM = 1e4


def build_ophys_nwbfile(bundle: OphysExperimentBundle, source_sha256: str) -> tuple[NWBFile, list[Expectation]]:
    """The NWBFile of one experiment, and what to verify when it is read back."""
    plane_info = bundle.plane
    nwbfile = new_nwbfile(bundle.session, bundle.subject, bundle.provenance, identifier=str(plane_info.experiment_id))
    expectations = _metadata(nwbfile, bundle)
    device = nwbfile.create_device(
        name=plane_info.device_name,
        description=plane_info.device_description,
        manufacturer=plane_info.device_manufacturer,
    )
    depth = plane_info.imaging_depth_um
    container = f", container {plane_info.container_id}" if plane_info.container_id is not None else ""
    if plane_info.plane_group is not None:
        container += (
            f", imaging plane group {plane_info.plane_group} order {plane_info.plane_order}"
            f" paired with experiment {plane_info.paired_experiment_id}"
        )
    imaging_plane = nwbfile.create_imaging_plane(
        name="imaging_plane_1",
        optical_channel=OpticalChannel(
            name="channel_1",
            description=f"{plane_info.indicator} emission",
            emission_lambda=plane_info.emission_lambda_nm,
        ),
        description=f"ophys experiment {plane_info.experiment_id}{container}: "
        f"{plane_info.targeted_structure} at {depth:g} um below the pia",
        device=device,
        excitation_lambda=plane_info.excitation_lambda_nm,
        imaging_rate=plane_info.imaging_rate_hz,
        indicator=plane_info.indicator,
        location=plane_info.targeted_structure,
        grid_spacing=[plane_info.pixel_size_um, plane_info.pixel_size_um],
        grid_spacing_unit="micrometers",
        origin_coords=[0.0, 0.0, depth],
        origin_coords_unit="micrometers",
    )
    ophys = nwbfile.create_processing_module(MODULE, "2-photon processing: segmentation, traces, events, motion")
    segmentation, roi_expectations = _plane_segmentation(bundle, imaging_plane)
    expectations += roi_expectations
    ophys.add(ImageSegmentation(name="image_segmentation", plane_segmentations=[segmentation]))
    expectations += _traces(ophys, segmentation, bundle.traces)
    expectations += _images(ophys, bundle.images, plane_info.pixel_size_um)
    expectations += _motion(ophys, bundle)
    if bundle.behavior is not None:
        expectations += add_behavior(nwbfile, bundle.behavior)
    expectations += add_provenance(nwbfile, bundle.provenance, source_sha256)
    return nwbfile, expectations


def _metadata(nwbfile: NWBFile, bundle: OphysExperimentBundle) -> list[Expectation]:
    """Allen's OphysBehaviorMetadata (single-plane: imaging_plane_group -1, count 0)."""
    plane: ImagingPlaneInfo = bundle.plane
    height, width = bundle.images.max_projection.shape
    values = {
        **behavior_metadata(bundle.session),
        "ophys_experiment_id": int(plane.experiment_id),
        "ophys_session_id": int(bundle.session.session_id),
        "ophys_container_id": int(plane.container_id) if plane.container_id is not None else -1,
        "field_of_view_width": int(width),
        "field_of_view_height": int(height),
        "imaging_depth": round(plane.imaging_depth_um),
        "targeted_imaging_depth": round(plane.imaging_depth_um),
        "imaging_plane_group": -1,
        "imaging_plane_group_count": 0,
    }
    nwbfile.add_lab_meta_data(allen_class(BEHAVIOR_OPHYS, "OphysBehaviorMetadata")(**values))
    return [
        Expectation(f"general/metadata/{name}", lambda f, name=name: getattr(f.lab_meta_data["metadata"], name), value)
        for name, value in values.items()
        if isinstance(value, int)
    ]


def _read_segmentation(nwbfile: NWBFile) -> PlaneSegmentation:
    return nwbfile.processing[MODULE]["image_segmentation"][PLANE_SEGMENTATION]


def _plane_segmentation(
    bundle: OphysExperimentBundle, imaging_plane: ImagingPlane
) -> tuple[PlaneSegmentation, list[Expectation]]:
    rois: RoiTable = bundle.rois
    motion = bundle.motion
    n = rois.n_roi
    values = {
        "cell_specimen_id": np.asarray(rois.cell_specimen_id, dtype=np.int64),
        "x": np.asarray(rois.x, dtype=np.int64),
        "y": np.asarray(rois.y, dtype=np.int64),
        "width": np.asarray(rois.width, dtype=np.int64),
        "height": np.asarray(rois.height, dtype=np.int64),
        "valid_roi": np.asarray(rois.valid_roi, dtype=bool),
        **{
            f"max_correction_{side}": np.full(n, float(getattr(motion, f"max_correction_{side}")))
            for side in ("up", "down", "left", "right")
        },
        "r": np.asarray(rois.r, dtype=np.float64),
        "RMSE": np.asarray(rois.rmse, dtype=np.float64),
        "event_lambda": np.asarray(bundle.traces.lambdas, dtype=np.float64),
        "event_noise_std": np.asarray(bundle.traces.noise_stds, dtype=np.float64),
    }
    columns = [
        VectorData(name="image_mask", description="full field-of-view mask of the ROI", data=dataset(rois.image_mask))
    ]
    columns += [
        VectorData(name=name, description=ROI_COLUMNS[name], data=dataset(column)) for name, column in values.items()
    ]
    segmentation = PlaneSegmentation(
        name=PLANE_SEGMENTATION,
        description="segmented ROIs of the experiment (id = cell_roi_id), all of them, valid or not",
        imaging_plane=imaging_plane,
        id=np.asarray(rois.cell_roi_id, dtype=np.int64),
        columns=columns,
    )
    stored = {"id": np.asarray(rois.cell_roi_id, dtype=np.int64), "image_mask": rois.image_mask, **values}
    return segmentation, table_expectations(f"{MODULE}/{PLANE_SEGMENTATION}", _read_segmentation, stored)


def _traces(ophys: ProcessingModule, segmentation: PlaneSegmentation, traces: RoiTraces) -> list[Expectation]:
    expectations: list[Expectation] = []
    reference = None
    region = np.arange(traces.n_roi)
    for container_name, container_type, series_name, field, unit, description in TRACE_SERIES:
        data = getattr(traces, field)
        container = container_type(name=container_name)
        ophys.add(container)
        with warnings.catch_warnings():
            # hdmf warns that the region's table shares no ancestor with the series, which gets one when added.
            warnings.filterwarnings("ignore", message="The linked table for DynamicTableRegion", category=UserWarning)
            series = RoiResponseSeries(
                name=series_name,
                description=description,
                data=dataset(data),
                rois=segmentation.create_roi_table_region(description="all ROIs", region=region.tolist()),
                unit=unit,
                **time_base(traces.timestamps, reference),
            )
            container.add_roi_response_series(series)
        reference = reference or series
        read = lambda f, c=container_name, s=series_name: f.processing[MODULE][c][s]  # noqa: E731
        label = f"{MODULE}/{container_name}/{series_name}"
        expectations.append(Expectation(f"{label}/data", lambda f, read=read: read(f).data, data))
        expectations.append(Expectation(f"{label}/rois", lambda f, read=read: read(f).rois.data[:], region))
    read_dff = lambda f: f.processing[MODULE]["dff"]["traces"]  # noqa: E731
    expectations.append(time_expectation(f"{MODULE}/dff/traces", read_dff, traces.timestamps))
    expectations += _events(ophys, segmentation, traces, reference)
    return expectations


def _events(
    ophys: ProcessingModule, segmentation: PlaneSegmentation, traces: RoiTraces, reference: RoiResponseSeries
) -> list[Expectation]:
    region = np.arange(traces.n_roi)
    event_detection = allen_class(EVENT_DETECTION, "OphysEventDetection")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The linked table for DynamicTableRegion", category=UserWarning)
        events = event_detection(
            description="L0 event magnitudes in dF/F units (0 where none), with each ROI's L0 penalty (lambdas) "
            "and noise standard deviation (noise_stds)",
            data=dataset(traces.events),
            lambdas=np.asarray(traces.lambdas, dtype=np.float64),
            noise_stds=np.asarray(traces.noise_stds, dtype=np.float64),
            rois=segmentation.create_roi_table_region(description="all ROIs", region=region.tolist()),
            unit="n.a.",
            **time_base(traces.timestamps, reference),
        )
    ophys.add(events)
    read = lambda f: f.processing[MODULE]["event_detection"]  # noqa: E731
    return [
        Expectation(f"{MODULE}/event_detection/data", lambda f: read(f).data, traces.events),
        Expectation(f"{MODULE}/event_detection/rois", lambda f: read(f).rois.data[:], region),
        Expectation(
            f"{MODULE}/event_detection/lambdas", lambda f: read(f).lambdas[:], np.asarray(traces.lambdas, float)
        ),
        Expectation(
            f"{MODULE}/event_detection/noise_stds",
            lambda f: read(f).noise_stds[:],
            np.asarray(traces.noise_stds, float),
        ),
    ]


def _images(ophys: ProcessingModule, images: ProjectionImages, pixel_size_um: float) -> list[Expectation]:
    stored = {}
    for name in ProjectionImages.names():
        data = np.asarray(getattr(images, name))
        stored[name] = (data > 0).astype(np.uint8) if name == "segmentation_mask_image" else data
    ophys.add(
        Images(
            name="images",
            description="summary images of the registered movie",
            images=[
                GrayscaleImage(
                    name=name,
                    data=dataset(data),
                    description=name.replace("_", " "),
                    resolution=UM_PER_CM / pixel_size_um,
                )
                for name, data in stored.items()
            ],
        )
    )
    return [
        Expectation(f"{MODULE}/images/{name}", lambda f, name=name: f.processing[MODULE]["images"][name].data, data)
        for name, data in stored.items()
    ]


def _motion(ophys: ProcessingModule, bundle: OphysExperimentBundle) -> list[Expectation]:
    expectations = []
    dff_series = ophys["dff"]["traces"]
    for axis in ("x", "y"):
        data = getattr(bundle.motion, axis)
        name = f"ophys_motion_correction_{axis}"
        ophys.add(
            TimeSeries(
                name=name,
                description=f"rigid motion correction along {axis} applied to each frame",
                data=dataset(data),
                unit="pixels",
                **time_base(bundle.traces.timestamps, dff_series),
            )
        )
        expectations.append(Expectation(f"{MODULE}/{name}/data", lambda f, n=name: f.processing[MODULE][n].data, data))
    return expectations
