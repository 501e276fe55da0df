"""An experiment whose movie holds no cell (a constant movie) goes through every 2-photon stage: each
master row is made, its Part tables stay empty, the container is matched and QC says why it fails."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import yaml

SUBJECT = {
    "subject_id": "MZERO1",
    "sex": "M",
    "indicator": "GCaMP6f",
    "full_genotype": "Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
}
KEY = {"subject_id": "MZERO1", "session_id": 970000, "experiment_id": 970001}
STAGES = ["MotionCorrection", "Segmentation", "Fluorescence", "Demixing", "NeuropilCorrection", "DeltaFOverF"]
STAGES += ["EventDetection", "CellMatching", "QC", "ContainerQC"]


@pytest.fixture
def forget_jobs(database):
    yield
    from brainobs.pipeline import computed_tables

    for table in computed_tables():
        (table().jobs & {"subject_id": SUBJECT["subject_id"]}).delete_quick()


@pytest.mark.db
@pytest.mark.slow
def test_constant_movie_goes_through_every_stage_with_empty_parts(db, settings, forget_jobs):
    from brainobs.ingest.manifest import load_manifest
    from brainobs.pipeline import populate_all
    from brainobs.schemas import matching, ophys, qc
    from brainobs.schemas.loading import insert_manifest

    folder = settings.data_root / "zero_rois"
    folder.mkdir(exist_ok=True)
    movie = folder / "constant.tif"
    tifffile.imwrite(movie, np.full((200, 64, 64), 1000, np.uint16), metadata={"frame_rate_hz": 10.0})
    manifest = settings.data_root / "zero-rois.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "subjects": [SUBJECT],
                "sessions": [
                    {
                        "session_id": KEY["session_id"],
                        "subject_id": "MZERO1",
                        "session_type": "zero_rois",
                        "modality": "ophys",
                        "session_start_time": "2026-03-02T09:30:00",
                    }
                ],
                "containers": [
                    {"container_id": 970000, "subject_id": "MZERO1", "targeted_structure": "VISp", "imaging_depth": 1}
                ],
                "experiments": [
                    {
                        "experiment_id": KEY["experiment_id"],
                        "session_id": KEY["session_id"],
                        "container_id": 970000,
                        "imaging_depth": 1,
                        "targeted_structure": "VISp",
                        "frame_rate": 10.0,
                        "width": 64,
                        "height": 64,
                        "pixel_size_um": 0.78,
                        "movie_file": movie.relative_to(settings.data_root).as_posix(),
                    }
                ],
            }
        )
    )
    insert_manifest(load_manifest(manifest, settings.data_root))

    result = populate_all(settings, tables=STAGES)

    errors = {name: r["error_list"] for name, r in result.items() if r["error_list"]}
    assert not errors, errors
    segmentation = (ophys.Segmentation & KEY).fetch1()
    assert segmentation["n_rois"] == 0 and segmentation["n_valid"] == 0
    for table in (ophys.Fluorescence, ophys.Demixing, ophys.NeuropilCorrection, ophys.DeltaFOverF):
        assert len(table & KEY) == 1, table.__name__
        assert len(table.Trace & KEY) == 0, table.__name__
    assert len(ophys.EventDetection & KEY) == 1 and len(ophys.EventDetection.Event & KEY) == 0
    assert (ophys.Demixing & KEY).fetch1("n_groups") == 0
    matched = (matching.CellMatching & {"container_id": 970000}).fetch1()
    assert matched["n_cells"] == 0 and len(matching.CellMatching.CellSpecimen & {"container_id": 970000}) == 0
    assert (qc.QC & KEY).fetch1("outcome") == "FAIL"
    reasons = [c["reason"] for c in (qc.QC.Check & KEY).to_dicts() if c["outcome"] == "FAIL"]
    assert any("no ROI" in reason for reason in reasons), reasons
    bins = (qc.QC.Check & KEY & {"check_name": "detection_bins"}).fetch1()  # 20 s in 3.7 s bins
    assert bins["outcome"] == "WARNING" and bins["value"] == 5 and "5 detection bins" in bins["reason"]
    assert len(qc.ContainerQC & {"container_id": 970000}) == 1


def test_no_valid_roi_fails_qc_saying_why():
    from brainobs.populate.qc import DEFAULT_QC_THRESHOLDS, Outcome, roi_checks

    empty = np.array([], dtype=bool)
    thresholds = {**DEFAULT_QC_THRESHOLDS, "valid_roi_min_fail": 0}  # even where 0 ROIs would pass the limit
    (count, *_) = roi_checks(0, np.array([]), empty, empty, thresholds)
    assert count.outcome == Outcome.FAIL and count.reason.startswith("no ROI: no valid ROI")
    (count, *_) = roi_checks(5, np.array([0.7]), np.zeros(5, bool), np.zeros(5, bool), DEFAULT_QC_THRESHOLDS)
    assert count.outcome != Outcome.FAIL
