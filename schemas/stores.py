"""Where make() methods find raw files (under the data root) and put large artefacts (in the object store)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import datajoint as dj
import numpy as np

from brainobs.checksums import StoreFileError, check_sha256, check_size, sha256_checked
from brainobs.database import STORE
from brainobs.ingest.paths import resolve_under
from brainobs.schemas import active_settings


def raw_path(relative: str) -> Path:
    """The absolute path of a raw file stored relative to the data root."""
    root = active_settings().data_root
    if root is None:
        raise RuntimeError("BRAINOBS_DATA_ROOT is not set: raw files are stored relative to it")
    return resolve_under(Path(root), relative)


def root() -> Path:
    """The object store's folder (artefacts written in place: registered movies, sorter output)."""
    spec = dj.config["stores"][STORE]
    if spec["protocol"] != "file":
        raise RuntimeError(
            f"store {STORE!r} uses {spec['protocol']}: registered movies and sorter folders need a folder store "
            "(a local or shared file system) in this version"
        )
    return Path(spec["location"])


def namespace() -> str:
    """The folder of this pipeline's own files in the store: ``<schema prefix>files``.

    Two pipelines that share a store (one BRAINOBS_HOME or bucket) but not a schema prefix never share a
    file; DataJoint's own arrays live under ``_schema/<schema name>``, which carries the prefix too."""
    return f"{active_settings().schema_prefix}files"


def path(*parts: str) -> Path:
    """A path inside this pipeline's namespace of the object store; its folder is created.

    Every part is one file or folder name (no separator, no ``..``, no NUL), and the resolved path must
    stay inside the store (a symbolic link out is refused) before anything is opened."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise StoreFileError(f"{part!r} is not a file or folder name; object-store paths are built from names")
    store = root().resolve()
    target = store.joinpath(namespace(), *parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.resolve().is_relative_to(store):
        raise StoreFileError(f"{target} resolves to {target.resolve()}, outside the object store {store}")
    return target


def relative(target: Path) -> str:
    """``target`` relative to the object store, as ``<filepath@main>`` stores it."""
    return Path(target).resolve().relative_to(root().resolve()).as_posix()


def key_name(key: dict) -> str:
    """A file-name-safe name for a primary key: ``subject_id-M1_session_id-5_...``."""
    return "_".join(f"{name}-{value}" for name, value in key.items())


def read_npy_into(ref, out: np.ndarray, store_root: Path | None = None) -> None:
    """Read the ``<npy@main>`` array ``ref`` straight into ``out`` (C-contiguous, same shape and dtype).

    One open and one ``readinto`` per file: no memory map and no intermediate copy. Pass ``store_root``
    (``root()``) when reading many. The file's size is checked against its row, and its sha256 inside
    :func:`brainobs.checksums.verifying`."""
    if tuple(ref.shape) != out.shape or ref.dtype != out.dtype or not out.flags.c_contiguous:
        raise ValueError(f"{ref.path}: holds {ref.dtype}{list(ref.shape)}, the target is {out.dtype}{list(out.shape)}")
    target = (store_root or root()) / ref.path
    with open(target, "rb", buffering=0) as file:
        check_size(ref, str(target), os.fstat(file.fileno()).st_size)
        prefix = file.read(12)
        if not prefix.startswith(b"\x93NUMPY") or len(prefix) < 12:
            raise ValueError(f"{target}: not a .npy file")
        size = 2 if prefix[6] == 1 else 4
        header = prefix + file.read(size - 4 + int.from_bytes(prefix[8 : 8 + size], "little"))
        read = file.readinto(memoryview(out).cast("B"))
    if read != out.nbytes:
        raise ValueError(f"{target}: truncated, {read} of {out.nbytes} data bytes")
    if sha256_checked():
        digest = hashlib.sha256(header)
        digest.update(memoryview(out).cast("B"))
        check_sha256(ref, str(target), digest.hexdigest())


def file_digest(target: Path) -> tuple[int, str]:
    """The size in bytes and the sha256 (hex) of a file in the store."""
    digest = hashlib.sha256()
    size = 0
    with open(target, "rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def folder_digests(folder: Path) -> dict[str, tuple[int, str]]:
    """Size and sha256 of every file under ``folder``, by its POSIX path relative to ``folder``."""
    return {
        target.relative_to(folder).as_posix(): file_digest(target)
        for target in sorted(folder.rglob("*"))
        if target.is_file() and not target.is_symlink()
    }


def verified(target: Path, size: int, sha256: str | None = None) -> Path:
    """``target`` after checking its size (cheap) and, when given, its sha256 against what its row recorded."""
    if not target.is_file():
        raise StoreFileError(f"{target}: missing from the object store")
    actual = target.stat().st_size
    if actual != size:
        raise StoreFileError(f"{target}: {actual} bytes in the object store, {size} recorded when it was written")
    if sha256 is not None and file_digest(target)[1] != sha256:
        raise StoreFileError(f"{target}: sha256 differs from the one recorded when it was written (altered)")
    return target
