"""Exported NWB files: their content read back with pynwb, nwbinspector's verdict, and pynapple as a reader."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from brainobs.export.bundles import BehaviorSessionBundle, StimulusTemplates, source_digest
from brainobs.export.provenance import read_provenance
from brainobs.export.validation import inspect_nwb
from brainobs.export.writer import (
    WriteResult,
    export_behavior_session,
    export_ecephys_session,
    export_ophys_experiment,
)
from tests.test_export_bundles import (
    make_behavior,
    make_ecephys_bundle,
    make_ophys_bundle,
    make_session,
    make_subject,
)


@pytest.fixture(scope="module")
def ophys(tmp_path_factory) -> tuple[WriteResult, object]:
    bundle = make_ophys_bundle()
    return export_ophys_experiment(bundle, tmp_path_factory.mktemp("ophys") / "experiment.nwb"), bundle


@pytest.fixture(scope="module")
def ecephys(tmp_path_factory) -> tuple[WriteResult, object]:
    bundle = make_ecephys_bundle()
    return export_ecephys_session(bundle, tmp_path_factory.mktemp("ecephys") / "session.nwb"), bundle


def _read(path: Path):
    io = NWBHDF5IO(path, "r")
    return io, io.read()


def test_ophys_layout_and_values(ophys) -> None:
    result, bundle = ophys
    io, nwbfile = _read(result.path)
    with io:
        assert nwbfile.subject.species == "Mus musculus"
        assert nwbfile.subject.age == "P112D"
        assert nwbfile.subject.genotype == bundle.subject.genotype
        plane = nwbfile.imaging_planes["imaging_plane_1"]
        assert (plane.excitation_lambda, plane.imaging_rate, plane.location) == (910.0, 31.0, "VISp")
        assert plane.indicator == "GCaMP6f"
        assert plane.origin_coords[2] == 175.0
        ophys_module = nwbfile.processing["ophys"]
        table = ophys_module["image_segmentation"]["cell_specimen_table"]
        np.testing.assert_array_equal(table.id[:], bundle.rois.cell_roi_id)
        np.testing.assert_array_equal(table["cell_specimen_id"][:], bundle.rois.cell_specimen_id)
        np.testing.assert_array_equal(table["valid_roi"][:], bundle.rois.valid_roi)
        assert table["image_mask"].data.shape == (4, 64, 64)
        np.testing.assert_array_equal(table["max_correction_left"][:], np.full(4, 3.0))
        np.testing.assert_allclose(table["r"][:], bundle.rois.r)
        np.testing.assert_allclose(table["event_lambda"][:], bundle.traces.lambdas)
        dff = ophys_module["dff"]["traces"]
        assert dff.data.shape == (200, 4)  # time first
        np.testing.assert_array_equal(dff.data[:, 2], bundle.traces.dff[:, 2])
        np.testing.assert_array_equal(dff.timestamps[:], bundle.traces.timestamps)
        neuropil = ophys_module["neuropil_trace"]["traces"]
        np.testing.assert_array_equal(neuropil.timestamps[:], bundle.traces.timestamps)  # linked to dF/F's
        events = ophys_module["event_detection"]
        assert events.neurodata_type == "OphysEventDetection" and events.data.shape == (200, 4)
        np.testing.assert_array_equal(events.lambdas[:], bundle.traces.lambdas)
        np.testing.assert_array_equal(events.noise_stds[:], bundle.traces.noise_stds)
        assert nwbfile.identifier == "951980471"
        assert nwbfile.subject.reporter_line == "Ai93(TITL-GCaMP6f)"
        assert list(nwbfile.subject.driver_line) == ["Slc17a7-IRES2-Cre", "Camk2a-tTA"]
        metadata = nwbfile.lab_meta_data["metadata"]
        assert (metadata.ophys_experiment_id, metadata.behavior_session_id) == (951980471, 951410079)
        assert nwbfile.lab_meta_data["task_parameters"].response_window_sec[:].tolist() == ["0.15", "0.75"]
        images = ophys_module["images"]
        assert set(images.images) == {"max_projection", "average_image", "segmentation_mask_image"}
        assert images["max_projection"].resolution == pytest.approx(1e4 / 0.78)  # pixels per cm
        assert set(np.unique(images["segmentation_mask_image"].data[:])) == {0, 1}
        assert ophys_module["ophys_motion_correction_x"].unit == "pixels"
        assert nwbfile.processing["running"]["speed"].unit == "cm/s"
        np.testing.assert_array_equal(nwbfile.acquisition["v_sig"].data[:], bundle.behavior.running_speed.v_sig)
        np.testing.assert_array_equal(nwbfile.processing["licking"]["licks"].timestamps[:], [1.4, 1.5, 2.6, 4.3, 6.0])
        assert list(nwbfile.processing["rewards"]["autorewarded"].data[:]) == [False, True]
        assert not nwbfile.stimulus_template  # the bundle has no images
        assert len(nwbfile.trials) == 6 and len(nwbfile.intervals["stimulus_presentations"]) == 8
        presentations = nwbfile.intervals["stimulus_presentations"]
        assert "orientation" not in presentations.colnames  # NaN in every row
        assert "params" not in presentations.colnames
        assert list(nwbfile.epochs["stimulus_block_name"][:]) == ["images_A", "gray"]
        np.testing.assert_array_equal(nwbfile.trials["lick_times"][0], [1.4, 1.5])
    assert result.counts["ophys/cell_specimen_table/rows"] == 4
    assert result.counts["intervals/trials/rows"] == 6
    assert len(result.checksums) > 40  # every array was compared


def test_ecephys_layout_and_values(ecephys) -> None:
    result, bundle = ecephys
    io, nwbfile = _read(result.path)
    with io:
        assert set(nwbfile.devices) == {"probeA", "probeB"}
        assert set(nwbfile.electrode_groups) == {"probeA", "probeB"}
        electrodes = nwbfile.electrodes.to_dataframe()
        assert list(electrodes.index) == list(bundle.channels.channel_id)
        assert electrodes["location"].iloc[3] == "CA1"
        np.testing.assert_array_equal(electrodes["probe_vertical_position"], bundle.channels.probe_vertical_position)
        np.testing.assert_array_equal(electrodes["rel_y"], bundle.channels.probe_vertical_position)
        units = nwbfile.units
        assert units.resolution == pytest.approx(1 / 30000)
        assert list(units.id[:]) == [950910000, 950910001]
        np.testing.assert_array_equal(units["spike_times"][1], bundle.units.spike_times[1])
        np.testing.assert_array_equal(units["spike_amplitudes"][0], bundle.units.spike_amplitudes[0])
        assert units["waveform_mean"].data.shape == (2, 82, 3)
        assert list(units["electrodes"][1].index) == [850000007, 850000008, 850000009]
        assert units["electrode_group"][1].name == "probeB"
        for column in ("firing_rate", "presence_ratio", "isi_violations", "PT_ratio", "quality", "peak_channel_id"):
            assert column in units.colnames
        assert list(units["quality"][:]) == ["good", "noise"]
        assert list(units["cluster_id"][:]) == [12, 3] and list(units["local_index"][:]) == [0, 0]
        assert list(electrodes["probe_id"]) == [1] * 6 + [2] * 6 and electrodes["valid_data"].all()
        np.testing.assert_array_equal(electrodes[["x", "y", "z"]].to_numpy(), bundle.channels.ccf_coordinates)
        probe = nwbfile.devices["probeB"]
        assert (type(probe).__name__, probe.sampling_rate, probe.probe_id) == ("EcephysProbe", 30000.0, 2)
        group = nwbfile.electrode_groups["probeB"]
        assert type(group).__name__ == "EcephysElectrodeGroup" and group.probe_id == 2 and not group.has_lfp_data
        assert np.isnan(group.lfp_sampling_rate)
        assert np.isnan(units["velocity_below"][0])
    assert result.counts["units/spikes"] == 79


def test_provenance_in_file(ophys) -> None:
    result, bundle = ophys
    io, nwbfile = _read(result.path)
    with io:
        provenance = read_provenance(nwbfile)
        generated_by = [tuple(row) for row in nwbfile.was_generated_by]
    assert provenance["software"]["suite2p"] == "1.1.0"
    assert provenance["dff"] == {
        "paramset_hash": "9e22aa",
        "long_window_s": 600,
        "short_window_s": 3.33,
        "filter.order": 2,
    }
    assert provenance["export"]["source_sha256"] == source_digest(bundle) == result.source_sha256
    assert generated_by[0][0] == "brainobs"


@pytest.mark.parametrize("which", ["ophys", "ecephys"])
def test_inspector_finds_nothing(which: str, request) -> None:
    result, _ = request.getfixturevalue(which)
    report = inspect_nwb(result.path)
    print(report.summary())
    assert report.passed, report.summary()
    # the one suggestion: Allen's processing module names, which AllenSDK reads, are not NWB's schema names
    allen_modules = {"running", "licking", "rewards", "stimulus"}
    others = [
        f
        for f in report.findings
        if not (
            f.check == "check_processing_module_name" and f.message.split(" named ")[1].split(".")[0] in allen_modules
        )
    ]
    assert not others, report.summary()


def test_unknown_electrode_location_is_the_one_finding(tmp_path: Path) -> None:
    """Channels outside any structure say "unknown", which nwbinspector reports as a best-practice violation."""
    bundle = make_ecephys_bundle()
    location = bundle.channels.location.copy()
    location[0] = "unknown"
    bundle = dataclasses.replace(bundle, channels=dataclasses.replace(bundle.channels, location=location))
    result = export_ecephys_session(bundle, tmp_path / "session.nwb")
    report = inspect_nwb(result.path)
    assert [(f.level, f.check) for f in report.findings if f.check != "check_processing_module_name"] == [
        ("BEST_PRACTICE_VIOLATION", "check_electrodes_location_allen_ccf")
    ]
    assert inspect_nwb(result.path, ignore=["check_electrodes_location_allen_ccf"]).passed


def test_regular_timestamps_become_a_rate(tmp_path: Path) -> None:
    bundle = make_ophys_bundle()
    regular = 0.5 + np.arange(200) / 31.0
    bundle = dataclasses.replace(bundle, traces=dataclasses.replace(bundle.traces, timestamps=regular))
    result = export_ophys_experiment(bundle, tmp_path / "experiment.nwb")
    io, nwbfile = _read(result.path)
    with io:
        dff = nwbfile.processing["ophys"]["dff"]["traces"]
        assert dff.timestamps is None
        assert dff.rate == pytest.approx(31.0) and dff.starting_time == pytest.approx(0.5)
    assert inspect_nwb(result.path).passed


def test_pynapple_reads_units_and_dff(ophys, ecephys) -> None:
    nap = pytest.importorskip("pynapple")
    ophys_result, ophys_bundle = ophys
    ecephys_result, ecephys_bundle = ecephys
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ophys_file = nap.load_file(str(ophys_result.path))
        dff = ophys_file["dff/traces"]
        trials = ophys_file["trials"]  # the ragged lick_times column does not make it a units table
        units = nap.load_file(str(ecephys_result.path))["units"]
    assert dff.shape == (200, 4)
    assert isinstance(trials, nap.IntervalSet) and len(trials) == 6
    np.testing.assert_allclose(trials.start, ophys_bundle.behavior.trials["start_time"])
    np.testing.assert_array_equal(trials.metadata["change_frame"], ophys_bundle.behavior.trials["change_frame"])
    np.testing.assert_allclose(dff.times(), ophys_bundle.traces.timestamps)
    np.testing.assert_allclose(dff.values[:, 1], ophys_bundle.traces.dff[:, 1])
    assert list(units.keys()) == [950910000, 950910001]
    np.testing.assert_allclose(units[950910001].times(), ecephys_bundle.units.spike_times[1])
    assert list(units.metadata["quality"]) == ["good", "noise"]
    rates = units.restrict(nap.IntervalSet(0.0, 6.5)).rate
    assert rates.iloc[0] == pytest.approx(48 / 6.5, rel=1e-6)


def test_a_mesoscope_plane_records_its_group_and_partner(tmp_path: Path) -> None:
    bundle = make_ophys_bundle()
    plane = dataclasses.replace(bundle.plane, plane_group=1, plane_order=0, paired_experiment_id=900004)
    result = export_ophys_experiment(dataclasses.replace(bundle, plane=plane), tmp_path / "plane.nwb")
    io, nwbfile = _read(result.path)
    with io:
        description = nwbfile.imaging_planes["imaging_plane_1"].description
    assert "imaging plane group 1 order 0 paired with experiment 900004" in description


@pytest.mark.parametrize("image_shape", [(2, 3), (12, 16)])
def test_stimulus_templates_and_the_inspector(tmp_path: Path, image_shape: tuple[int, int]) -> None:
    """Allen's StimulusTemplate stack of 3 images: read back whole; nwbinspector's time-first orientation check
    accepts it while no image side exceeds the image count, and reports CRITICAL otherwise (docs/nwb.md)."""
    rng = np.random.default_rng(5)
    warped = rng.integers(0, 256, (3, *image_shape)).astype(np.uint8)
    unwarped = np.where(rng.random(warped.shape) < 0.2, np.nan, warped)
    templates = StimulusTemplates("A", ("im000", "im001", "im002"), warped, unwarped)
    bundle = BehaviorSessionBundle(
        subject=make_subject(),
        session=make_session("951410080"),
        behavior=dataclasses.replace(make_behavior(rng), stimulus_templates=(templates,)),
    )
    result = export_behavior_session(bundle, tmp_path / "behavior.nwb")
    io, nwbfile = _read(result.path)
    with io:
        stored = nwbfile.stimulus_template["A"]
        assert type(stored).__name__ == "StimulusTemplate" and stored.data.dtype == np.uint8
        np.testing.assert_array_equal(stored.data[:], warped)
        np.testing.assert_array_equal(stored.unwarped[:], unwarped)
        assert list(stored.control_description[:]) == ["im000", "im001", "im002"]
    report = inspect_nwb(result.path)
    failing = [(f.level, f.check, f.location) for f in report.failing]
    if max(image_shape) <= 3:
        assert not failing, report.summary()
    else:
        assert failing == [("CRITICAL", "check_data_orientation", "/stimulus/templates/A")], report.summary()


def test_a_session_without_licks_keeps_its_empty_lick_times(tmp_path: Path) -> None:
    """Every row of the ragged lick_times column is empty: the flat values hold one NaN that no row holds, so
    that nwbinspector's table checks run (they crash on an empty column); readers see empty rows."""
    behavior = make_behavior(np.random.default_rng(6))
    trials = behavior.trials.assign(lick_times=[np.zeros(0)] * len(behavior.trials))
    bundle = BehaviorSessionBundle(
        subject=make_subject(),
        session=make_session("951410082"),
        behavior=dataclasses.replace(behavior, licks=None, trials=trials),
    )
    result = export_behavior_session(bundle, tmp_path / "behavior.nwb")
    io, nwbfile = _read(result.path)
    with io:
        rows = nwbfile.trials.to_dataframe()["lick_times"]
        assert len(rows) == 6 and all(len(times) == 0 for times in rows)
        assert np.isnan(nwbfile.trials["lick_times"].target.data[:]).all()
    report = inspect_nwb(result.path)
    assert report.passed, report.summary()
    assert not [f for f in report.findings if f.level == "ERROR"], report.summary()
    nap = pytest.importorskip("pynapple")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(nap.load_file(str(result.path))["trials"], nap.IntervalSet)
