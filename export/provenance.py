"""Provenance inside every file: software versions and the parameter sets each step ran with.

Two light places, both clean for nwbinspector and readable without an extension:

- `/general/was_generated_by`: (software, version) pairs, brainobs first (the NWB 2.8+ field for this).
- `/processing/misc/brainobs_provenance`: a DynamicTable in long format, one row per parameter:
  step, paramset_hash, parameter (dotted path into nested parameters) and value (JSON text of a scalar or
  a list). Software versions are rows of step "software"; the digest of the bundle the file was written
  from is the row (step "export", parameter "source_sha256"). Long format keeps dictionaries out of table
  cells, which nwbinspector reports (check_table_values_for_dict).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from hdmf.common import DynamicTable, VectorData
from pynwb import NWBFile

from brainobs.export.bundles import BundleError, Provenance
from brainobs.export.readback import Expectation

MODULE = "misc"
TABLE = "brainobs_provenance"
COLUMNS = {
    "step": "processing step (or 'software', 'export')",
    "paramset_hash": "hash of the step's parameter set in the brainobs database ('' for software and export rows)",
    "parameter": "parameter name; nested parameters as a dotted path",
    "value": "parameter value as JSON text (a number, string, boolean, null or list)",
}


def flatten(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted name, JSON text) for every leaf of a nested parameter mapping, in sorted order."""
    for key in sorted(params, key=str):
        name = f"{prefix}{key}"
        value = params[key]
        if isinstance(value, Mapping):
            yield from flatten(value, prefix=f"{name}.")
            continue
        try:
            yield name, json.dumps(value, sort_keys=True, default=_plain)
        except TypeError as error:
            raise BundleError(f"parameter {name!r} is not JSON-serialisable: {error}") from error


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r}")


def provenance_rows(provenance: Provenance, source_sha256: str) -> dict[str, list[str]]:
    """The table's columns: software rows, one row per parameter of each set, and the export row."""
    rows: list[tuple[str, str, str, str]] = [
        ("software", "", name, json.dumps(version)) for name, version in provenance.versions().items()
    ]
    for parameter_set in provenance.parameter_sets:
        flat = list(flatten(parameter_set.params))
        if not flat:
            rows.append((parameter_set.step, parameter_set.paramset_hash, "", "null"))
        rows += [(parameter_set.step, parameter_set.paramset_hash, name, text) for name, text in flat]
    rows.append(("export", "", "source_sha256", json.dumps(source_sha256)))
    return {column: [row[i] for row in rows] for i, column in enumerate(COLUMNS)}


def add_provenance(nwbfile: NWBFile, provenance: Provenance, source_sha256: str) -> list[Expectation]:
    """Add the provenance table; returns what to verify on read-back."""
    rows = provenance_rows(provenance, source_sha256)
    table = DynamicTable(
        name=TABLE,
        description="brainobs provenance: software versions and every parameter of every processing step",
        id=np.arange(len(rows["step"])),
        columns=[VectorData(name=name, description=text, data=rows[name]) for name, text in COLUMNS.items()],
    )
    module = nwbfile.create_processing_module(MODULE, "brainobs provenance of the processed data in this file")
    module.add(table)
    return [
        Expectation(f"{MODULE}/{TABLE}/{name}", lambda f, name=name: f.processing[MODULE][TABLE][name].data[:], values)
        for name, values in rows.items()
    ]


def read_provenance(nwbfile: NWBFile) -> dict[str, dict[str, Any]]:
    """{step: {parameter: value}} from a file's provenance table, with "paramset_hash" per parameter set."""
    table = nwbfile.processing[MODULE][TABLE]
    steps: dict[str, dict[str, Any]] = {}
    columns = [table[name].data[:] for name in COLUMNS]
    for step, paramset_hash, parameter, value in zip(*columns, strict=True):
        entry = steps.setdefault(step, {})
        if paramset_hash:
            entry["paramset_hash"] = paramset_hash
        if parameter:
            entry[parameter] = json.loads(value)
    return steps
