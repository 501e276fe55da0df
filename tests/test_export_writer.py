"""Writer discipline: temporary name, read-back comparison, rename; nothing under the final name on failure."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from brainobs.export import readback, writer
from brainobs.export.bundles import BundleError, source_digest
from brainobs.export.nwb_ecephys import build_ecephys_nwbfile
from brainobs.export.nwb_ophys import build_ophys_nwbfile
from brainobs.export.readback import Expectation, VerificationError, bundle_checksums, checksum
from brainobs.export.writer import export_ophys_experiment, file_sha256, write_verified
from tests.test_export_bundles import make_ecephys_bundle, make_ophys_bundle


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _build_with(bundle, tamper):
    """A build whose expectations are changed by `tamper`, as if the file held something else."""

    def build():
        nwbfile, expectations = build_ophys_nwbfile(bundle, source_digest(bundle))
        return nwbfile, tamper(expectations)

    return build


def test_success_renames_a_verified_file(tmp_path: Path) -> None:
    result = export_ophys_experiment(make_ophys_bundle(), tmp_path / "experiment.nwb")
    assert _leftovers(tmp_path) == ["experiment.nwb"]
    assert result.size == result.path.stat().st_size
    assert result.sha256 == file_sha256(result.path)
    assert result.checksums["ophys/dff/traces/data"] == checksum(make_ophys_bundle().traces.dff)
    assert set(result.seconds) == {"build", "write", "verify", "sha256", "fsync"}


def test_mismatch_on_read_back_leaves_nothing(tmp_path: Path) -> None:
    bundle = make_ophys_bundle()

    def one_value_off(expectations: list[Expectation]) -> list[Expectation]:
        changed = []
        for expectation in expectations:
            if expectation.label == "ophys/dff/traces/data":
                value = expectation.value.copy()
                value[17, 1] += 1e-6
                expectation = dataclasses.replace(expectation, value=value)
            changed.append(expectation)
        return changed

    with pytest.raises(VerificationError, match="ophys/dff/traces/data: values differ"):
        write_verified(_build_with(bundle, one_value_off), tmp_path / "experiment.nwb", "digest")
    assert _leftovers(tmp_path) == []


def test_count_and_shape_mismatches_are_named(tmp_path: Path) -> None:
    bundle = make_ophys_bundle()

    def wrong(expectations: list[Expectation]) -> list[Expectation]:
        return [
            *expectations,
            Expectation(
                "ophys/cell_specimen_table/rows",
                lambda f: len(f.processing["ophys"]["image_segmentation"]["cell_specimen_table"]),
                5,
            ),
            Expectation(
                "ophys/images/average_image",
                lambda f: f.processing["ophys"]["images"]["average_image"].data[:],
                np.zeros((3, 3)),
            ),
            Expectation("missing/thing", lambda f: f.processing["nowhere"], np.zeros(1)),
        ]

    with pytest.raises(VerificationError) as error:
        write_verified(_build_with(bundle, wrong), tmp_path / "experiment.nwb", "digest")
    message = str(error.value)
    assert "ophys/cell_specimen_table/rows: 4 in the file, 5 in the bundle" in message
    assert "ophys/images/average_image: shape (64, 64) in the file, (3, 3) in the bundle" in message
    assert "missing/thing: cannot be read back" in message
    assert _leftovers(tmp_path) == []


def test_failure_while_building_or_writing_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def broken_build():
        raise BundleError("column 'x' holds mixed values")

    with pytest.raises(BundleError):
        write_verified(broken_build, tmp_path / "experiment.nwb", "digest")
    assert _leftovers(tmp_path) == []

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(writer.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        export_ophys_experiment(make_ophys_bundle(), tmp_path / "experiment.nwb")
    assert _leftovers(tmp_path) == []


def test_failed_rewrite_keeps_the_earlier_file(tmp_path: Path) -> None:
    path = tmp_path / "experiment.nwb"
    first = export_ophys_experiment(make_ophys_bundle(), path)
    with pytest.raises(VerificationError):
        write_verified(
            _build_with(make_ophys_bundle(seed=3), lambda e: [*e, Expectation("n", lambda f: 1, 2)]), path, "d"
        )
    assert _leftovers(tmp_path) == ["experiment.nwb"]
    assert file_sha256(path) == first.sha256


def test_overwrite_and_names(tmp_path: Path) -> None:
    path = tmp_path / "experiment.nwb"
    export_ophys_experiment(make_ophys_bundle(), path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_ophys_experiment(make_ophys_bundle(), path, overwrite=False)
    with pytest.raises(ValueError, match="must end in .nwb"):
        export_ophys_experiment(make_ophys_bundle(), tmp_path / "experiment.h5")
    mtime = os.stat(path).st_mtime_ns
    export_ophys_experiment(make_ophys_bundle(), path)
    assert os.stat(path).st_mtime_ns >= mtime
    assert _leftovers(tmp_path) == ["experiment.nwb"]


def test_next_export_removes_partials_of_killed_exports(tmp_path: Path) -> None:
    """A partial whose owner process has exited is removed; one of a live process or another host stays."""
    import subprocess
    import sys

    from brainobs.partials import HOST

    script = (
        "import os, signal, sys; from pathlib import Path; from brainobs.export.writer import partial_path\n"
        "partial_path(Path(sys.argv[1])).write_bytes(b'half an NWB file')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "other.nwb")])
    assert killed.returncode == -9
    (dead,) = _leftovers(tmp_path)
    assert dead.startswith(f".other.{HOST}-") and dead.endswith(".partial.nwb")
    live = writer.partial_path(tmp_path / "busy.nwb")
    live.write_bytes(b"being written")
    elsewhere = tmp_path / ".busy.otherhost-12.0123456789ab.partial.nwb"
    elsewhere.write_bytes(b"being written elsewhere")
    export_ophys_experiment(make_ophys_bundle(), tmp_path / "experiment.nwb")
    assert _leftovers(tmp_path) == sorted([live.name, elsewhere.name, "experiment.nwb"])


def _written(tmp_path: Path, bundle, build) -> tuple[Path, list[Expectation]]:
    nwbfile, expectations = build(bundle, source_digest(bundle))
    path = tmp_path / "written.nwb"
    writer._write(nwbfile, path)
    return path, expectations


def _corrupt(path: Path, name: str, index) -> None:
    with h5py.File(path, "r+") as file:
        dataset = file[name]
        values = dataset[()]
        values[index] += 1
        dataset[...] = values


@pytest.mark.parametrize("sample", [False, True])
def test_corrupted_dataset_is_found_in_full_and_on_a_sample(tmp_path: Path, monkeypatch, sample: bool) -> None:
    if sample:  # every numeric array counts as large: compared on blocks, not read in full
        monkeypatch.setattr(readback, "FULL_READ_BYTES", 0)
    bundle = make_ophys_bundle()
    path, expectations = _written(tmp_path, bundle, build_ophys_nwbfile)
    counts, checksums, sampled = writer._read_back(path, expectations, bundle_checksums(expectations))
    assert checksums["ophys/dff/traces/data"] == checksum(bundle.traces.dff)
    assert ("ophys/dff/traces/data" in sampled) is sample and counts
    how = "in a sampled block" if sample else "checksum"
    for index in [(0, 0), (-1, -1)]:  # the first and the last block are always in the sample
        _corrupt(path, "processing/ophys/dff/traces/data", index)
        with pytest.raises(VerificationError, match=rf"ophys/dff/traces/data: values differ \({how}"):
            writer._read_back(path, expectations, bundle_checksums(expectations))
        _corrupt(path, "processing/ophys/dff/traces/data", index)  # twice +1 is not the original: rewrite
        with h5py.File(path, "r+") as file:
            file["processing/ophys/dff/traces/data"][...] = bundle.traces.dff


@pytest.mark.parametrize("sample", [False, True])
def test_corrupted_ragged_column_is_found(tmp_path: Path, monkeypatch, sample: bool) -> None:
    if sample:
        monkeypatch.setattr(readback, "FULL_READ_BYTES", 0)
    bundle = make_ecephys_bundle()
    path, expectations = _written(tmp_path, bundle, build_ecephys_nwbfile)
    _, _, sampled = writer._read_back(path, expectations, bundle_checksums(expectations))
    assert ("units/spike_times" in sampled) is sample
    _corrupt(path, "units/spike_times", 0)
    with pytest.raises(VerificationError, match=r"units/spike_times: values differ"):
        writer._read_back(path, expectations, bundle_checksums(expectations))
    with h5py.File(path, "r+") as file:  # a row end moved: the row lengths no longer match
        file["units/spike_times_index"][0] -= 1
    with pytest.raises(VerificationError, match=r"units/spike_times: row lengths differ"):
        writer._read_back(path, expectations, bundle_checksums(expectations))


def test_a_ragged_column_may_hold_values_past_its_rows_only_as_the_empty_column_placeholder() -> None:
    rows = [np.zeros(0), np.zeros(0)]
    ends = np.array([0, 0])
    placeholder = Expectation("trials/lick_times", lambda f: readback.Ragged(readback.EMPTY_RAGGED_FILL, ends), rows)
    readback.verify(None, [placeholder])
    stray = Expectation("trials/lick_times", lambda f: readback.Ragged(np.array([1.5]), ends), rows)
    with pytest.raises(VerificationError, match="row ends reach 0, but the flat values hold 1"):
        readback.verify(None, [stray])
