"""Reading stored ``<npy@main>`` arrays straight into a preallocated row."""

from __future__ import annotations

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
