"""brainobs.api on a small ingested survey (nothing populated): restrictions are checked, SQL strings
refused, unknown ids named, and empty results keep their columns."""

import inspect

import pytest

from brainobs import api
from brainobs.api import NotFoundError, RestrictionError
from tests.manifests import make_manifest

pytestmark = pytest.mark.db

TABLES = [api.subjects, api.sessions, api.ophys_experiments, api.cells, api.units, api.behavior_sessions]
PER_EXPERIMENT = [api.dff_traces, api.events, api.roi_masks]
PER_SESSION = [api.stimulus_presentations, api.running_speed, api.spike_times]


@pytest.fixture
def ingested(db, tmp_path):
    """One subject, an ophys session (1) with experiment 11 in container 7, an ecephys session (2)."""
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas.loading import insert_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    api.connect()
    return tmp_path


def test_keyword_restrictions_select_rows(ingested):
    assert api.ophys_experiments(targeted_structure="VISp")["experiment_id"].tolist() == [11]
    assert api.sessions({"session_id": 2})["session_type"].tolist() == ["EPHYS_1_images_A"]
    assert len(api.sessions(subject_id="M1")) == 2


@pytest.mark.parametrize("query", TABLES, ids=lambda f: f.__name__)
def test_misspelled_keyword_raises_with_the_valid_names(ingested, query):
    with pytest.raises(RestrictionError, match=r"unknown restriction subjekt_id; valid names: .*subject_id"):
        query(subjekt_id="M1")
    with pytest.raises(RestrictionError, match="unknown restriction subjekt_id"):
        query({"subject_id": "M1"}, {"subjekt_id": "M1"})


def test_misspelled_keyword_of_spike_times_raises(ingested):
    with pytest.raises(RestrictionError, match="unknown restriction probe; valid names: .*probe_name"):
        api.spike_times(2, probe="probeA")


def test_ophys_experiments_misspelling_names_targeted_structure(ingested):
    with pytest.raises(RestrictionError) as raised:
        api.ophys_experiments(targetted_structure="VISp")
    assert "targetted_structure" in str(raised.value) and "targeted_structure" in str(raised.value)


SQL = "1=1 OR session_id > 0"
IDS = {"experiment_id": 11, "session_id": 2}
NAMES = {"ophys_paramset", "sorting_paramset", "probe_name"}  # looked up as values, never spliced into SQL


def test_no_function_accepts_a_sql_string(ingested):
    """Every public query function, each argument in turn given SQL text: it raises, nothing is run."""
    public = [
        f
        for name, f in inspect.getmembers(api, inspect.isfunction)
        if not name.startswith("_") and f.__module__ == api.__name__ and name != "connect"
    ]
    assert set(TABLES + PER_EXPERIMENT + PER_SESSION) <= set(public)
    checked = 0
    for function in public:
        parameters = inspect.signature(function).parameters
        base = {name: IDS[name] for name in parameters if name in IDS}
        base |= {"survey_root": ingested} if "survey_root" in parameters else {}
        if "restrictions" in parameters:
            with pytest.raises(RestrictionError, match="SQL strings are not accepted"):
                function(SQL)
            checked += 1
        for name in parameters:
            if name in IDS:
                expected, match = ValueError, "invalid literal for int"
            elif name in NAMES:
                expected, match = NotFoundError, "1=1"
            elif name == "preset":
                expected, match = ValueError, "unknown unit filter preset"
            else:
                continue
            with pytest.raises(expected, match=match):
                function(**{**base, name: SQL})
            checked += 1
    assert checked >= len(public)


@pytest.mark.parametrize("getter", PER_EXPERIMENT, ids=lambda f: f.__name__)
def test_unknown_experiment_is_named(ingested, getter):
    with pytest.raises(NotFoundError, match="no experiment with experiment_id=999"):
        getter(999)
    with pytest.raises(NotFoundError, match="no ophys parameter set with ophys_paramset='nope'"):
        getter(11, "nope")


@pytest.mark.parametrize("getter", PER_SESSION, ids=lambda f: f.__name__)
def test_unknown_session_is_named(ingested, getter):
    with pytest.raises(NotFoundError, match="no session with session_id=999"):
        getter(999)


def test_unknown_items_of_the_scorers_are_named(ingested):
    with pytest.raises(NotFoundError, match="experiment_id=998"):
        api.score_against_truth(998, ingested)
    with pytest.raises(NotFoundError, match="no ephys recording with session_id=2, probe_name='probeZ'"):
        api.score_units_against_truth(2, ingested, probe_name="probeZ")


@pytest.mark.parametrize("query", TABLES, ids=lambda f: f.__name__)
def test_empty_result_keeps_its_columns(ingested, query):
    empty = query(subject_id="nobody")
    assert empty.empty
    assert len(empty.columns) > 3
    assert ("subject_id" if query is api.subjects else "session_id") in empty.columns


def test_empty_results_have_the_columns_of_full_ones(ingested):
    assert list(api.subjects(subject_id="nobody").columns) == list(api.subjects().columns)
    assert list(api.sessions(session_id=999).columns) == list(api.sessions().columns)
    full = api.ophys_experiments()
    assert len(full) == 1 and {"qc_outcome", "released", "withheld_reason"} <= set(full.columns)
    # nothing processed: no QC, so not releasable, and it says so
    row = full.iloc[0]
    assert (row["qc_outcome"], row["released"]) == ("NOT_SET", False)
    assert row["withheld_reason"] == "experiment 11 has no QC yet"
    assert list(api.ophys_experiments(targeted_structure="VISal").columns) == list(full.columns)
    units = api.units()  # nothing is sorted yet
    assert units.empty and {"unit_id", "presence_ratio", "snr", "location", "in_brain"} <= set(units.columns)
    assert api.units(preset="visual_coding").columns.equals(units.columns)
    assert {"cell_specimen_id", "cell_roi_id", "n_experiments"} <= set(api.cells().columns)
    presentations = api.stimulus_presentations(1)  # not populated yet
    assert presentations.empty and {"presentation_id", "stimulus_name"} <= set(presentations.columns)
    speed = api.running_speed(1)
    assert speed.empty and list(speed.columns) == ["speed"] and speed.index.name == "timestamps"
    assert api.spike_times(2) == {}
    dff = api.dff_traces(11)
    assert dff.empty and dff.index.name == "timestamps" and dff.columns.name == "cell_roi_id"
