"""The object store cannot be corrupted: each schema prefix has its own files, every file the pipeline writes
is checked against the size (and sha256) its row recorded, and no path built from key values leaves the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from ophys_fake_movie import make_fake_movie

pytestmark = pytest.mark.db

SUBJECT = {"subject_id": "MSTORE1", "sex": "F", "indicator": "GCaMP6f"}
KEY = {"subject_id": "MSTORE1", "session_id": 980000, "experiment_id": 980001}


def _manifest(settings, name: str, movie: Path) -> Path:
    """One subject, session, container and experiment (KEY) whose movie is ``movie``."""
    document = {
        "version": 1,
        "subjects": [SUBJECT],
        "sessions": [
            {
                "session_id": KEY["session_id"],
                "subject_id": SUBJECT["subject_id"],
                "session_type": "store_safety",
                "modality": "ophys",
                "session_start_time": "2026-03-02T09:30:00",
            }
        ],
        "containers": [
            {"container_id": 980000, "subject_id": "MSTORE1", "targeted_structure": "VISp", "imaging_depth": 175}
        ],
        "experiments": [
            {
                "experiment_id": KEY["experiment_id"],
                "session_id": KEY["session_id"],
                "container_id": 980000,
                "imaging_depth": 175,
                "targeted_structure": "VISp",
                "frame_rate": 30.0,
                "width": 64,
                "height": 64,
                "pixel_size_um": 0.78,
                "movie_file": movie.relative_to(settings.data_root).as_posix(),
            }
        ],
    }
    path = settings.data_root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from brainobs.ingest.manifest import load_manifest
    from brainobs.pipeline import populate_all
    from brainobs.schemas import activate, stores
    from brainobs.schemas.loading import insert_manifest
    from brainobs.schemas.ophys import MotionCorrection, open_registered
    from brainobs.settings import Settings

    settings = Settings.load()
    modules = activate(settings)
    try:
        insert_manifest(load_manifest(Path(sys.argv[1]), settings.data_root))
        result = populate_all(settings, tables=["MotionCorrection"])
        assert not result["MotionCorrection"]["error_list"], result
        key = json.loads(sys.argv[2])
        row = (MotionCorrection & key).fetch1()
        movie, _ = open_registered(key)
        out = {"path": str(movie.path), "n_frames": int(row["n_frames"]), "sha256": row["registered_sha256"]}
        print(json.dumps(out))
    finally:
        for module in reversed(modules):
            module.schema.drop(prompt=False)
    """
)


@pytest.fixture
def forget_jobs(database):
    yield
    from brainobs.schemas.ophys import MotionCorrection, Segmentation

    for table in (MotionCorrection, Segmentation):
        (table().jobs & {"subject_id": SUBJECT["subject_id"]}).delete_quick()


