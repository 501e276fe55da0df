"""Validation of NWB files (nwbinspector) and of release folders (dandi validate), through their Python APIs.

nwbinspector's command line exits 0 even when it reports critical findings, so files are inspected through
`nwbinspector.inspect_nwbfile` (which includes pynwb's schema validation) and judged here: a file passes
when no message is ERROR (a check crashed), PYNWB_VALIDATION, CRITICAL or BEST_PRACTICE_VIOLATION.
Suggestions are reported but do not fail a file.

A release folder is validated with dandi's own validator (`dandi validate`: the dandiset.yaml, the
sub-<subject>/ layout and file names, each file's metadata, pynwb and nwbinspector with the DANDI
configuration). It passes when nothing is ERROR or worse, as the `dandi validate` command decides. It
needs no network: everything it reads is local. `files_checked` counts the NWB files dandi saw: dandi skips
any folder whose name starts with a dot, a dandiset root included, and then passes an empty check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nwbinspector import Importance, inspect_nwbfile

FAILING_IMPORTANCE = (
    Importance.ERROR,
    Importance.PYNWB_VALIDATION,
    Importance.CRITICAL,
    Importance.BEST_PRACTICE_VIOLATION,
)


@dataclass(frozen=True)
class Finding:
    """One validator message: its level, the check that raised it, where, and what it says."""

    level: str
    check: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.level} {self.check} {self.location}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """Findings of one validator on one file or folder; `passed` when none of them is failing."""

    target: Path
    validator: str
    findings: tuple[Finding, ...]
    failing: tuple[Finding, ...]
    files_checked: int = 1

    @property
    def passed(self) -> bool:
        return not self.failing

    def counts(self) -> dict[str, int]:
        return dict(Counter(finding.level for finding in self.findings))

    def summary(self) -> str:
        state = "passed" if self.passed else f"FAILED ({len(self.failing)} failing)"
        counts = self.counts() or "no findings"
        files = f"{self.files_checked} NWB file{'s' if self.files_checked != 1 else ''}"
        lines = [f"{self.validator} {state} on {self.target} ({files}): {counts}"]
        return "\n".join(lines + [f"  {finding}" for finding in self.findings])


def inspect_nwb(path: str | Path, *, ignore: Sequence[str] = ()) -> ValidationReport:
    """nwbinspector (all checks, pynwb validation included) on one NWB file; `ignore` names checks to skip."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NWB file")
    findings = tuple(
        Finding(
            level=message.importance.name,
            check=message.check_function_name,
            location=str(message.location or "/"),
            message=message.message,
        )
        for message in inspect_nwbfile(nwbfile_path=path, ignore=list(ignore) or None)
        if message is not None
    )
    failing_levels = {importance.name for importance in FAILING_IMPORTANCE}
    failing = tuple(finding for finding in findings if finding.level in failing_levels)
    return ValidationReport(path, "nwbinspector", findings, failing)


def dandi_validate(folder: str | Path) -> ValidationReport:
    """`dandi validate` on a folder holding dandiset.yaml and the sub-<subject>/ layout."""
    # dandi documents its validation entry point in dandi.validate._core (see dandi/validate/__init__.py);
    # imported here because importing dandi is slow.
    from dandi.files import NWBAsset, find_dandi_files
    from dandi.validate import Severity
    from dandi.validate._core import validate

    folder = Path(folder)
    if not (folder / "dandiset.yaml").is_file():
        raise FileNotFoundError(f"{folder}: no dandiset.yaml; not a dandiset folder")
    findings, failing = [], []
    for result in validate(str(folder)):
        finding = Finding(
            level=result.severity.name if result.severity is not None else "NONE",
            check=result.id,
            location=str(result.path.relative_to(folder)) if result.path and result.path.is_relative_to(folder) else "",
            message=result.message or "",
        )
        findings.append(finding)
        if result.severity is not None and result.severity >= Severity.ERROR:
            failing.append(finding)
    checked = sum(isinstance(asset, NWBAsset) for asset in find_dandi_files(folder, dandiset_path=folder))
    return ValidationReport(folder, "dandi validate", tuple(findings), tuple(failing), files_checked=checked)
