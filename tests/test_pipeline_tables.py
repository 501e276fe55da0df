"""The whole pipeline on the tiny survey (2-photon, matching, Neuropixels, QC, release), scored against truth."""

import numpy as np
import pytest

pytestmark = [pytest.mark.db, pytest.mark.slow]


@pytest.fixture(scope="module")
def processed(database, settings):
    """The tiny survey ingested and run through every table (once for this module)."""
    from brainobs.ingest.manifest import load_manifest
    from brainobs.pipeline import populate_all
    from brainobs.schemas.loading import insert_manifest
    from brainobs.schemas.subject import Subject

    Subject.delete(prompt=False)
    insert_manifest(load_manifest(settings.data_root / "manifest.yaml", settings.data_root))
    results = populate_all(settings)
    failures = {name: r["error_list"] for name, r in results.items() if r["error_list"]}
    assert not failures, failures
    return settings.data_root


def _score(data_root, experiment: dict):
    """Segmentation.ROI rows of one experiment, its truth, and its score against the truth (FOV interior)."""
    from brainobs import api
    from brainobs.ingest.synthetic.truth import load_ophys_truth
    from brainobs.schemas import ophys

    rois = (ophys.Segmentation.ROI & {"experiment_id": experiment["experiment_id"]}).to_dicts(order_by="cell_roi_id")
    truth = load_ophys_truth(data_root, experiment["experiment_id"])
    return rois, truth, api.score_against_truth(experiment["experiment_id"], data_root)


def _experiments():
    from brainobs.schemas.acquisition import Experiment

    return Experiment.to_dicts(order_by="experiment_id")


def test_every_stage_has_one_row_per_experiment(processed):
    from brainobs.schemas import ophys

    n = len(_experiments())
    assert n == 3
    for table in (
        ophys.MotionCorrection,
        ophys.Segmentation,
        ophys.Fluorescence,
        ophys.Demixing,
        ophys.NeuropilCorrection,
        ophys.DeltaFOverF,
        ophys.EventDetection,
    ):
        assert len(table()) == n, table.__name__
    for part in (ophys.Fluorescence.Trace, ophys.DeltaFOverF.Trace, ophys.EventDetection.Event):
        assert len(part()) == len(ophys.Segmentation.ROI()), part.__name__


def test_registration_and_detection_against_truth(processed):
    scores = []
    for experiment in _experiments():
        _, _, score = _score(processed, experiment)
        assert score.registration_rmse_px <= 0.5, f"experiment {experiment['experiment_id']}: {score}"
        detection = score.detection
        scores.append((experiment["experiment_id"], len(detection.matches), detection.n_detected, detection.n_truth))
    matched, n_detected, n_truth = (sum(row[i] for row in scores) for i in (1, 2, 3))
    recall, precision = matched / n_truth, matched / n_detected
    f1 = 2 * recall * precision / (recall + precision)
    report = f"pooled F1 {f1:.3f}; (experiment, matched, detected, true cells): {scores}"
    assert f1 >= 0.9, report
    assert all(2 * m / (d + t) >= 0.8 for _, m, d, t in scores), report


def test_corrected_traces_follow_the_true_calcium(processed):
    correlations = np.concatenate([_score(processed, e)[2].trace_correlations for e in _experiments()])
    median = float(np.nanmedian(correlations))
    assert median >= 0.9, f"median corrected-trace correlation {median:.3f}"


def test_events_and_dff_windows(processed):
    from brainobs.schemas import ophys

    for row in ophys.EventDetection.to_dicts():
        assert row["gamma"] == pytest.approx(np.exp(-1 / (0.347 * 31.0)))
        assert row["noise_multiplier"] == 2.0
    for row in ophys.DeltaFOverF.to_dicts():
        assert row["short_window"] == 103  # 3.333 s at 31 Hz
        # the tiny survey's 6000-frame movies are shorter than 600 s: the short-movie preset clamps the window
        assert row["ophys_paramset"] == "allen_short_movies" and row["long_window_clamped"]
        assert row["long_window"] == 5999
    # ROIs demixing set to NaN keep their rows, labelled, and stay NaN through dF/F and events
    for label in (ophys.Demixing.ExclusionLabel & {"exclusion_label": "demix_error"}).proj().to_dicts():
        assert np.isnan((ophys.DeltaFOverF.Trace & label).fetch1("dff")).all()
        assert np.isnan((ophys.EventDetection.Event & label).fetch1("events")).all()
    n_events = sum(
        int(np.count_nonzero(np.nan_to_num(np.asarray(e)) > 0)) for e in ophys.EventDetection.Event.to_arrays("events")
    )
    assert n_events > 0


