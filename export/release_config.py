"""The release configuration file: the dandiset's metadata and the embargo rules (docs/formats/release.md).

A YAML file with these fields, every one optional:

    dandiset_id: "DANDI:000123"          # the dandiset's identifier
    name: "Visual Behavior 2P, lab X"      # the dandiset name (the tag is appended)
    description: "..."                     # what the dandiset holds
    contributors:                          # people; roles as DANDI's roleName (dcite:...)
      - {name: "Doe, Jane", email: "jane@example.org", roles: [dcite:ContactPerson, dcite:DataCurator]}
    experimenters: ["Doe, Jane"]
    institution: "Example Institute"
    lab: "Example Lab"
    license: "spdx:CC-BY-4.0"
    keywords: ["2-photon", "visual cortex"]
    embargo_days: 365                      # project default: a session is public this long after acquisition
    project_embargo_days: {OpenScope: 365} # per project_code, overriding embargo_days

A field left out keeps its placeholder; :meth:`ReleaseConfig.placeholders` names them, and the release warns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER_ID = "DANDI:000000"
PLACEHOLDER_NAME = "brainobs release"
DEFAULT_EMBARGO_DAYS = 365  # OpenScope: data are public one year after acquisition
LICENSES = ("spdx:CC-BY-4.0", "spdx:CC0-1.0")


class ReleaseConfigError(ValueError):
    """A release configuration file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Contributor:
    name: str
    email: str = ""
    roles: tuple[str, ...] = ("dcite:Author",)


@dataclass(frozen=True)
class ReleaseConfig:
    dandiset_id: str = PLACEHOLDER_ID
    name: str = PLACEHOLDER_NAME
    description: str = ""
    contributors: tuple[Contributor, ...] = ()
    experimenters: tuple[str, ...] = ()
    institution: str = ""
    lab: str = ""
    license: str = "spdx:CC-BY-4.0"
    keywords: tuple[str, ...] = ()
    embargo_days: int = DEFAULT_EMBARGO_DAYS
    project_embargo_days: dict[str, int] = field(default_factory=dict)

    def placeholders(self) -> list[str]:
        """The fields still holding a placeholder or left empty, for a warning."""
        empty = [
            name
            for name in ("description", "contributors", "experimenters", "institution", "lab", "keywords")
            if not getattr(self, name)
        ]
        placeholder = [
            name
            for name, value in (("dandiset_id", PLACEHOLDER_ID), ("name", PLACEHOLDER_NAME))
            if getattr(self, name) == value
        ]
        return placeholder + empty

    def embargo_end(self, session_start: dt.datetime | dt.date, project_code: str, stored: dt.date | None) -> dt.date:
        """A session's embargo end: the stored date (from the manifest), else start + the project's embargo."""
        if stored is not None:
            return stored
        start = session_start.date() if isinstance(session_start, dt.datetime) else session_start
        return start + dt.timedelta(days=self.project_embargo_days.get(project_code, self.embargo_days))

    def dandiset_metadata(self, tag: str, description: str, embargoed: bool) -> dict[str, Any]:
        """dandiset.yaml: DANDI's field names (identifier, name, description, contributor, license, keywords,
        access), the version, and the institution, lab and experimenters."""
        access = "dandi:EmbargoedAccess" if embargoed else "dandi:OpenAccess"
        return {
            "identifier": self.dandiset_id,
            "name": f"{self.name} {tag}",
            "description": description or self.description or f"{self.name} {tag}",
            "version": tag,
            "contributor": [
                {"name": c.name, "email": c.email, "roleName": list(c.roles)}
                if c.email
                else {"name": c.name, "roleName": list(c.roles)}
                for c in self.contributors
            ],
            "experimenter": list(self.experimenters),
            "institution": self.institution,
            "lab": self.lab,
            "license": [self.license],
            "keywords": list(self.keywords),
            "access": [{"status": access}],
        }


def load_release_config(path: str | Path | None) -> ReleaseConfig:
    """Read a release configuration file; None gives the placeholders. Errors name the file and field."""
    if path is None:
        return ReleaseConfig()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ReleaseConfigError(f"{path}: cannot read the release configuration: {err}") from None
    if not isinstance(raw, dict):
        raise ReleaseConfigError(f"{path}: a release configuration is a mapping of fields")
    known = {f.name for f in fields(ReleaseConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ReleaseConfigError(f"{path}: unknown field(s) {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for name in ("dandiset_id", "name", "description", "institution", "lab", "license"):
        if name in raw:
            values[name] = _text(path, name, raw[name])
    for name in ("experimenters", "keywords"):
        if name in raw:
            values[name] = tuple(_text(path, f"{name}[{i}]", v) for i, v in enumerate(_list(path, name, raw[name])))
    if "contributors" in raw:
        values["contributors"] = tuple(
            _contributor(path, i, c) for i, c in enumerate(_list(path, "contributors", raw["contributors"]))
        )
    if "embargo_days" in raw:
        values["embargo_days"] = _days(path, "embargo_days", raw["embargo_days"])
    if "project_embargo_days" in raw:
        projects = raw["project_embargo_days"]
        if not isinstance(projects, dict):
            raise ReleaseConfigError(f"{path}: project_embargo_days maps a project_code to a number of days")
        values["project_embargo_days"] = {
            str(k): _days(path, f"project_embargo_days.{k}", v) for k, v in projects.items()
        }
    config = ReleaseConfig(**values)
    if config.license not in LICENSES:
        raise ReleaseConfigError(f"{path}: license {config.license!r} is not one DANDI accepts: {list(LICENSES)}")
    if not config.dandiset_id.startswith("DANDI:") or not config.dandiset_id[6:].isdigit():
        raise ReleaseConfigError(f"{path}: dandiset_id {config.dandiset_id!r} must look like DANDI:000123")
    return config


def _text(path: Path, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ReleaseConfigError(f"{path}: {name} must be non-empty text, got {value!r}")
    return value.strip()


def _list(path: Path, name: str, value: Any) -> list:
    if not isinstance(value, list):
        raise ReleaseConfigError(f"{path}: {name} must be a list, got {type(value).__name__}")
    return value


def _days(path: Path, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReleaseConfigError(f"{path}: {name} must be a whole number of days >= 0, got {value!r}")
    return value


def _contributor(path: Path, index: int, value: Any) -> Contributor:
    where = f"contributors[{index}]"
    if not isinstance(value, dict) or "name" not in value:
        raise ReleaseConfigError(f"{path}: {where} needs at least a name")
    unknown = sorted(set(value) - {"name", "email", "roles"})
    if unknown:
        raise ReleaseConfigError(f"{path}: {where}: unknown field(s) {unknown}")
    roles = tuple(
        _text(path, f"{where}.roles", r) for r in _list(path, f"{where}.roles", value.get("roles", ["dcite:Author"]))
    )
    if not all(r.startswith("dcite:") for r in roles):
        raise ReleaseConfigError(f"{path}: {where}.roles are DANDI role names such as dcite:Author, got {list(roles)}")
    email = _text(path, f"{where}.email", value["email"]) if "email" in value else ""
    return Contributor(_text(path, f"{where}.name", value["name"]), email, roles)
