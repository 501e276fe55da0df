"""Static QC report pages for an experiment or an ecephys session, from the tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainobs.export import figures
from brainobs.export.report import (
    DiagramSection,
    FigureSection,
    Identity,
    KeyValues,
    QcOverride,
    QcTable,
    write_report,
)


def pipeline_diagram() -> DiagramSection:
    """The schema diagram: SVG when Graphviz's dot is installed, else its mermaid source."""
    import shutil

    from brainobs.pipeline import diagram

    graph = diagram()
    if shutil.which("dot"):
        return DiagramSection("Pipeline", svg=graph.make_dot().create_svg().decode())
    return DiagramSection("Pipeline", mermaid=graph.make_mermaid())


def _override(table, key: dict) -> QcOverride | None:
    rows = (table & key).to_dicts()
    return QcOverride(rows[0]["outcome"], rows[0]["reviewer"], rows[0]["reason"]) if rows else None


def experiment_page(experiment_id: int, out: Path, release_tag: str | None = None) -> Path:
    """QC table, ROI masks, motion, dF/F heatmap with stimulus changes and the event raster of one experiment."""
    from brainobs import api
    from brainobs.schemas.acquisition import Experiment
    from brainobs.schemas.ophys import MotionCorrection, Segmentation, default_paramset
    from brainobs.schemas.qc import QC, QCOverride

    api.connect()
    key = {"experiment_id": int(experiment_id), "ophys_paramset": default_paramset()}
    experiment = (Experiment & key).fetch1()
    motion = (MotionCorrection & key).fetch1()
    rois = [
        (np.asarray(r["ypix"]), np.asarray(r["xpix"]), bool(r["valid_roi"]))
        for r in (Segmentation.ROI & key).to_dicts(order_by="cell_roi_id")
    ]
    dff = api.dff_traces(experiment_id)
    events = api.events(experiment_id)
    presentations = api.stimulus_presentations(experiment["session_id"])
    changes = presentations.loc[presentations["is_change"], "start_time"].to_numpy() if len(presentations) else None
    omissions = presentations.loc[presentations["omitted"], "start_time"].to_numpy() if len(presentations) else None
    border = {side: motion[f"max_correction_{side}"] for side in ("left", "right", "up", "down")}
    sections = [
        QcTable(rows, override=_override(QCOverride, qc_key))
        for qc_key, rows in ((q, (QC.Check & q).to_dicts()) for q in (QC & key).proj().to_dicts())
    ]
    sections += [
        FigureSection("ROI masks", figures.roi_mask_figure(np.asarray(motion["average_image"]), rois)),
        FigureSection(
            "Motion correction", figures.motion_figure(motion["x_offset"], motion["y_offset"], motion_border=border)
        ),
    ]
    if dff.size:
        times = dff.index.to_numpy()
        roi_ids = dff.columns.to_numpy()
        sections.append(
            FigureSection(
                "dF/F",
                figures.dff_heatmap_figure(
                    dff.to_numpy().T, times, change_times=changes, omission_times=omissions, roi_ids=roi_ids
                ),
            )
        )
        sections.append(
            FigureSection("Events", figures.event_raster_figure(events.to_numpy().T, times, change_times=changes))
        )
    sections.append(pipeline_diagram())
    sections.append(
        KeyValues(
            "Experiment",
            {
                name: experiment[name]
                for name in ("targeted_structure", "imaging_depth", "frame_rate", "width", "height", "movie_file")
            },
        )
    )
    identity = Identity(
        subject=experiment["subject_id"],
        session=str(experiment["session_id"]),
        experiment=str(experiment_id),
        container=str(experiment["container_id"]),
        release_tag=release_tag,
    )
    return write_report(out, f"Experiment {experiment_id}", sections, identity)


def session_page(session_id: int, out: Path, release_tag: str | None = None) -> Path:
    """Session QC, behavior performance, and (ecephys) the spike raster and unit metric histograms."""
    from brainobs import api
    from brainobs.schemas.acquisition import Session
    from brainobs.schemas.behavior import Behavior
    from brainobs.schemas.qc import SessionQC, SessionQCOverride

    api.connect()
    key = {"session_id": int(session_id)}
    session = (Session & key).fetch1()
    sections: list = [
        QcTable((SessionQC.Check & q).to_dicts(), override=_override(SessionQCOverride, q))
        for q in (SessionQC & key).proj().to_dicts()
    ]
    performance = (Behavior.Performance & key).to_dicts()
    if performance:
        sections.append(KeyValues("Performance", {k: v for k, v in performance[0].items() if k not in key}))
    units = api.units(key)
    if len(units):
        spikes = api.spike_times(session_id)
        sections.append(FigureSection("Spike raster", figures.spike_raster_figure(list(spikes.values()))))
        metrics = units[["firing_rate", "presence_ratio", "isi_violations", "amplitude_cutoff", "snr"]]
        sections.append(
            FigureSection("Unit metrics", figures.unit_metric_histograms(metrics, thresholds="visual_coding"))
        )
    sections.append(KeyValues("Session", {k: session[k] for k in ("session_type", "modality", "rig", "image_set")}))
    identity = Identity(subject=session["subject_id"], session=str(session_id), release_tag=release_tag)
    return write_report(out, f"Session {session_id}", sections, identity)
