"""Where make() methods find raw files (under the data root) and put large artefacts (in the object store)."""

from __future__ import annotations

from pathlib import Path

import datajoint as dj

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


def path(*parts: str) -> Path:
    """A path inside the object store; its folder is created."""
    target = root().joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def relative(target: Path) -> str:
    """``target`` relative to the object store, as ``<filepath@main>`` stores it."""
    return Path(target).resolve().relative_to(root().resolve()).as_posix()


def key_name(key: dict) -> str:
    """A file-name-safe name for a primary key: ``subject_id-M1_session_id-5_...``."""
    return "_".join(f"{name}-{value}" for name, value in key.items())
