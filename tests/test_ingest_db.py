"""Manifest ingest into a real database: idempotent, atomic, contradictions refused."""

import datajoint as dj
import pytest

from brainobs.ingest.manifest import ManifestError, load_manifest
from tests.manifests import make_manifest

pytestmark = pytest.mark.db


def _counts(modules):
    from brainobs.schemas.acquisition import Container, Experiment, ProbeInsertion, Session
    from brainobs.schemas.subject import Subject

    return {t.__name__: len(t()) for t in (Subject, Session, Container, Experiment, ProbeInsertion)}


def test_ingest_then_reingest_changes_nothing(db, tmp_path):
    from brainobs.schemas.acquisition import Experiment
    from brainobs.schemas.loading import insert_manifest

    manifest = load_manifest(make_manifest(tmp_path))
    first = insert_manifest(manifest)
    assert first.inserted == {
        "subjects": 1,
        "containers": 1,
        "sessions": 2,
        "experiments": 1,
        "probe_insertions": 1,
    }
    before = _counts(db)
    second = insert_manifest(load_manifest(make_manifest(tmp_path)))
    assert second.inserted == {}
    assert sum(second.unchanged.values()) == 6
    assert _counts(db) == before
    row = (Experiment & {"experiment_id": 11}).to_dicts()[0]
    assert row["container_id"] == 7 and row["subject_id"] == "M1" and row["frame_rate"] == 31.0


def test_contradiction_is_refused_and_nothing_is_written(db, tmp_path):
    from brainobs.schemas.acquisition import ProbeInsertion
    from brainobs.schemas.loading import insert_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    ProbeInsertion.delete(prompt=False)  # so the second manifest has one genuinely new row
    before = _counts(db)
    changed = load_manifest(make_manifest(tmp_path, experiments__0__frame_rate=30.0))
    with pytest.raises(
        ManifestError,
        match=r"experiments\[0\] \(line \d+\): contradicts the stored Experiment.*"
        r"frame_rate is 31.0 in the database but 30.0 here",
    ):
        insert_manifest(changed)
    assert _counts(db) == before  # the new ProbeInsertion row was rolled back too


def test_experiment_may_reference_stored_session(db, tmp_path):
    from brainobs.schemas.acquisition import Experiment
    from brainobs.schemas.loading import insert_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "movie2.tif").write_bytes(b"x")
    path = extra / "manifest.yaml"
    path.write_text(
        "experiments:\n  - {experiment_id: 12, session_id: 1, container_id: 7, imaging_depth: 275,\n"
        "     targeted_structure: VISp, frame_rate: 31.0, width: 64, height: 64, pixel_size_um: 0.78,\n"
        "     movie_file: movie2.tif}\n"
    )
    report = insert_manifest(load_manifest(path))
    assert report.inserted == {"experiments": 1}
    assert (Experiment & {"experiment_id": 12}).to_dicts()[0]["subject_id"] == "M1"
    path.write_text(path.read_text().replace("session_id: 1,", "session_id: 99,"))
    with pytest.raises(ManifestError, match="session 99 is neither in the manifest nor in the database"):
        insert_manifest(load_manifest(path))


def test_unknown_indicator_is_refused(db, tmp_path):
    from brainobs.schemas.loading import insert_manifest

    with pytest.raises(ManifestError, match="unknown indicator 'GCaMP99'; known: .*GCaMP6f"):
        insert_manifest(load_manifest(make_manifest(tmp_path, subjects__0__indicator="GCaMP99")))


def _second_subject_manifest(root, **experiment):
    """Subject M2 with session 3 and container 8, and one experiment (ids overridable)."""
    folder = root / "more"
    folder.mkdir(exist_ok=True)
    (folder / "movie.tif").write_bytes(b"x")
    values = {"experiment_id": 12, "session_id": 3, "container_id": 8, **experiment}
    path = folder / "manifest.yaml"
    path.write_text(
        "subjects:\n  - {subject_id: M2, sex: M, indicator: GCaMP6f}\n"
        f"containers:\n  - {{container_id: {values['container_id']}, subject_id: M2, targeted_structure: VISp,"
        " imaging_depth: 175}\n"
        f"sessions:\n  - {{session_id: {values['session_id']}, subject_id: M2, session_type: OPHYS_1,"
        " modality: ophys, session_start_time: 2026-04-01T09:00:00}\n"
        f"experiments:\n  - {{experiment_id: {values['experiment_id']}, session_id: {values['session_id']},"
        f" container_id: {values['container_id']}, imaging_depth: 175, targeted_structure: VISp,"
        " frame_rate: 31.0, width: 64, height: 64, pixel_size_um: 0.78, movie_file: movie.tif}\n"
    )
    return path


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ({"experiment_id": 11}, r"experiments\[0\] \(line \d+\): experiment_id 11 is already stored as Experiment"),
        ({"session_id": 1}, r"sessions\[0\] \(line \d+\): session_id 1 is already stored as Session"),
        ({"container_id": 7}, r"containers\[0\] \(line \d+\): container_id 7 is already stored as Container"),
    ],
)
def test_ids_already_stored_under_another_key_are_refused(db, tmp_path, ids, message):
    from brainobs.schemas.loading import insert_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    before = _counts(db)
    with pytest.raises(ManifestError, match=message):
        insert_manifest(load_manifest(_second_subject_manifest(tmp_path, **ids)))
    assert _counts(db) == before
    report = insert_manifest(load_manifest(_second_subject_manifest(tmp_path)))  # fresh ids go in
    assert report.inserted["experiments"] == 1


def test_database_error_becomes_a_manifest_error_naming_the_row(db, tmp_path, monkeypatch):
    from brainobs.schemas.acquisition import Experiment
    from brainobs.schemas.loading import insert_manifest

    def failing_insert(self, row, **kwargs):
        Experiment.connection.query("SELECT * FROM brainobs_no_such_table")  # a genuine database error

    monkeypatch.setattr(Experiment, "insert1", failing_insert)
    with pytest.raises(ManifestError, match=r"experiments\[0\] \(line \d+\): the database refused the row: \w+"):
        insert_manifest(load_manifest(make_manifest(tmp_path)))
    assert _counts(db)["Subject"] == 0  # rolled back


def test_the_database_itself_keeps_ids_unique(db, tmp_path):
    """Two ingests racing past the manifest checks still cannot store one experiment_id twice."""
    from brainobs.schemas.acquisition import Container, Experiment, Session
    from brainobs.schemas.loading import insert_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    insert_manifest(load_manifest(_second_subject_manifest(tmp_path)))
    stored = (Experiment & {"experiment_id": 12}).fetch1()
    for table, row in (
        (Experiment, {**stored, "experiment_id": 11}),
        (Session, {**(Session & {"session_id": 3}).fetch1(), "session_id": 1}),
        (Container, {**(Container & {"container_id": 8}).fetch1(), "container_id": 7}),
    ):
        with pytest.raises(dj.errors.DuplicateError):
            table.insert1(row)
