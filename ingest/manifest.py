"""Session manifests (docs/formats/manifest.md): parse, validate and turn into table rows.

Errors name the manifest, the line and the problem. Nothing here touches the database: the result is a
:class:`Manifest` of rows per table, which ``brainobs.schemas.loading`` inserts in one transaction.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brainobs.ingest.paths import DataPathError, relative_to_root, resolve_under


class ManifestError(ValueError):
    """The manifest is malformed or refers to something that does not exist."""


IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
INT_RANGE = {32: (-(2**31), 2**31 - 1), 64: (-(2**63), 2**63 - 1)}


def _text(max_length: int) -> Callable[[Any], str]:
    """Text of at most ``max_length`` characters (the column's length), without NUL bytes."""

    def check(value: Any) -> str:
        if isinstance(value, (dict, list)):
            raise TypeError("expected text")
        text = str(value)
        if "\x00" in text:
            raise ValueError("contains a NUL byte")
        if len(text) > max_length:
            raise ValueError(f"{len(text)} characters, longer than the column's {max_length}")
        return text

    return check


def _identifier(max_length: int) -> Callable[[Any], str]:
    """An identifier that file and folder names are built from: ``[A-Za-z0-9][A-Za-z0-9._-]*``."""
    as_text = _text(max_length)

    def check(value: Any) -> str:
        text = as_text(value)
        if not IDENTIFIER.fullmatch(text):
            raise ValueError("identifiers use letters, digits, '.', '_' and '-' only, starting with a letter or digit")
        return text

    return check


def _integer(bits: int = 64, positive: bool = False) -> Callable[[Any], int]:
    """An integer that fits the column (int32 or int64); ``positive``: greater than 0."""
    low, high = INT_RANGE[bits]

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected an integer")
        if not low <= value <= high:
            raise ValueError(f"outside the int{bits} range [{low}, {high}]")
        if positive and value <= 0:
            raise ValueError("must be greater than 0")
        return value

    return check


def _positive_number(value: Any) -> float:
    """A finite number greater than 0 (rates and sizes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError("must be a finite number greater than 0")
    return number


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=None)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if str(value) not in allowed:
            raise TypeError(f"expected one of {', '.join(allowed)}")
        return str(value)

    return check


def _choice_int(*allowed: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or value not in allowed:
            raise ValueError(f"expected one of {', '.join(map(str, allowed))}")
        return int(value)

    return check


@dataclass(frozen=True)
class Field:
    parse: Callable[[Any], Any]
    required: bool = True
    default: Any = None
    path: str = ""  # "file", "dir" or "any" for data-root paths


@dataclass(frozen=True)
class Section:
    table: str
    key: tuple[str, ...]
    fields: dict[str, Field]


SECTIONS: dict[str, Section] = {
    "subjects": Section(
        "Subject",
        ("subject_id",),
        {
            "subject_id": Field(_identifier(32)),
            "sex": Field(_choice("M", "F", "U")),
            "date_of_birth": Field(_date, required=False),
            "species": Field(_text(64), required=False, default="Mus musculus"),
            "full_genotype": Field(_text(255), required=False, default=""),
            "driver_line": Field(_text(255), required=False, default=""),
            "reporter_line": Field(_text(255), required=False, default=""),
            "indicator": Field(_text(32)),
            "decay_time": Field(_positive_number, required=False),
        },
    ),
    "sessions": Section(
        "Session",
        ("subject_id", "session_id"),
        {
            "session_id": Field(_integer()),
            "subject_id": Field(_identifier(32)),
            "session_type": Field(_text(64)),
            "modality": Field(_choice("ophys", "ecephys", "behavior")),
            "session_start_time": Field(_datetime),
            "rig": Field(_text(32), required=False, default=""),
            "experience_level": Field(
                _choice("Familiar", "Novel 1", "Novel >1", "None"), required=False, default="None"
            ),
            "passive": Field(_boolean, required=False, default=False),
            "image_set": Field(_text(16), required=False, default=""),
            "project_code": Field(_text(64), required=False, default=""),
            "behavior_dir": Field(_text(255), required=False, default="", path="dir"),
            "embargo_end": Field(_date, required=False),
        },
    ),
    "containers": Section(
        "Container",
        ("subject_id", "container_id"),
        {
            "container_id": Field(_integer()),
            "subject_id": Field(_identifier(32)),
            "targeted_structure": Field(_text(32)),
            "imaging_depth": Field(_integer(32)),
        },
    ),
    "experiments": Section(
        "Experiment",
        ("subject_id", "session_id", "experiment_id"),
        {
            "experiment_id": Field(_integer()),
            "session_id": Field(_integer()),
            "container_id": Field(_integer()),
            "imaging_depth": Field(_integer(32)),
            "targeted_structure": Field(_text(32)),
            "frame_rate": Field(_positive_number),
            "width": Field(_integer(32, positive=True)),
            "height": Field(_integer(32, positive=True)),
            "pixel_size_um": Field(_positive_number),
            "movie_file": Field(_text(255), path="file"),
            "plane_group": Field(_integer(32), required=False),  # multi-plane: the pair imaged together
            "plane_order": Field(_choice_int(0, 1), required=False),  # multi-plane: order within the pair
        },
    ),
    "probe_insertions": Section(
        "ProbeInsertion",
        ("subject_id", "session_id", "probe_name"),
        {
            "session_id": Field(_integer()),
            "probe_name": Field(_identifier(16)),
            "probe_type": Field(_text(32), required=False, default="Neuropixels 1.0"),
            "recording_format": Field(_choice("binary", "spikeglx", "openephys")),
            "recording_path": Field(_text(255), path="any"),
            "probe_file": Field(_text(255), required=False, default="", path="file"),
            "sampling_rate": Field(_positive_number),
            "num_channels": Field(_integer(32, positive=True)),
            "targeted_structure": Field(_text(32), required=False, default=""),
        },
    ),
}


@dataclass
class Row:
    """One table row from the manifest, with where it came from."""

    section: str
    index: int
    line: int
    values: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.section}[{self.index}] (line {self.line})"


@dataclass
class Manifest:
    path: Path
    data_root: Path
    rows: dict[str, list[Row]] = field(default_factory=dict)  # by section, in SECTIONS order

    def error(self, message: str) -> ManifestError:
        return ManifestError(f"{self.path}: {message}")

    @property
    def plane_groups(self) -> list[Row]:
        """The PlaneGroup rows: experiments of multi-plane sessions (sharing the experiment row's values)."""
        return [row for row in self.rows.get("experiments", []) if row.values["plane_group"] is not None]


def load_manifest(path: Path, data_root: Path | None = None) -> Manifest:
    """Parse and validate ``path``; raw-data paths resolve under ``data_root`` (default: the manifest's folder)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        node = yaml.compose(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ManifestError(f"{path}: {where}not valid YAML: {getattr(err, 'problem', err)}") from None
    manifest = Manifest(path=path, data_root=(data_root or path.parent).resolve())
    if node is None:
        raise manifest.error("the manifest is empty")
    if not isinstance(node, yaml.MappingNode):
        raise manifest.error(f"line {node.start_mark.line + 1}: the manifest must be a mapping of sections")
    document = yaml.safe_load(path.read_text())
    lines = {key.value: value for key, value in node.value}
    unknown = set(document) - set(SECTIONS) - {"version"}
    if unknown:
        name = sorted(unknown)[0]
        line = next(k.start_mark.line + 1 for k, _ in node.value if k.value == name)
        raise manifest.error(f"line {line}: unknown section {name!r}; expected {', '.join(SECTIONS)}")
    if document.get("version", 1) != 1:
        raise manifest.error(f"manifest version {document['version']!r} is not supported (expected 1)")
    for name, section in SECTIONS.items():
        items = document.get(name) or []
        if not isinstance(items, list):
            raise manifest.error(f"line {lines[name].start_mark.line + 1}: section {name!r} must be a list")
        manifest.rows[name] = [
            _parse_row(manifest, name, section, i, item, lines[name].value[i]) for i, item in enumerate(items)
        ]
    _check_unique_ids(manifest)
    _link_subjects(manifest)
    _check_plane_groups(manifest)
    return manifest


UNIQUE_IDS = {
    "sessions": ("session_id",),
    "containers": ("container_id",),
    "experiments": ("experiment_id",),
    "probe_insertions": ("session_id", "probe_name"),
}


def _check_unique_ids(manifest: Manifest) -> None:
    """session_id, container_id and experiment_id are unique across the survey (one insertion per probe)."""
    for section, names in UNIQUE_IDS.items():
        first: dict[tuple, Row] = {}
        for row in manifest.rows[section]:
            value = tuple(row.values[n] for n in names)
            if value in first:
                shown = ", ".join(f"{n} {v!r}" for n, v in zip(names, value, strict=True))
                raise manifest.error(f"{row.where}: {shown} is already used by {first[value].where}")
            first[value] = row


def _parse_row(manifest: Manifest, name: str, section: Section, index: int, item: Any, node: Any) -> Row:
    line = node.start_mark.line + 1
    if not isinstance(item, dict):
        raise manifest.error(f"line {line}: {name}[{index}] must be a mapping of fields")
    field_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    unknown = set(item) - set(section.fields)
    if unknown:
        bad = sorted(unknown)[0]
        raise manifest.error(f"line {field_lines[bad]}: {name}[{index}]: unknown field {bad!r}")
    values: dict[str, Any] = {}
    for fname, spec in section.fields.items():
        raw = item.get(fname)
        if raw is None:
            if spec.required:
                raise manifest.error(f"line {line}: {name}[{index}]: missing required field {fname!r}")
            values[fname] = spec.default
            continue
        try:
            value = spec.parse(raw)
        except (TypeError, ValueError) as err:
            shown = repr(raw) if len(repr(raw)) <= 60 else repr(raw)[:57] + "..."
            raise manifest.error(f"line {field_lines[fname]}: {name}[{index}].{fname} = {shown}: {err}") from None
        if spec.path and value:
            try:
                target = resolve_under(manifest.data_root, value)
            except DataPathError as err:
                raise manifest.error(f"line {field_lines[fname]}: {name}[{index}].{fname}: {err}") from None
            if spec.path == "file" and not target.is_file():
                raise manifest.error(f"line {field_lines[fname]}: {name}[{index}].{fname}: {target} is not a file")
            if spec.path == "dir" and not target.is_dir():
                raise manifest.error(f"line {field_lines[fname]}: {name}[{index}].{fname}: {target} is not a folder")
            value = relative_to_root(manifest.data_root, target)
            try:
                spec.parse(value)  # the stored form must fit the column too
            except ValueError as err:
                raise manifest.error(f"line {field_lines[fname]}: {name}[{index}].{fname} ({value}): {err}") from None
        values[fname] = value
    return Row(section=name, index=index, line=line, values=values)


def _link_subjects(manifest: Manifest) -> None:
    """Give experiments and insertions the subject of their session when the session is in the manifest."""
    subject_of = {r.values["session_id"]: r.values["subject_id"] for r in manifest.rows["sessions"]}
    container_subject = {r.values["container_id"]: r.values["subject_id"] for r in manifest.rows["containers"]}
    for section in ("experiments", "probe_insertions"):
        for row in manifest.rows[section]:
            subject = subject_of.get(row.values["session_id"])
            if subject is not None:
                row.values["subject_id"] = subject
    for row in manifest.rows["experiments"]:
        subject = row.values.get("subject_id")
        owner = container_subject.get(row.values["container_id"])
        if subject is not None and owner is not None and owner != subject:
            raise manifest.error(
                f"{row.where}: container {row.values['container_id']} belongs to subject {owner!r} "
                f"but session {row.values['session_id']} to subject {subject!r}"
            )


MAX_PLANES = 8
FRAME_RATE_TOLERANCE = 1e-3  # relative: the planes of one session are imaged at one rate


def _check_plane_groups(manifest: Manifest) -> None:
    """Multi-plane sessions: every plane has a group and order, pairs are complete (orders 0 and 1), depths
    are distinct, frame rates agree, and a session holds at most ``MAX_PLANES`` planes."""
    sessions: dict[int, list[Row]] = {}
    for row in manifest.rows["experiments"]:
        sessions.setdefault(row.values["session_id"], []).append(row)
    for session_id, rows in sessions.items():
        grouped = [r for r in rows if r.values["plane_group"] is not None or r.values["plane_order"] is not None]
        if not grouped:
            continue
        for row in rows:
            for name in ("plane_group", "plane_order"):
                if row.values[name] is None:
                    raise manifest.error(
                        f"line {row.line}: experiments[{row.index}].{name} is missing: session {session_id} is "
                        "multi-plane (another of its experiments has plane_group/plane_order), so every plane "
                        "needs plane_group and plane_order"
                    )
        if len(rows) > MAX_PLANES:
            extra = rows[MAX_PLANES]
            raise manifest.error(
                f"line {extra.line}: experiments[{extra.index}]: session {session_id} has {len(rows)} planes; "
                f"at most {MAX_PLANES}"
            )
        seen: dict[tuple[int, int], Row] = {}
        for row in rows:
            place = (row.values["plane_group"], row.values["plane_order"])
            if place in seen:
                raise manifest.error(
                    f"line {row.line}: experiments[{row.index}].plane_order: plane_group {place[0]} order {place[1]} "
                    f"of session {session_id} is already {seen[place].where}"
                )
            seen[place] = row
        for row in rows:
            group, order = row.values["plane_group"], row.values["plane_order"]
            if (group, 1 - order) not in seen:
                raise manifest.error(
                    f"line {row.line}: experiments[{row.index}].plane_group: pair {group} of session {session_id} "
                    f"is incomplete: it has no plane with plane_order {1 - order}"
                )
        depths: dict[int, Row] = {}
        for row in rows:
            depth = row.values["imaging_depth"]
            if depth in depths:
                raise manifest.error(
                    f"line {row.line}: experiments[{row.index}].imaging_depth = {depth}: session {session_id} "
                    f"already images that depth in {depths[depth].where}; the planes' depths must be distinct"
                )
            depths[depth] = row
        rate = rows[0].values["frame_rate"]
        for row in rows[1:]:
            if not math.isclose(row.values["frame_rate"], rate, rel_tol=FRAME_RATE_TOLERANCE):
                raise manifest.error(
                    f"line {row.line}: experiments[{row.index}].frame_rate = {row.values['frame_rate']}: the planes "
                    f"of session {session_id} are imaged at one rate, but {rows[0].where} has {rate}"
                )