def test_event_decay_time_follows_allens_genotype_rule(processed):
    from brainobs.populate.ophys.indicators import UnknownGenotypeError
    from brainobs.schemas import ophys
    from brainobs.schemas.subject import Subject

    table = ophys.EventDetection()
    key = ophys.EventDetection.fetch("KEY", limit=1)[0]
    params, n_rois = table.make_fetch(key)
    assert table.make_compute(key, {**params, "events_decay_time_s": 0.5}, n_rois)[1] == 0.347  # the table wins
    subject = (Subject & key).fetch1()
    try:
        Subject.update1({**subject, "full_genotype": "Foo-Cre/wt;Ai999/wt"})
        with pytest.raises(UnknownGenotypeError, match="'Foo-Cre/wt;Ai999/wt' is not in Allen's decay-time table"):
            table.make_compute(key, params, n_rois)
        assert table.make_compute(key, {**params, "events_decay_time_s": 0.5}, n_rois)[1] == 0.5
        Subject.update1({**subject, "full_genotype": "Foo-Cre/wt;Ai999/wt", "decay_time": 0.6})
        assert table.make_compute(key, params, n_rois)[1] == 0.6
    finally:
        Subject.update1(subject)


def test_cell_matching_recovers_identities_across_sessions(processed):
    from brainobs.ingest.synthetic.scoring.matching import score_matching
    from brainobs.schemas.matching import CellMatching, cells_table

    match = CellMatching.fetch1()
    assert match["outcome"] == "matched" and match["n_experiments"] == 3
    cells = cells_table(container_id=match["container_id"])
    assert len(cells) == len(cells.drop_duplicates(["experiment_id", "cell_roi_id"]))
    truth: dict[int, dict[int, int]] = {}
    for experiment in _experiments():
        rois, cell_truth, score = _score(processed, experiment)
        true_cell = {rois[roi]["cell_roi_id"]: int(cell_truth.cell_ids[cell]) for roi, cell in score.matches}
        rois = cells[cells["experiment_id"] == experiment["experiment_id"]]["cell_roi_id"]
        truth[experiment["experiment_id"]] = {int(r): true_cell.get(int(r), -1) for r in rois}
    predicted = {(int(r.experiment_id), int(r.cell_roi_id)): int(r.cell_specimen_id) for r in cells.itertuples()}
    result = score_matching(predicted, truth)
    assert result.pair_recall >= 0.9, result
    assert result.pair_false_merge_rate <= 0.1, result


def test_cell_roi_ids_are_unique_and_only_valid_rois_get_a_cell_specimen_id(processed):
    from brainobs.schemas import ophys
    from brainobs.schemas.matching import CellMatching

    ids = ophys.Segmentation.ROI.to_arrays("cell_roi_id")
    assert len(np.unique(ids)) == len(ids) > 0, "one cell_roi_id names several ROIs"
    matched = CellMatching.CellSpecimen * ophys.Segmentation.ROI.proj("valid_roi")
    assert set(matched.to_arrays("valid_roi")) == {True}
    assert len(matched) == len(ophys.Segmentation.ROI & {"valid_roi": True})


def test_units_are_sorted_scored_and_filtered(processed):
    from brainobs import api
    from brainobs.schemas import stores
    from brainobs.schemas.ephys import SpikeSorting, UnitMetrics

    sorting = SpikeSorting.fetch1()
    assert sorting["sorter_name"] == "lupin" and sorting["n_units"] > 0
    assert (stores.root() / sorting["output_dir"] / "analyzer").is_dir()
    # the sorter read the held traces; its folder names the lazy chain they came from
    assert (stores.root() / sorting["output_dir"] / "sorter" / "spikeinterface_recording.json").is_file()
    assert len(UnitMetrics.Unit()) == sorting["n_units"]
    units = api.units()
    for column in ("firing_rate", "presence_ratio", "isi_violations", "amplitude_cutoff", "PT_ratio", "in_brain"):
        assert column in units.columns
    assert units["presence_ratio"].max() <= 0.99  # Allen: 99 bins, divided by 100
    passing = api.units(preset="visual_coding")
    assert len(passing) <= len(units)
    assert (passing["amplitude_cutoff"] <= 0.1).all() and (passing["presence_ratio"] >= 0.95).all()
    score = api.score_units_against_truth(sorting["session_id"], processed, sorting["probe_name"])
    assert score.fraction_high_snr_well_detected >= 0.7, score.summary()
    with pytest.raises(LookupError, match="no SpikeSorting row"):
        api.score_units_against_truth(sorting["session_id"], processed, sorting_paramset="kilosort4")


