"""Read-back verification: what a writer put into an NWB file, checked against the bundle after reading.

A writer returns one `Expectation` per array (and per count) it stored: a label, how to read it from an
NWBFile opened with pynwb (the h5py dataset itself, unread, or a `Ragged` pair), and the bundle's value.
`verify` checks each one's shape and dtype from the file's metadata, then its values: in full (a sha256
checksum of what is read back) up to FULL_READ_BYTES, and above that on a sample of whole blocks along the
first axis (the first, the last and others drawn at random, about SAMPLE_BYTES in all), compared exactly
with the same rows of the bundle: reading and decompressing a large array in full costs about as much as
writing it, while any mapping, order, dtype or truncation fault shows in every block. Counts compare as
integers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
from pynwb import NWBFile

FULL_READ_BYTES = 8 << 20  # arrays up to this size are read back in full
SAMPLE_BYTES = 2 << 20  # about this much of a larger array is read back, in whole blocks
# The flat values of a ragged column whose every row is empty: one NaN after the last row's end, which no row
# holds. nwbinspector 0.7's table checks read `column.data[0]` and crash on an empty column (docs/nwb.md).
EMPTY_RAGGED_FILL = np.array([np.nan])


class VerificationError(ValueError):
    """An NWB file read back differs from the bundle it was written from."""


@dataclass(frozen=True, eq=False)
class Expectation:
    """`read(nwbfile)` must give `value`: an int (a count), an array, or a list of arrays (ragged)."""

    label: str
    read: Callable[[NWBFile], Any]
    value: Any

    @property
    def is_count(self) -> bool:
        return isinstance(self.value, int | np.integer)


def checksum(value: Any) -> str:
    """sha256 of an array's values, dtype kind and shape; strings by their UTF-8 text; ragged by part."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        digest.update(f"ragged {len(value)}".encode())
        for part in value:
            _feed(digest, part)
        return
    array = np.asarray(value)
    if array.dtype.kind in "OUS":
        text = "\x1f".join(v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel())
        digest.update(f"str {array.shape}".encode())
        digest.update(text.encode())
        return
    digest.update(f"{array.dtype.kind}{array.dtype.itemsize} {array.shape}".encode())
    digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


@dataclass(frozen=True)
class Ragged:
    """A ragged table column in the file, unread: its flat values and the end offset of each row."""

    flat: Any
    ends: Any


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return (len(value), sum(len(part) for part in value))
    return np.shape(value)


def bundle_checksums(expectations: Sequence[Expectation]) -> list[str | None]:
    """The checksum of every bundle array the expectations hold, in their order (None for counts)."""
    return [None if e.is_count else checksum(e.value) for e in expectations]


def verify(
    nwbfile: NWBFile, expectations: Sequence[Expectation], expected: Sequence[str | None] | None = None
) -> tuple[dict[str, int], dict[str, str], list[str]]:
    """Counts, checksums and the labels compared on a sample, of a file read back; VerificationError lists
    every difference from the bundle.

    checksums: of every array, the values read back in full, or for a sampled one the bundle's values that
    its sample matched. `expected` holds the bundle's checksums when they were computed ahead
    (`bundle_checksums`).
    """
    expected = expected if expected is not None else bundle_checksums(expectations)
    counts: dict[str, int] = {}
    checksums: dict[str, str] = {}
    sampled: list[str] = []
    problems: list[str] = []
    for expectation, bundle_sum in zip(expectations, expected, strict=True):
        label = expectation.label
        try:
            stored = expectation.read(nwbfile)
        except (KeyError, AttributeError, IndexError, TypeError) as error:
            problems.append(f"{label}: cannot be read back ({type(error).__name__}: {error})")
            continue
        if expectation.is_count:
            counts[label] = int(stored)
            if int(stored) != int(expectation.value):
                problems.append(f"{label}: {stored} in the file, {expectation.value} in the bundle")
            continue
        problem = _shape_problem(stored, expectation.value)
        if problem:
            problems.append(f"{label}: {problem}")
            continue
        if _sampled(stored):
            sampled.append(label)
            checksums[label] = bundle_sum
            if not _sample_matches(stored, expectation.value):
                problems.append(f"{label}: values differ (in a sampled block)")
            continue
        stored_sum = checksum(_read(stored))
        checksums[label] = stored_sum
        if stored_sum != bundle_sum:
            problems.append(f"{label}: values differ (checksum {stored_sum[:12]} vs {bundle_sum[:12]})")
    if problems:
        raise VerificationError("; ".join(problems))
    return counts, checksums, sampled