@pytest.mark.slow
def test_two_prefixes_with_the_same_key_keep_their_own_files(db, settings, forget_jobs, tmp_path):
    from brainobs.ingest.manifest import load_manifest
    from brainobs.pipeline import populate_all
    from brainobs.schemas import stores
    from brainobs.schemas.loading import insert_manifest
    from brainobs.schemas.ophys import MotionCorrection, open_registered

    folder = settings.data_root / "store_safety"
    folder.mkdir(exist_ok=True)
    mine = make_fake_movie(folder / "mine.tif", n_frames=100, fs=30.0, seed=5).path
    theirs = make_fake_movie(folder / "theirs.tif", n_frames=120, fs=30.0, seed=6).path
    insert_manifest(load_manifest(_manifest(settings, "store-mine", mine), settings.data_root))
    result = populate_all(settings, tables=["MotionCorrection"])
    assert not result["MotionCorrection"]["error_list"]

    # a second pipeline on the same database server and store, another schema prefix, the same key
    env = {
        **os.environ,
        "BRAINOBS_HOME": str(settings.home),
        "BRAINOBS_DATABASE_URL": settings.database_url,
        "BRAINOBS_DATA_ROOT": str(settings.data_root),
        "BRAINOBS_SCHEMA_PREFIX": settings.schema_prefix + "other_",
        "BRAINOBS_CONFIG": str(tmp_path / "absent.toml"),
    }
    script = tmp_path / "other_pipeline.py"
    script.write_text(CHILD)
    manifest = _manifest(settings, "store-theirs", theirs)
    done = subprocess.run(
        [sys.executable, str(script), str(manifest), json.dumps(KEY)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    other = json.loads(done.stdout.strip().splitlines()[-1])
    assert other["n_frames"] == 120

    row = (MotionCorrection & KEY).fetch1()
    movie, _ = open_registered(KEY)  # size checked against the row: fails if the other pipeline overwrote it
    assert movie.shape == (100, 64, 64)
    assert Path(other["path"]) != movie.path
    assert stores.file_digest(movie.path) == (100 * 64 * 64 * 2, row["registered_sha256"])
    assert stores.file_digest(Path(other["path"])) == (120 * 64 * 64 * 2, other["sha256"])
    assert movie.path.is_relative_to(stores.root() / stores.namespace())


@pytest.mark.slow
def test_truncated_registered_movie_fails_the_job_naming_the_file(db, settings, forget_jobs):
    from brainobs.ingest.manifest import load_manifest
    from brainobs.pipeline import populate_all
    from brainobs.schemas import stores
    from brainobs.schemas.loading import insert_manifest
    from brainobs.schemas.ophys import MotionCorrection, Segmentation

    folder = settings.data_root / "store_safety"
    folder.mkdir(exist_ok=True)
    mine = make_fake_movie(folder / "truncated.tif", n_frames=100, fs=30.0, seed=7).path
    insert_manifest(load_manifest(_manifest(settings, "store-truncated", mine), settings.data_root))
    populate_all(settings, tables=["MotionCorrection"])
    row = (MotionCorrection & KEY).fetch1()
    assert row["registered_size"] == 100 * 64 * 64 * 2
    target = stores.root() / row["registered_movie"].path
    with open(target, "r+b") as file:
        file.truncate(row["registered_size"] - 64 * 64 * 2)
    result = populate_all(settings, tables=["Segmentation"])
    (key, message), *_ = result["Segmentation"]["error_list"]
    assert key["experiment_id"] == KEY["experiment_id"]
    assert str(target) in message and "bytes in the object store" in message, message
    assert not Segmentation & KEY


def test_store_paths_never_leave_the_store(database, tmp_path):
    from brainobs.schemas import stores

    for bad in ("subject_id-a/../../../../x", "..", ".", "", "a\x00b", "a\\b"):
        with pytest.raises(stores.StoreFileError, match="is not a file or folder name"):
            stores.path("registered", bad)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = stores.path("links", "out")
    link.unlink(missing_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(stores.StoreFileError, match="outside the object store"):
        stores.path("links", "out", "file.bin")
    assert not (outside / "file.bin").exists()
    link.unlink()


def test_verified_checks_size_and_sha256(tmp_path):
    from brainobs.schemas.stores import StoreFileError, file_digest, verified

    target = tmp_path / "file.bin"
    target.write_bytes(np.arange(1000, dtype=np.int16).tobytes())
    size, sha256 = file_digest(target)
    assert verified(target, size, sha256) == target
    data = bytearray(target.read_bytes())
    data[10] ^= 1
    target.write_bytes(bytes(data))
    verified(target, size)  # same size: only the checksum sees it
    with pytest.raises(StoreFileError, match=f"{target}: sha256 differs"):
        verified(target, size, sha256)
    target.write_bytes(bytes(data[:-2]))
    with pytest.raises(StoreFileError, match=f"{target}: 1998 bytes in the object store, 2000 recorded"):
        verified(target, size)
    target.unlink()
    with pytest.raises(StoreFileError, match="missing from the object store"):
        verified(target, size)
