"""Pieces every NWB writer shares: the file with its subject, dataset storage, time bases and tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTable, VectorData, VectorIndex
from pynwb import NWBFile, TimeSeries

from brainobs.export.allen_types import BEHAVIOR_OPHYS, allen_class
from brainobs.export.bundles import BundleError, Provenance, SessionInfo, SubjectInfo
from brainobs.export.readback import EMPTY_RAGGED_FILL, Expectation, ragged

# Datasets of at least this many bytes are chunked and gzip-compressed (level 4, byte shuffle); smaller ones
# are stored contiguous, where compression gains nothing.
MIN_COMPRESSED_BYTES = 64 * 1024
CHUNK_BYTES = 1 << 20
COMPRESSION_LEVEL = 4
# A 2-D dataset's chunk spans at most this many columns (ROIs), so one ROI's trace is read from few chunks.
MAX_CHUNK_COLUMNS = 64
# Timestamps whose steps agree to this many decimals are stored as starting_time + rate (NWB best practice;
# nwbinspector's check_regular_timestamps uses the same tolerance).
REGULAR_DECIMALS = 9


def chunk_shape(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunks of about CHUNK_BYTES: whole trailing axes (at most MAX_CHUNK_COLUMNS columns in 2-D), split in time."""
    if len(shape) == 1:
        return (max(1, min(shape[0], CHUNK_BYTES // itemsize)),)
    trailing = (min(shape[1], MAX_CHUNK_COLUMNS),) if len(shape) == 2 else tuple(shape[1:])
    rows = max(1, CHUNK_BYTES // (int(np.prod(trailing)) * itemsize))
    return (max(1, min(shape[0], rows)), *trailing)


def dataset(array: np.ndarray) -> np.ndarray | H5DataIO:
    """The array wrapped for storage: chunked and compressed when large, as is when small."""
    array = np.ascontiguousarray(array)
    if array.nbytes < MIN_COMPRESSED_BYTES or array.ndim == 0 or 0 in array.shape:
        return array
    return H5DataIO(
        array,
        chunks=chunk_shape(array.shape, array.dtype.itemsize),
        compression="gzip",
        compression_opts=COMPRESSION_LEVEL,
        shuffle=True,
    )


def is_regular(timestamps: np.ndarray) -> bool:
    steps = np.round(np.diff(timestamps), REGULAR_DECIMALS)
    return len(timestamps) > 2 and steps[0] > 0 and bool(np.all(steps == steps[0]))


def time_base(timestamps: np.ndarray, reference: TimeSeries | None = None) -> dict[str, Any]:
    """TimeSeries keyword arguments for these sample times.

    Regular times become starting_time + rate (NWB best practice; AllenSDK, which reads `.timestamps`,
    then finds none: real sync times are never exactly regular); others become timestamps, linked to
    `reference` (a series written from the same timestamps) when given, so that they are stored once.
    """
    if is_regular(timestamps):
        return {"starting_time": float(timestamps[0]), "rate": float(1.0 / (timestamps[1] - timestamps[0]))}
    if reference is not None and reference.timestamps is not None:
        return {"timestamps": reference}
    return {"timestamps": dataset(np.asarray(timestamps, dtype=np.float64))}


def new_nwbfile(
    session: SessionInfo, subject: SubjectInfo, provenance: Provenance, identifier: str, **contents: Any
) -> NWBFile:
    """An NWBFile with session and subject metadata and the software that made it (`was_generated_by`).

    `identifier` is the id of what the file holds (AllenSDK reads an ophys file's as the experiment id);
    the subject is Allen's BehaviorSubject, a Subject with driver_line and reporter_line ("None" if unknown).
    """
    behavior_subject = allen_class(BEHAVIOR_OPHYS, "BehaviorSubject")
    lines = {"driver_line": list(subject.driver_line)} if subject.driver_line else {}
    return NWBFile(
        session_description=session.session_description,
        identifier=identifier,
        session_start_time=session.session_start_time,
        session_id=session.session_id,
        experiment_description=session.experiment_description,
        institution=session.institution,
        lab=session.lab,
        experimenter=list(session.experimenter) or None,
        keywords=list(session.keywords) or None,
        stimulus_notes=session.stimulus_notes,
        was_generated_by=[[name, version] for name, version in provenance.versions().items()],
        subject=behavior_subject(
            **lines,
            reporter_line=subject.reporter_line or "None",
            subject_id=subject.subject_id,
            sex=subject.sex,
            species=subject.species,
            genotype=subject.genotype,
            age=subject.age_at(session.session_start_time),
            date_of_birth=subject.date_of_birth,
            strain=subject.strain,
            description=subject.description or f"mouse {subject.subject_id} ({subject.genotype})",
        ),
        **contents,
    )


def smallest_int(values: np.ndarray) -> np.ndarray:
    """Integers in the narrowest signed type that holds them (int8 for flags and small indices)."""
    if values.size == 0:
        return values
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= values.min() and values.max() <= info.max:
            return values.astype(dtype)
    return values


def column_values(name: str, values: Any) -> np.ndarray | list[np.ndarray]:
    """A table column as it is stored: bool, int (narrowest), float64 or str arrays, or a list of arrays (ragged)."""
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    kind = pd.api.types.infer_dtype(series, skipna=False)
    if kind == "boolean":
        return series.to_numpy(dtype=bool)
    if kind == "integer":
        return smallest_int(series.to_numpy(dtype=np.int64))
    if kind in ("floating", "mixed-integer-float", "decimal"):
        return series.to_numpy(dtype=np.float64)
    if kind == "string":
        return series.to_numpy(dtype=object)
    if all(isinstance(item, np.ndarray | list | tuple) for item in series):
        return [np.asarray(item, dtype=np.float64) for item in series]
    raise BundleError(f"column {name!r} holds {kind} values; expected bool, int, float, str or arrays")


def ragged_index_name(column: str) -> str:
    """The name of a ragged column's index: `<column>_index`, except that an index named `*_times_index` makes
    pynapple take the whole table for units (spike times), so `lick_times` is indexed by `lick_times_ragged`."""
    return f"{column}_ragged" if column.endswith("_times") else f"{column}_index"


def table_columns(
    table: pd.DataFrame, descriptions: Mapping[str, str], skip: Sequence[str] = ()
) -> tuple[list[VectorData | VectorIndex], dict[str, np.ndarray | list[np.ndarray]]]:
    """VectorData (and VectorIndex for ragged columns) for every column but `skip`, and the stored values.

    A ragged column whose every row is empty stores EMPTY_RAGGED_FILL as its flat values (no row holds it).

    Every column needs a description; a missing one raises BundleError naming it.
    """
    undescribed = [str(c) for c in table.columns if c not in descriptions and c not in skip]
    if undescribed:
        raise BundleError(f"table columns {undescribed} have no description; add them to column_descriptions")
    columns: list[VectorData | VectorIndex] = []
    stored: dict[str, np.ndarray | list[np.ndarray]] = {}
    for name in table.columns:
        if name in skip:
            continue
        values = column_values(name, table[name])
        stored[name] = values
        if isinstance(values, list):
            flat = np.concatenate(values) if values else np.zeros(0)
            if values and not flat.size:
                flat = EMPTY_RAGGED_FILL
            data = VectorData(name=name, description=descriptions[name], data=dataset(flat))
            ends = np.cumsum([len(v) for v in values]).astype(np.int64)
            columns += [data, VectorIndex(name=ragged_index_name(name), data=ends, target=data)]
        else:
            data = values.tolist() if values.dtype == object else dataset(values)
            columns.append(VectorData(name=name, description=descriptions[name], data=data))
    return columns, stored


def time_expectation(label: str, series: Callable[[NWBFile], TimeSeries], timestamps: np.ndarray) -> Expectation:
    """Verify a series' time base: its timestamps, or starting_time and rate where they were regular."""
    if is_regular(timestamps):
        expected = np.array([timestamps[0], 1.0 / (timestamps[1] - timestamps[0])])
        return Expectation(
            f"{label}/starting_time_rate", lambda f: np.array([series(f).starting_time, series(f).rate]), expected
        )
    return Expectation(f"{label}/timestamps", lambda f: series(f).timestamps, timestamps)


def table_expectations(
    label: str, table: Callable[[NWBFile], DynamicTable], stored: Mapping[str, np.ndarray | list[np.ndarray]]
) -> list[Expectation]:
    """Row count and one checksum per stored column (ragged columns compared row by row)."""
    rows = len(next(iter(stored.values())))
    expectations = [Expectation(f"{label}/rows", lambda f: len(table(f)), rows)]
    for name, values in stored.items():
        if isinstance(values, list):
            expectations.append(Expectation(f"{label}/{name}", lambda f, n=name: ragged(table(f)[n]), values))
        else:
            expectations.append(Expectation(f"{label}/{name}", lambda f, n=name: _column(table(f), n).data, values))
    return expectations


def _column(table: DynamicTable, name: str) -> Any:
    return table.id if name == "id" else table[name]
