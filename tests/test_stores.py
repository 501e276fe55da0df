"""Reading stored ``<npy@main>`` arrays straight into a preallocated row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from brainobs.schemas.stores import read_npy_into


@dataclass
class Ref:
    """The attributes of DataJoint's NpyRef that the reader uses."""

    path: str
    shape: tuple
    dtype: np.dtype


def saved(folder: Path, array: np.ndarray, name: str = "trace.npy") -> Ref:
    np.save(folder / name, array)
    return Ref(name, array.shape, array.dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
def test_reads_the_saved_values(tmp_path, dtype):
    array = np.random.default_rng(1).normal(0, 100, 1001).astype(dtype)
    out = np.full((2, 1001), -1, dtype=dtype)
    read_npy_into(saved(tmp_path, array), out[1], tmp_path)
    np.testing.assert_array_equal(out[1], array)
    assert (out[0] == -1).all()


def test_large_header_version_2(tmp_path):
    array = np.arange(50, dtype=np.float64)
    with open(tmp_path / "v2.npy", "wb") as file:
        np.lib.format.write_array(file, array, version=(2, 0))
    out = np.empty(50)
    read_npy_into(Ref("v2.npy", (50,), array.dtype), out, tmp_path)
    np.testing.assert_array_equal(out, array)


def test_truncated_file_names_the_file(tmp_path):
    ref = saved(tmp_path, np.ones(100))
    target = tmp_path / ref.path
    target.write_bytes(target.read_bytes()[:-80])
    with pytest.raises(ValueError, match=r"trace\.npy: truncated, 720 of 800"):
        read_npy_into(ref, np.empty(100), tmp_path)


def test_not_npy_and_wrong_target(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not an array at all")
    with pytest.raises(ValueError, match=r"bad\.npy: not a \.npy file"):
        read_npy_into(Ref("bad.npy", (3,), np.dtype(np.float64)), np.empty(3), tmp_path)
    ref = saved(tmp_path, np.ones(10))
    with pytest.raises(ValueError, match=r"holds float64\[10\], the target is float32\[10\]"):
        read_npy_into(ref, np.empty(10, dtype=np.float32), tmp_path)


@pytest.mark.db
def test_arrays_record_size_and_sha256_and_readers_check_them(db, settings, tmp_path):
    """A ``<npy@main>`` column holds the file's size and sha256; every read checks the size, reads inside
    ``verifying()`` (NWB export, release) the sha256 too; a plain DataJoint client still reads it."""
    import hashlib

    import datajoint as dj

    from brainobs.checksums import StoreFileError, verifying
    from brainobs.ingest.manifest import load_manifest
    from brainobs.schemas import stores
    from brainobs.schemas.acquisition import Session
    from brainobs.schemas.behavior import SessionSync
    from brainobs.schemas.loading import insert_manifest
    from tests.manifests import make_manifest

    insert_manifest(load_manifest(make_manifest(tmp_path)))
    key = Session.keys()[0]
    vsync = np.linspace(0.0, 10.0, 601)
    row = {"display_frame_rate": 60.0, "monitor_delay": 0.02, "n_display_frames": 601, "n_ophys_frames": 0}
    row |= {"passive": False, "vsync_times": vsync, "ophys_frame_times": np.empty(0)}
    SessionSync.insert1({**key, **row}, allow_direct_insert=True)

    column = SessionSync.heading.attributes["vsync_times"]
    q = dj.conn().adapter.quote_identifier
    table = f"{q(SessionSync.database)}.{q(SessionSync.table_name)}"
    (stored,) = dj.conn().query(f"SELECT {q(column.name)} FROM {table}").fetchone()
    meta = json.loads(stored) if isinstance(stored, str) else stored
    target = stores.root() / meta["path"]
    assert meta["size"] == target.stat().st_size
    assert meta["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()

    ref = (SessionSync & key).fetch1("vsync_times")
    np.testing.assert_array_equal(np.asarray(ref), vsync)
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF  # the same size, one byte altered
    target.write_bytes(bytes(data))
    np.testing.assert_array_equal(np.asarray((SessionSync & key).fetch1("vsync_times"))[:-1], vsync[:-1])
    with verifying():
        with pytest.raises(StoreFileError, match=r"vsync_times.*sha256 differs"):
            np.asarray((SessionSync & key).fetch1("vsync_times"))
        with pytest.raises(StoreFileError, match=r"vsync_times.*sha256 differs"):
            read_npy_into((SessionSync & key).fetch1("vsync_times"), np.empty(601))
    target.write_bytes(bytes(data[:-8]))  # cut short
    with pytest.raises(StoreFileError, match=rf"{meta['size'] - 8} bytes in the object store, {meta['size']}"):
        np.asarray((SessionSync & key).fetch1("vsync_times"))
    with pytest.raises(StoreFileError, match="recorded when it was written"):
        read_npy_into((SessionSync & key).fetch1("vsync_times"), np.empty(601))

    from datajoint.builtin_codecs.npy import NpyRef  # what a plain DataJoint client makes of the column

    target.write_bytes(_npy_bytes(vsync))
    assert meta.keys() >= {"path", "store", "dtype", "shape"}
    np.testing.assert_array_equal(NpyRef(meta, ref._backend).load(), vsync)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
