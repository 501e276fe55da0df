"""Raw files are referenced relative to a data root; nothing may point outside it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class DataPathError(ValueError):
    """A raw-data path escapes the data root or does not exist."""


def resolve_under(root: Path, relative: str, *, must_exist: bool = True) -> Path:
    """The absolute path of ``relative`` under ``root``; refuse ``..``, outside absolutes and symlinks out."""
    root = root.resolve()
    given = Path(relative)
    if PurePosixPath(relative).is_absolute() or given.is_absolute():
        candidate = given
    else:
        if ".." in PurePosixPath(relative).parts:
            raise DataPathError(f"{relative!r} contains '..'; paths must stay under the data root {root}")
        candidate = root / given
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise DataPathError(f"{relative!r} resolves to {resolved}, outside the data root {root}")
    if must_exist and not resolved.exists():
        raise DataPathError(f"missing file: {candidate} (from {relative!r}, data root {root})")
    return resolved


def relative_to_root(root: Path, path: Path) -> str:
    """The POSIX path of ``path`` relative to ``root`` (what the database stores)."""
    return path.resolve().relative_to(root.resolve()).as_posix()
