"""Release folders: one immutable, DANDI-ready folder per tag.

out_dir/<tag>/
    dandiset.yaml                     identifier, name, description, version (what `dandi validate` needs)
    sub-<subject>/sub-<subject>_ses-<session>[_desc-<label>]_<modality>.nwb
    manifest.json, manifest.csv       path, size, sha256, source_sha256, subject, session, reused_from
    qc_summary.csv (a DataFrame) or qc_summary.json (a dict)
    CHANGELOG.md                      this tag's entry on top of the previous tag's changelog

File names follow the `dandi organize` layout (the ORGANIZED_FILENAME_REGEX that `dandi validate` checks):
subject and session labels, an optional `desc-` label to tell apart several files of one session (the
ophys experiment id: one file per imaging plane), and the modality as `dandi organize` derives it from
the file's neurodata types ("ophys" for experiment files, "ecephys" for session files), an Allen extension
type counting as its core base type (dandi maps none: it would give the ecephys files no modality). Labels keep only
letters, digits and hyphens. Names do not depend on which other files are in the release, so a file keeps
its path from tag to tag (`dandi organize` adds opaque obj- suffixes when names collide).

"Did not change" is decided on the source: a file whose `source_sha256` (the digest of the bundle it was
written from, `bundles.source_digest`, which covers every array, every metadata field and the NWB layout
version) equals that of a file in an earlier tag is not written again: the earlier tag's file is
hard-linked (the same inode; copied only where the file system cannot link), and its size and sha256 come
from that tag's manifest. New files are hard-linked from where they were exported (the writer only ever
replaces a file, never edits one in place, so the link stays intact). The NWB bytes are never compared:
every write gets a new identifier, creation date and object ids, so two exports of one bundle differ.

The folder is assembled under out_dir/.staging/<tag>, validated with `dandi validate` (which must have
checked every NWB file: dandi silently skips folders whose name starts with a dot) and renamed to
out_dir/<tag> only when it passes; a tag that exists is never touched again. The staging folder's owner (host
and process) is written beside it (`<tag>.owner-<host>-<pid>`) first, so the next release removes the staging
folders of killed runs on this host and refuses to touch one a live run is building.

An item that carries the size and sha256 recorded when its file was exported is checked against them before
it is placed; a file that differs fails the release naming the file. An earlier tag's file is reused only
when its size and sha256 still match that tag's manifest (else the item's own file is placed).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from brainobs.export.validation import ValidationReport, dandi_validate
from brainobs.export.writer import file_sha256
from brainobs.partials import owner, remove_stale

STAGING = ".staging"  # out_dir/.staging/<tag>: a hidden parent, but a visible dandiset root (dandi skips dot-folders)
MANIFEST_COLUMNS = ("path", "size", "sha256", "source_sha256", "subject_id", "session_id", "reused_from")
TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")  # at most 32 characters: Release.release_tag
MODALITY_PATTERN = re.compile(r"[a-z]+(\+[a-z]+)*")
OWNER_MARKER = re.compile(r"(?P<tag>[A-Za-z0-9][A-Za-z0-9._-]*?)\.owner-(?P<owner>[A-Za-z0-9-]+-\d+)")


class ReleaseError(ValueError):
    """A release cannot be built as asked (bad tag or items, or the folder fails validation)."""


@dataclass(frozen=True)
class ReleaseItem:
    """One verified NWB file to release.

    path: the exported file; source_sha256: `WriteResult.source_sha256`; modality: "ophys" for an
    experiment file, "ecephys" for a session file; label: tells apart several files of one session (the
    ophys experiment id), None when a session has one file; size and sha256: recorded when the file was
    exported, checked before it is released (None: not checked).
    """

    path: Path
    subject_id: str
    session_id: str
    source_sha256: str
    modality: str
    label: str | None = None
    size: int | None = None
    sha256: str | None = None

    def dandi_path(self) -> str:
        """sub-<subject>/sub-<subject>_ses-<session>[_desc-<label>]_<modality>.nwb"""
        if not MODALITY_PATTERN.fullmatch(self.modality):
            raise ReleaseError(f"{self.path}: modality {self.modality!r} must be lower-case words joined by +")
        subject = f"sub-{label_value(self.subject_id)}"
        name = f"{subject}_ses-{label_value(self.session_id)}"
        if self.label is not None:
            name += f"_desc-{label_value(self.label)}"
        return f"{subject}/{name}_{self.modality}.nwb"


@dataclass(frozen=True)
class ReleasedFile:
    """A file of a release: its path in the tag folder, size, sha256, source digest, reuse."""

    path: str
    size: int
    sha256: str
    source_sha256: str
    subject_id: str
    session_id: str
    reused_from: str


@dataclass(frozen=True)
class ReleaseResult:
    """The tag folder that was built, its files, and the dandi validation report."""

    tag: str
    folder: Path
    files: tuple[ReleasedFile, ...]
    validation: ValidationReport | None

    @property
    def reused(self) -> int:
        return sum(1 for f in self.files if f.reused_from)

    @property
    def written(self) -> int:
        return len(self.files) - self.reused


def label_value(value: Any) -> str:
    """A DANDI path label: letters, digits and hyphens only."""
    text = re.sub(r"[^A-Za-z0-9-]+", "-", str(value)).strip("-")
    if not text:
        raise ReleaseError(f"{value!r} gives an empty DANDI label")
    return text


def check_new_tag(tag: str, out_dir: Path) -> Path:
    """``out_dir/<tag>`` for a well-formed tag that has no folder yet: ReleaseError for a malformed tag,
    FileExistsError for one already released there."""
    if not TAG_PATTERN.fullmatch(tag):
        raise ReleaseError(
            f"tag {tag!r} must be 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    final = Path(out_dir) / tag
    if final.exists():
        raise FileExistsError(f"{final} exists; a release tag is never rebuilt, choose a new tag")
    return final


def build_release(
    tag: str,
    out_dir: str | Path,
    files: Sequence[ReleaseItem],
    description: str,
    qc_summary: pd.DataFrame | Mapping[str, Any],
    changelog_entry: str,
    *,
    name: str = "brainobs release",
    identifier: str = "DANDI:000000",
    metadata: Mapping[str, Any] | None = None,
    validate: bool = True,
) -> ReleaseResult:
    """Build out_dir/<tag>: the DANDI layout of `files`, dandiset.yaml, manifest, QC summary, changelog.

    Files whose source digest matches one in an earlier tag are hard-linked from it, not written again.
    `metadata`, when given, is dandiset.yaml's content (`ReleaseConfig.dandiset_metadata`), in place of the
    identifier, name, description and version alone.
    With `validate`, `dandi validate` must pass before the folder gets its final name (else ReleaseError).
    """
    out_dir = Path(out_dir)
    final = check_new_tag(tag, out_dir)
    if not files:
        raise ReleaseError(f"release {tag} has no files")
    if not changelog_entry.strip():
        raise ReleaseError(f"release {tag} needs a changelog entry")
    if not isinstance(qc_summary, pd.DataFrame | Mapping):
        raise ReleaseError(f"qc_summary must be a DataFrame or a dict, got {type(qc_summary).__name__}")
    _check_unique(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifests = _manifests(out_dir)
    earlier = _earlier_files(manifests)
    previous_tag = manifests[-1]["tag"] if manifests else None
    staging = _claim_staging(out_dir / STAGING, tag)
    try:
        staging.mkdir(parents=True)
        released = tuple(
            _place(item, staging, out_dir, earlier) for item in sorted(files, key=lambda i: i.dandi_path())
        )
        created = datetime.now(UTC).isoformat(timespec="microseconds")
        default = {"identifier": identifier, "name": f"{name} {tag}", "description": description, "version": tag}
        _write_yaml(staging / "dandiset.yaml", metadata or default)
        _write_manifest(staging, tag, created, description, released)
        _write_qc_summary(staging, qc_summary)
        _write_changelog(staging, out_dir, tag, created, changelog_entry, previous_tag)
        report = dandi_validate(staging) if validate else None
        if report is not None and not report.passed:
            raise ReleaseError(f"release {tag} fails dandi validate:\n{report.summary()}")
        if report is not None and report.files_checked != len(released):
            raise ReleaseError(f"dandi validate checked {report.files_checked} of the {len(released)} files of {tag}")
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        (out_dir / STAGING / f"{tag}.owner-{owner()}").unlink(missing_ok=True)
        _remove_if_empty(out_dir / STAGING)
    return ReleaseResult(tag, final, released, None if report is None else dataclasses.replace(report, target=final))


def _claim_staging(folder: Path, tag: str) -> Path:
    """Remove the staging folders of killed runs on this host, then mark ``tag``'s as this process's."""
    folder.mkdir(parents=True, exist_ok=True)
    for marker in remove_stale(folder, OWNER_MARKER):
        shutil.rmtree(folder / OWNER_MARKER.fullmatch(marker.name)["tag"], ignore_errors=True)
    for marker in folder.glob(f"{tag}.owner-*"):
        raise ReleaseError(f"release {tag} is being built by {marker.name.split('.owner-')[1]} ({marker})")
    (folder / f"{tag}.owner-{owner()}").touch()
    staging = folder / tag
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that died before it marked its owner
    return staging


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # absent, or another release is being staged
        folder.rmdir()


def _check_unique(files: Sequence[ReleaseItem]) -> None:
    seen: dict[str, Path] = {}
    for item in files:
        target = item.dandi_path()
        if target in seen:
            raise ReleaseError(f"{seen[target]} and {item.path} both map to {target}; give them distinct labels")
        seen[target] = item.path


def _manifests(out_dir: Path) -> list[dict[str, Any]]:
    """The manifests of the tags in out_dir, oldest first (staging folders are not tags)."""
    manifests = []
    for manifest in out_dir.glob("*/manifest.json"):
        if not manifest.parent.name.startswith("."):
            with open(manifest) as handle:
                manifests.append(json.load(handle))
    return sorted(manifests, key=lambda m: m["created"])


def _earlier_files(manifests: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """source_sha256 -> (tag, manifest row) over earlier tags, the latest tag winning."""
    index: dict[str, tuple[str, dict[str, Any]]] = {}
    for manifest in manifests:
        for row in manifest["files"]:
            index[row["source_sha256"]] = (manifest["tag"], row)
    return index


def _place(
    item: ReleaseItem, staging: Path, out_dir: Path, earlier: Mapping[str, tuple[str, dict[str, Any]]]
) -> ReleasedFile:
    """Put one file into the staging folder: linked from an earlier tag when its source is unchanged."""
    relative = item.dandi_path()
    target = staging / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = earlier.get(item.source_sha256)
    if previous is not None:
        tag, row = previous
        source = out_dir / tag / row["path"]
        if source.is_file() and source.stat().st_size == row["size"] and file_sha256(source) == row["sha256"]:
            _link_or_copy(source, target)
            return ReleasedFile(
                relative, row["size"], row["sha256"], item.source_sha256, item.subject_id, item.session_id, tag
            )
    if not Path(item.path).is_file():
        raise ReleaseError(f"{item.path}: no such file to release")
    size = Path(item.path).stat().st_size
    if item.size is not None and size != item.size:
        raise ReleaseError(f"{item.path}: {size} bytes, {item.size} recorded when it was exported")
    _link_or_copy(Path(item.path), target)
    sha256 = file_sha256(target)
    if item.sha256 is not None and sha256 != item.sha256:
        raise ReleaseError(f"{item.path}: sha256 differs from the one recorded when it was exported (altered)")
    return ReleasedFile(relative, size, sha256, item.source_sha256, item.subject_id, item.session_id, "")


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link (no bytes written); copy under a temporary name where the file system cannot link."""
    try:
        os.link(source, target)
    except OSError:
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)