def _shape_problem(stored: Any, value: Any) -> str | None:
    """Shape (and, for numbers, dtype) of what the file holds against the bundle, from metadata only."""
    if isinstance(stored, Ragged):
        ends = np.asarray(stored.ends[()], dtype=np.int64)
        held = int(stored.flat.shape[0])
        used = int(ends[-1]) if len(ends) else held
        filled = used == 0 and held == len(EMPTY_RAGGED_FILL) and np.isnan(stored.flat[0])
        if used != held and not filled:
            return f"row ends reach {used}, but the flat values hold {held}"
        shape = (len(ends), used)
        if shape != _shape(value):
            return f"shape {shape} in the file, {_shape(value)} in the bundle"
        lengths = np.fromiter((len(part) for part in value), dtype=np.int64, count=len(value))
        if not np.array_equal(ends, np.cumsum(lengths)):
            return "row lengths differ"
        return None
    shape = tuple(stored.shape) if isinstance(stored, h5py.Dataset) else _shape(stored)
    if shape != _shape(value):
        return f"shape {shape} in the file, {_shape(value)} in the bundle"
    return None


def _dataset(stored: Any) -> Any:
    return stored.flat if isinstance(stored, Ragged) else stored


def _sampled(stored: Any) -> bool:
    dataset = _dataset(stored)
    return (
        isinstance(dataset, h5py.Dataset)
        and dataset.dtype.kind in "biuf"
        and dataset.ndim >= 1
        and dataset.nbytes > FULL_READ_BYTES
    )


def _read(stored: Any) -> Any:
    if isinstance(stored, Ragged):
        ends = np.asarray(stored.ends[()], dtype=np.int64)
        return np.split(np.asarray(stored.flat[()])[: ends[-1]], ends[:-1]) if len(ends) else []
    return stored[()] if isinstance(stored, h5py.Dataset) else stored


def _sample_matches(stored: Any, value: Any) -> bool:
    """Whole blocks of rows (chunk rows where chunked): the first, the last, and random others."""
    dataset = _dataset(stored)
    bundle = np.concatenate(value) if isinstance(stored, Ragged) else np.asarray(value)
    if (dataset.dtype.kind, dataset.dtype.itemsize) != (bundle.dtype.kind, bundle.dtype.itemsize):
        return False
    rows = dataset.shape[0]
    row_bytes = max(1, dataset.nbytes // max(rows, 1))
    block = dataset.chunks[0] if dataset.chunks else max(1, (1 << 20) // row_bytes)
    blocks = -(-rows // block)
    wanted = max(2, SAMPLE_BYTES // (block * row_bytes))
    chosen = {0, blocks - 1}
    others = np.random.default_rng().permutation(np.arange(1, max(blocks - 1, 1)))
    chosen.update(int(b) for b in others[: max(0, wanted - 2)])
    for index in sorted(chosen):
        window = slice(index * block, min(rows, (index + 1) * block))
        if not np.array_equal(dataset[window], bundle[window], equal_nan=bundle.dtype.kind == "f"):
            return False
    return True


def ragged(column: Any) -> Ragged:
    """A ragged table column in the file (its VectorIndex), unread."""
    return Ragged(column.target.data, column.data)