def test_release_exports_what_passes_qc(processed, settings, tmp_path):
    from brainobs.export.validation import inspect_nwb
    from brainobs.publish import publish
    from brainobs.schemas.release import INSPECTOR_IGNORE, ReleaseFile

    result = publish("t1", tmp_path / "releases", settings=settings)
    assert result.validation is not None and result.validation.passed, result.validation.summary()
    files = ReleaseFile.File.to_dicts()
    # clean synthetic data: all 3 experiments and the ecephys session are released (seed 7: test_release_qc.py)
    assert not ReleaseFile.Withheld(), ReleaseFile.Withheld.to_dicts()
    assert sorted(f["nwb_label"] for f in files) == ["900001", "900002", "900003", "session"]
    assert len(result.files) == len(files)
    for released in result.files:
        path = result.folder / released.path
        assert path.is_file() and path.stat().st_size == released.size
        assert inspect_nwb(path, ignore=INSPECTOR_IGNORE).passed
    again = publish("t2", tmp_path / "releases", settings=settings)
    assert again.written == 0 and again.reused == len(files)


def test_api_getters_read_one_experiment(processed):
    from brainobs import api

    experiments = api.ophys_experiments()
    assert {"container_id", "qc_outcome", "experience_level", "full_genotype"} <= set(experiments.columns)
    first = int(experiments["experiment_id"].min())
    dff = api.dff_traces(first)
    assert dff.index.is_monotonic_increasing and dff.shape[1] == len(api.roi_masks(first))
    assert api.events(first).shape == dff.shape
    from brainobs.populate.ophys.events import filter_events

    smoothed = filter_events(api.events(first).to_numpy().T, 31.0).T  # the tiny survey images at 31 Hz
    np.testing.assert_allclose(api.filtered_events(first).to_numpy(), smoothed, atol=1e-12)
    session = int(experiments.loc[experiments["experiment_id"] == first, "session_id"].iloc[0])
    assert len(api.stimulus_presentations(session)) > 0
    assert api.running_speed(session)["speed"].notna().any()
    assert len(api.behavior_sessions()) >= 3
    with pytest.raises(TypeError, match="restrictions are dicts"):
        api.subjects("subject_id = 'M0001'")


def test_cookbook_examples_run(processed):
    import importlib.util

    from tests.conftest import REPO

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "docs" / "cookbook" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    responses = load("change_responses").change_responses(driver="Slc17a7")  # the tiny survey's line
    assert len(responses) > 0 and responses["n_changes"].gt(0).all()
    assert responses["mean_change_response"].notna().any()
    assert load("change_responses").change_responses().empty  # no Sst mouse in the tiny survey
    units = load("visual_coding_units").visual_coding_units("VISp")
    assert {"unit_id", "presence_ratio"} <= set(units.columns)
    assert (units["presence_ratio"] >= 0.95).all()
    containers = load("cells_across_containers").cells_across_containers()
    assert containers["n_cells"].sum() > 0 and set(containers["experience_level"]) <= {
        "Familiar",
        "Novel 1",
        "Novel >1",
    }


def test_reviewer_override_changes_what_is_released_not_the_computed_outcome(processed, settings, tmp_path):
    from brainobs.publish import publish
    from brainobs.schemas.qc import QC, QCOverride, effective_outcome
    from brainobs.schemas.release import ReleaseFile

    rows = QC.to_dicts(order_by="experiment_id")
    target = {k: rows[0][k] for k in QC.primary_key}
    computed = rows[0]["outcome"]
    flipped = "CRITICAL" if computed in ("PASS", "WARNING") else "PASS"
    QCOverride.insert1({**target, "outcome": flipped, "reviewer": "jdoe", "reason": "checked by eye"})
    try:
        assert effective_outcome(QC, QCOverride, target).name == flipped
        assert (QC & target).fetch1("outcome") == computed  # recorded on top, never overwritten
        publish("override", tmp_path / "releases", settings=settings)
        label = {"release_tag": "override", "nwb_label": str(target["experiment_id"])}
        released = bool(ReleaseFile.File & label)
        assert released == (flipped == "PASS"), (computed, flipped, ReleaseFile.Withheld.to_dicts())
    finally:
        (QCOverride & target).delete(prompt=False)