def _write_yaml(path: Path, content: Mapping[str, Any]) -> None:
    with open(path, "w") as handle:
        yaml.safe_dump(dict(content), handle, sort_keys=False)


def _write_manifest(staging: Path, tag: str, created: str, description: str, released: Sequence[ReleasedFile]) -> None:
    rows = [asdict(f) for f in released]
    manifest = {"tag": tag, "created": created, "description": description, "files": rows}
    with open(staging / "manifest.json", "w") as handle:
        json.dump(manifest, handle, indent=2)
    with open(staging / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _write_qc_summary(staging: Path, qc_summary: pd.DataFrame | Mapping[str, Any]) -> None:
    if isinstance(qc_summary, pd.DataFrame):
        qc_summary.to_csv(staging / "qc_summary.csv", index=False)
    else:
        with open(staging / "qc_summary.json", "w") as handle:
            json.dump(dict(qc_summary), handle, indent=2, default=str)


def _write_changelog(
    staging: Path, out_dir: Path, tag: str, created: str, entry: str, previous_tag: str | None
) -> None:
    text = f"# Changelog\n\n## {tag} ({created[:10]})\n\n{entry.strip()}\n"
    if previous_tag is not None:
        earlier = (out_dir / previous_tag / "CHANGELOG.md").read_text()
        text += earlier.removeprefix("# Changelog\n")
    (staging / "CHANGELOG.md").write_text(text)
