"""Static QC report pages: one self-contained HTML file per experiment, session or probe.

A page is a header (the item's identity and its overall QC outcome) followed by sections: QC tables,
figures, diagrams and key-value tables. Images are embedded as base64 data URIs, so the single file works
anywhere, offline; a Content-Security-Policy forbids the page from loading anything else. All text is
escaped. Nothing here touches the database: the caller fetches rows and passes plain values.
"""

from __future__ import annotations

import base64
import html
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure

from brainobs import __version__
from brainobs.export.figures import render_png, render_svg, write_atomic
from brainobs.populate.qc import Outcome, worst

# (background, text) per outcome
OUTCOME_COLOURS: dict[Outcome, tuple[str, str]] = {
    Outcome.NOT_SET: ("#d9d9d9", "#222222"),
    Outcome.PASS: ("#2e7d32", "#ffffff"),
    Outcome.WARNING: ("#f9a825", "#000000"),
    Outcome.FAIL: ("#e65100", "#ffffff"),
    Outcome.CRITICAL: ("#7f0000", "#ffffff"),
}
MISSING = "\u2014"  # shown for a missing value or threshold
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1em; max-width: 1100px; }
header { border-bottom: 2px solid #444; margin-bottom: 1em; }
h1 { margin: 0 0 .3em 0; font-size: 1.6em; }
.identity { display: flex; flex-wrap: wrap; gap: 1.5em; margin: .3em 0 .8em 0; }
.identity span b { color: #555; font-weight: 600; margin-right: .3em; }
section { margin: 1.5em 0; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.outcome { font-weight: 700; padding: .1em .5em; border-radius: 3px; }
img { max-width: 100%; height: auto; }
pre { background: #f5f5f5; padding: .6em; overflow-x: auto; }
figcaption, .note { color: #555; font-size: .9em; }
footer { margin-top: 2em; color: #888; font-size: .8em; }
"""


class ReportInputError(ValueError):
    """A report section was given something it cannot show."""


def as_outcome(value: Outcome | str | int) -> Outcome:
    """An Outcome from itself, its name (any case) or its number."""
    if isinstance(value, Outcome):
        return value
    try:
        return Outcome[value.strip().upper()] if isinstance(value, str) else Outcome(int(value))
    except (KeyError, ValueError) as err:
        names = [outcome.name for outcome in Outcome]
        raise ReportInputError(f"unknown QC outcome {value!r}; expected one of {names}") from err


@dataclass(frozen=True)
class Identity:
    """What the page is about; fields left None are not shown."""

    subject: str | int | None = None
    session: str | int | None = None
    experiment: str | int | None = None
    probe: str | int | None = None
    container: str | int | None = None
    release_tag: str | None = None

    def items(self) -> list[tuple[str, Any]]:
        labels = ("subject", "session", "experiment", "probe", "container", "release")
        values = (self.subject, self.session, self.experiment, self.probe, self.container, self.release_tag)
        return [(label, value) for label, value in zip(labels, values, strict=True) if value is not None]


@dataclass(frozen=True)
class QcRow:
    """One QC check as stored: name, value, threshold (None when the check has none), outcome, reason."""

    check_name: str
    value: Any
    threshold: Any
    outcome: Outcome
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", as_outcome(self.outcome))

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | Any) -> QcRow:
        """A row from a fetched table row (``check_name`` key) or a core ``Check`` (``name`` attribute)."""
        get = record.get if isinstance(record, Mapping) else lambda key: getattr(record, key, None)
        name = get("check_name") or get("name")
        if name is None or get("outcome") is None:
            raise ReportInputError(f"a QC row needs a check name and an outcome, got {record!r}")
        return cls(str(name), get("value"), get("threshold"), get("outcome"), get("reason") or "")


@dataclass(frozen=True)
class QcOverride:
    """A reviewer's outcome, applied on top of the computed one."""

    outcome: Outcome
    reviewer: str
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", as_outcome(self.outcome))


@dataclass(frozen=True)
class QcTable:
    """QC checks of one item; its outcome is the worst check's, unless a reviewer overrode it."""

    rows: Sequence[QcRow | Mapping[str, Any] | Any]
    title: str = "Quality control"
    override: QcOverride | None = None

    def __post_init__(self) -> None:
        rows = tuple(row if isinstance(row, QcRow) else QcRow.from_record(row) for row in self.rows)
        object.__setattr__(self, "rows", rows)

    @property
    def computed_outcome(self) -> Outcome:
        return worst(row.outcome for row in self.rows)

    @property
    def outcome(self) -> Outcome:
        return self.override.outcome if self.override is not None else self.computed_outcome


@dataclass(frozen=True)
class FigureSection:
    """A matplotlib Figure (embedded as PNG, or SVG with ``fmt="svg"``) or a .png / .svg file."""

    title: str
    figure: Figure | str | Path
    caption: str = ""
    fmt: Literal["png", "svg"] = "png"

    def __post_init__(self) -> None:
        if self.fmt not in ("png", "svg"):
            raise ReportInputError(f"figure {self.title!r}: fmt must be 'png' or 'svg', not {self.fmt!r}")


@dataclass(frozen=True)
class DiagramSection:
    """A diagram made elsewhere: SVG markup (str) or an .svg file (Path), and/or its mermaid source."""

    title: str
    svg: str | Path | None = None
    mermaid: str | None = None

    def __post_init__(self) -> None:
        if self.svg is None and self.mermaid is None:
            raise ReportInputError(f"diagram {self.title!r} needs SVG or mermaid text")


@dataclass(frozen=True)
class KeyValues:
    """A small two-column table of metadata."""

    title: str
    mapping: Mapping[str, Any] = field(default_factory=dict)


Section = QcTable | FigureSection | DiagramSection | KeyValues


def write_report(
    path: str | Path,
    title: str,
    sections: Sequence[Section],
    identity: Identity | None = None,
) -> Path:
    """Write the page to ``path`` through a temporary file and a rename; returns the path."""
    path = Path(path)
    write_atomic(path, render_report(title, sections, identity).encode("utf-8"))
    return path


def render_report(title: str, sections: Sequence[Section], identity: Identity | None = None) -> str:
    """The page as HTML text."""
    body = [_header(title, identity or Identity(), [s for s in sections if isinstance(s, QcTable)])]
    body += [_section(section) for section in sections]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_text(title)}</title>",
            f"<style>{STYLE}{_outcome_style()}</style>",
            "</head><body>",
            *body,
            f"<footer>brainobs {_text(__version__)}</footer>",
            "</body></html>",
            "",
        ]
    )


def _header(title: str, identity: Identity, qc_tables: list[QcTable]) -> str:
    parts = [f"<header><h1>{_text(title)}</h1>", '<div class="identity">']
    parts += [f"<span><b>{_text(label)}</b>{_text(value)}</span>" for label, value in identity.items()]
    if qc_tables:
        parts.append(f"<span><b>QC</b>{_badge(worst(table.outcome for table in qc_tables))}</span>")
    parts.append("</div></header>")
    return "".join(parts)


def _section(section: Section) -> str:
    if isinstance(section, QcTable):
        return _qc_table(section)
    if isinstance(section, FigureSection):
        return _figure(section)
    if isinstance(section, DiagramSection):
        return _diagram(section)
    if isinstance(section, KeyValues):
        return _key_values(section)
    raise ReportInputError(f"not a report section: {type(section).__name__}")


def _qc_table(table: QcTable) -> str:
    rows = "".join(
        "<tr>"
        f"<td>{_text(row.check_name)}</td>"
        f'<td class="num">{_text(_format(row.value))}</td>'
        f'<td class="num">{_text(_format(row.threshold))}</td>'
        f"<td>{_badge(row.outcome)}</td>"
        f"<td>{_text(row.reason)}</td>"
        "</tr>"
        for row in table.rows
    )
    summary = f"Overall: {_badge(table.computed_outcome)} (worst of {len(table.rows)} checks)"
    if table.override is not None:
        review = table.override
        summary += f"; reviewer {_text(review.reviewer)} set {_badge(review.outcome)}"
        summary += f": {_text(review.reason)}"
    return (
        f"<section><h2>{_text(table.title)}</h2><p>{summary}</p>"
        "<table><thead><tr><th>check</th><th>value</th><th>threshold</th><th>outcome</th><th>reason</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _figure(section: FigureSection) -> str:
    if isinstance(section.figure, Figure):
        if section.fmt == "svg":
            svg = render_svg(section.figure).encode("utf-8")
            image = _img(_data_uri("image/svg+xml", svg), section.title)
        else:
            image = _png_img(render_png(section.figure), section.title)
    else:
        image = _file_img(Path(section.figure), section.title)
    caption = f"<figcaption>{_text(section.caption)}</figcaption>" if section.caption else ""
    return f"<section><h2>{_text(section.title)}</h2><figure>{image}{caption}</figure></section>"


def _diagram(section: DiagramSection) -> str:
    parts = [f"<section><h2>{_text(section.title)}</h2>"]
    if isinstance(section.svg, Path):
        parts.append(_file_img(section.svg, section.title))
    elif section.svg is not None:
        parts.append(_img(_data_uri("image/svg+xml", _svg_bytes(section.svg, "SVG markup")), section.title))
    if section.mermaid is not None:
        state = "" if section.svg is not None else " open"  # shown unfolded when it is all there is
        parts.append(
            f'<details{state}><summary class="note">mermaid source</summary>'
            f'<pre class="mermaid">{_text(section.mermaid)}</pre></details>'
        )
    parts.append("</section>")
    return "".join(parts)


def _key_values(section: KeyValues) -> str:
    items = section.mapping.items()
    rows = "".join(f"<tr><th>{_text(key)}</th><td>{_text(_format(value))}</td></tr>" for key, value in items)
    return f"<section><h2>{_text(section.title)}</h2><table><tbody>{rows}</tbody></table></section>"


def _file_img(path: Path, alt: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ReportInputError(f"{path}: a report embeds .png or .svg images, not {suffix!r}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ReportInputError(f"{path}: cannot read the image ({err.strerror})") from err
    if suffix == ".svg":
        return _img(_data_uri("image/svg+xml", _svg_bytes(data.decode("utf-8", "replace"), str(path))), alt)
    if not data.startswith(PNG_SIGNATURE):
        raise ReportInputError(f"{path}: not a PNG file")
    return _png_img(data, alt)


def _png_img(data: bytes, alt: str) -> str:
    """An <img> with the PNG's own width and height, so the layout does not wait for decoding."""
    width, height = struct.unpack(">II", data[16:24])
    return _img(_data_uri("image/png", data), alt, f' width="{width}" height="{height}"')


def _badge(outcome: Outcome) -> str:
    return f'<span class="outcome outcome-{outcome.name}">{outcome.name}</span>'


def _outcome_style() -> str:
    return "".join(
        f".outcome-{outcome.name} {{ background: {background}; color: {colour}; }}\n"
        for outcome, (background, colour) in OUTCOME_COLOURS.items()
    )


def _img(uri: str, alt: str, size: str = "") -> str:
    return f'<img src="{uri}" alt="{_text(alt)}"{size}>'


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _svg_bytes(markup: str, where: str) -> bytes:
    """The SVG as a standalone document: an <img> shows it only when the root declares the SVG namespace."""
    start = markup.find("<svg")
    if start < 0:
        raise ReportInputError(f"{where}: no <svg> element (pass a Path to embed an .svg file)")
    root_end = markup.find(">", start)
    if "xmlns=" not in markup[start:root_end]:
        markup = f'{markup[: start + 4]} xmlns="{SVG_NAMESPACE}"{markup[start + 4 :]}'
    return markup.encode("utf-8")


def _format(value: Any) -> str:
    """Floats to 4 significant digits; None and NaN as a dash; anything else as str()."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)