def test_report_page_for_an_experiment_and_a_session(processed, tmp_path):
    from brainobs.pages import experiment_page, session_page
    from brainobs.schemas.ephys import SpikeSorting

    experiment_id = int(_experiments()[0]["experiment_id"])
    page = experiment_page(experiment_id, tmp_path / "experiment.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "data:image/svg+xml;base64," in page and "Pipeline" in page
    session_id = SpikeSorting.fetch1("session_id")
    page = session_page(session_id, tmp_path / "session.html").read_text()
    assert "Spike raster" in page and "Unit metrics" in page


def _cli_env(settings) -> dict:
    return {
        "BRAINOBS_DATABASE_URL": settings.database_url,
        "BRAINOBS_HOME": str(settings.home),
        "BRAINOBS_SCHEMA_PREFIX": settings.schema_prefix,
        "BRAINOBS_DATA_ROOT": str(settings.data_root),
        "COLUMNS": "250",
    }


def test_release_command_tables_released_and_withheld_items(processed, settings, tmp_path):
    from typer.testing import CliRunner

    from brainobs.cli import app
    from brainobs.schemas.qc import QC
    from brainobs.schemas.release import ReleaseFile

    result = CliRunner().invoke(
        app, ["release", "strict", "--out", str(tmp_path), "--qc-policy", "PASS", "--no-pages"], env=_cli_env(settings)
    )
    assert result.exit_code == 0, result.output
    released = ReleaseFile.File & {"release_tag": "strict"}
    withheld = (ReleaseFile.Withheld & {"release_tag": "strict"}).to_dicts()
    assert released and "released" in result.output
    assert f"{len(released)} released, {len(withheld)} withheld" in result.output
    for row in withheld:  # under PASS, a WARNING experiment is withheld by its worst check
        checks = (QC.Check & {"experiment_id": int(row["nwb_label"])}).to_dicts(order_by="check_name")
        worst = max(checks, key=lambda c: ["NOT_SET", "PASS", "WARNING", "FAIL", "CRITICAL"].index(c["outcome"]))
        tied = [c["check_name"] for c in checks if c is not worst and c["outcome"] == worst["outcome"]]
        assert all(name in row["reason"] for name in tied)  # the other checks at the same outcome are named
        assert (row["check_name"], row["value"], row["threshold"]) == (
            worst["check_name"],
            worst["value"],
            worst["threshold"],
        )
        assert row["check_name"] in result.output and worst["reason"] in row["reason"]
    assert (tmp_path / "strict" / "qc_summary.csv").is_file()


def test_an_empty_release_is_an_error_that_lists_the_reasons(processed, settings, tmp_path):
    from typer.testing import CliRunner

    from brainobs.cli import app
    from brainobs.schemas.qc import QC, QCOverride, SessionQC, SessionQCOverride
    from brainobs.schemas.release import ReleaseFile

    overrides = [(QCOverride, k) for k in QC.proj().to_dicts()] + [
        (SessionQCOverride, k) for k in SessionQC.proj().to_dicts()
    ]
    for table, key in overrides:
        table.insert1({**key, "outcome": "FAIL", "reviewer": "jdoe", "reason": "withheld for the test"})
    try:
        result = CliRunner().invoke(
            app, ["release", "none", "--out", str(tmp_path), "--no-pages"], env=_cli_env(settings)
        )
    finally:
        for table, key in overrides:
            (table & key).delete(prompt=False)
    assert result.exit_code == 1, result.output
    assert "release none has no files: every item was withheld" in result.output
    for label in ("900001", "900002", "900003", "session"):
        assert label in result.output
    assert result.output.count("reviewer jdoe set FAIL: withheld for the test") == 4
    assert {r["check_name"] for r in ReleaseFile.Withheld.to_dicts() if r["release_tag"] == "none"} == {"override"}
    assert not (tmp_path / "none").exists()


def _replace_for_a_while(target, content: bytes, keep):
    """Put ``content`` at ``target`` as a new inode (release folders hard-link the stored files), keeping the
    original at ``keep`` to put back."""
    import os

    os.link(target, keep)
    staged = target.with_name(target.name + ".test")
    staged.write_bytes(content)
    os.replace(staged, target)


def test_damaged_store_files_fail_their_jobs_naming_the_file(processed, settings, tmp_path):
    import os

    from brainobs.pipeline import populate_all
    from brainobs.publish import publish
    from brainobs.schemas import stores
    from brainobs.schemas.ephys import SpikeSorting, UnitMetrics
    from brainobs.schemas.release import Release, ReleaseFile

    try:
        # an NWB file altered in the store is not reused by the next tag: its job fails naming the file
        publish("damage1", tmp_path / "releases", settings=settings)
        row = (ReleaseFile.File & {"release_tag": "damage1"}).to_dicts()[0]
        nwb = stores.root() / row["path"]
        data = bytearray(nwb.read_bytes())
        data[len(data) // 2] ^= 0xFF
        _replace_for_a_while(nwb, bytes(data), tmp_path / "original.nwb")
        try:
            with pytest.raises(RuntimeError, match=f"{nwb}: sha256 differs from the one recorded"):
                publish("damage2", tmp_path / "releases", settings=settings)
        finally:
            os.replace(tmp_path / "original.nwb", nwb)

        # every file of the sorting is recorded; a truncated analyzer file fails UnitMetrics naming it
        sorting = SpikeSorting.fetch1()
        output_dir = stores.root() / sorting["output_dir"]
        files = {r["file_path"]: r for r in SpikeSorting.File.to_dicts()}
        assert "sorter/spikeinterface_recording.json" in files
        for name, recorded in files.items():  # UnitMetrics, which ran since, added files but changed none
            assert stores.file_digest(output_dir / name) == (recorded["size"], recorded["sha256"]), name
        name = max((n for n in files if n.startswith("analyzer/")), key=lambda n: files[n]["size"])
        target = output_dir / name
        key = {k: sorting[k] for k in SpikeSorting.primary_key}
        (UnitMetrics & key).delete(prompt=False, part_integrity="cascade")  # with its probe's session QC
        _replace_for_a_while(target, target.read_bytes()[:-8], tmp_path / "original.bin")
        try:
            result = populate_all(settings, tables=["UnitMetrics"])
            (_key, message), *_ = result["UnitMetrics"]["error_list"]
            assert f"{target}: {files[name]['size'] - 8} bytes in the object store" in message, message
        finally:
            os.replace(tmp_path / "original.bin", target)
            (UnitMetrics().jobs & key).delete_quick()
        result = populate_all(settings, tables=["UnitMetrics", "UnitQC", "SessionQC"])
        assert not result["UnitMetrics"]["error_list"] and len(UnitMetrics & key) == 1
    finally:  # the releases made here stay out of the modules that follow
        (Release & [{"release_tag": "damage1"}, {"release_tag": "damage2"}]).delete(prompt=False)


def test_allensdk_reads_the_exported_files(processed, tmp_path):
    """AllenSDK 2.16.2 (own environment) reads every ophys experiment file and a behavior file of the tiny
    survey; each stream equals the database's values (traces, running and licks fetched from the tables)."""
    from brainobs.export.writer import export_behavior_session, export_ophys_experiment
    from brainobs.schemas import behavior, ophys
    from brainobs.schemas.collect import behavior_session_bundle, ophys_experiment_bundle
    from tests.test_allensdk import behavior_sidecar, ophys_sidecar, problems_of, read_in_allensdk

    files = []
    keys = ophys.EventDetection.proj().to_dicts(order_by="experiment_id")
    for key in keys:
        bundle = ophys_experiment_bundle(key)
        sidecar = ophys_sidecar(bundle)
        valid = sidecar["valid_roi"]
        dff = ophys.stack(ophys.DeltaFOverF.Trace, key, "dff")  # ROIs x frames, by cell_roi_id
        sidecar["dff"] = np.asarray(dff)[valid]
        running = (behavior.Behavior.RunningSpeed & key).fetch1()
        sidecar["running"] = np.stack([running["timestamps"], running["speed"]])
        lick_times = np.asarray((behavior.Behavior.Licks & key).fetch1("lick_times"), float)
        vsync = np.asarray((behavior.SessionSync & key).fetch1("vsync_times"))
        lick_frames = np.array([np.flatnonzero(vsync == t)[0] for t in lick_times], dtype=float)
        sidecar["licks"] = np.stack([lick_times, lick_frames]) if len(lick_times) else np.zeros((2, 0))
        sidecar["ophys_experiment_id"] = np.array(key["experiment_id"])
        path = tmp_path / f"ophys_{key['experiment_id']}.nwb"
        export_ophys_experiment(bundle, path)
        files.append(("ophys", path, sidecar))
    active = max(keys, key=lambda k: (behavior.Behavior.Licks & k).fetch1("n_licks"))
    session_key = {k: active[k] for k in ("subject_id", "session_id")}
    session = behavior_session_bundle(session_key)
    export_behavior_session(session, tmp_path / "behavior.nwb")
    files.append(
        ("behavior", tmp_path / "behavior.nwb", behavior_sidecar(session.session, session.subject, session.behavior))
    )
    results = read_in_allensdk(tmp_path, files)
    problems = problems_of(results)
    # a session without any lick keeps its (empty) lick_times column, so AllenSDK's performance metrics work
    lickless = [path.name for _, path, sidecar in files if not sidecar["licks"].size]
    assert all(results[name]["performance"] == "ok" for name in lickless), results
    assert not problems, problems
    assert all(len(streams) > 20 for streams in results.values())
