"""Write an NWB file the safe way: temporary name, read back and compare with the bundle, then rename.

The file is written to a hidden temporary name in the target folder (`.<stem>.<host>-<pid>.<random>.partial.nwb`),
read back
with pynwb and compared with the bundle (every count, every array's shape, and its values: in full by checksum,
or for an array over 8 MiB on a sample of whole blocks: `readback.verify`),
flushed to disk, and only then renamed to its final name (`os.replace`, atomic on one file system).
On any failure -- an exception while building, writing, reading or hashing, or a difference found on
read-back -- the temporary file is removed and nothing new appears under the final name (a file that was
already there from an earlier export stays as it was). A killed export cannot clean up: the next export into
the same folder removes the temporary files of this host's exited processes (`partials`).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynwb import NWBHDF5IO, NWBFile

from brainobs.export.bundles import BehaviorSessionBundle, EcephysSessionBundle, OphysExperimentBundle, source_digest
from brainobs.export.nwb_behavior import build_behavior_nwbfile
from brainobs.export.nwb_ecephys import build_ecephys_nwbfile
from brainobs.export.nwb_ophys import build_ophys_nwbfile
from brainobs.export.readback import Expectation, bundle_checksums, verify
from brainobs.partials import owner, remove_stale

HASH_BLOCK = 8 << 20
PARTIAL = re.compile(r"\..+\.(?P<owner>[A-Za-z0-9-]+-\d+)\.[0-9a-f]{12}\.partial\.nwb")


@dataclass(frozen=True)
class WriteResult:
    """A verified file: where, how big, its sha256, the bundle digest, what was checked, and the seconds
    spent per stage (build, write, verify, sha256, fsync)."""

    path: Path
    size: int
    sha256: str
    source_sha256: str
    counts: dict[str, int]
    checksums: dict[str, str]
    seconds: dict[str, float]
    sampled: tuple[str, ...] = ()  # arrays compared on a sample of blocks (readback.FULL_READ_BYTES)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_verified(
    build: Callable[[], tuple[NWBFile, list[Expectation]]],
    path: str | Path,
    source_sha256: str,
    *,
    overwrite: bool = True,
) -> WriteResult:
    """Build the NWBFile, write it under a temporary name, verify it on read-back, rename it to `path`.

    The bundle's checksums are computed in a second thread while pynwb writes (hashing releases the GIL).
    """
    path = Path(path)
    if path.suffix != ".nwb":
        raise ValueError(f"{path}: an NWB file name must end in .nwb")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, PARTIAL)
    temporary = partial_path(path)
    seconds: dict[str, float] = {}

    def timed(stage: str, step: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = step()
        seconds[stage] = time.perf_counter() - start
        return result

    try:
        nwbfile, expectations = timed("build", build)
        with ThreadPoolExecutor(max_workers=1) as pool:
            expected = pool.submit(bundle_checksums, expectations)
            timed("write", lambda: _write(nwbfile, temporary))
            counts, checksums, sampled = timed("verify", lambda: _read_back(temporary, expectations, expected.result()))
        sha256 = timed("sha256", lambda: file_sha256(temporary))
        timed("fsync", lambda: _fsync(temporary))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    return WriteResult(path, path.stat().st_size, sha256, source_sha256, counts, checksums, seconds, tuple(sampled))


def partial_path(path: Path) -> Path:
    """The temporary name ``path`` is written under: hidden, owned by this process, unique."""
    return path.with_name(f".{path.stem}.{owner()}.{uuid.uuid4().hex[:12]}.partial.nwb")


def _write(nwbfile: NWBFile, path: Path) -> None:
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)


def _read_back(
    path: Path, expectations: list[Expectation], expected: list[str | None]
) -> tuple[dict[str, int], dict[str, str], list[str]]:
    with NWBHDF5IO(path, "r") as io, warnings.catch_warnings():
        # hdmf warns on reading any RoiResponseSeries: its region is built before the series has a parent
        warnings.filterwarnings("ignore", message="The linked table for DynamicTableRegion", category=UserWarning)
        return verify(io.read(), expectations, expected)


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def export_ophys_experiment(bundle: OphysExperimentBundle, path: str | Path, *, overwrite: bool = True) -> WriteResult:
    """Write and verify the NWB file of one ophys experiment."""
    digest = source_digest(bundle)
    return write_verified(lambda: build_ophys_nwbfile(bundle, digest), path, digest, overwrite=overwrite)


def export_ecephys_session(bundle: EcephysSessionBundle, path: str | Path, *, overwrite: bool = True) -> WriteResult:
    """Write and verify the NWB file of one Neuropixels session."""
    digest = source_digest(bundle)
    return write_verified(lambda: build_ecephys_nwbfile(bundle, digest), path, digest, overwrite=overwrite)


def export_behavior_session(bundle: BehaviorSessionBundle, path: str | Path, *, overwrite: bool = True) -> WriteResult:
    """Write and verify the NWB file of one behavior-only session."""
    digest = source_digest(bundle)
    return write_verified(lambda: build_behavior_nwbfile(bundle, digest), path, digest, overwrite=overwrite)
