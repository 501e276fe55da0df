"""Read-back verification: what a writer put into an NWB file, checked against the bundle after reading.

A writer returns one `Expectation` per array (and per count) it stored: a label, how to read it from an
NWBFile opened with pynwb, and the bundle's value. `verify` reads each one back and compares the shape
and a sha256 checksum of the values (counts compare as integers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pynwb import NWBFile


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


def _shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return (len(value), sum(len(part) for part in value))
    return np.shape(value)


def bundle_checksums(expectations: Sequence[Expectation]) -> list[str | None]:
    """The checksum of every bundle array the expectations hold, in their order (None for counts)."""
    return [None if e.is_count else checksum(e.value) for e in expectations]


def verify(
    nwbfile: NWBFile, expectations: Sequence[Expectation], expected: Sequence[str | None] | None = None
) -> tuple[dict[str, int], dict[str, str]]:
    """Counts and checksums of a file read back; VerificationError lists every difference from the bundle.

    `expected` holds the bundle's checksums when they were computed ahead (`bundle_checksums`).
    """
    expected = expected if expected is not None else bundle_checksums(expectations)
    counts: dict[str, int] = {}
    checksums: dict[str, str] = {}
    problems: list[str] = []
    for expectation, bundle_sum in zip(expectations, expected, strict=True):
        try:
            stored = expectation.read(nwbfile)
        except (KeyError, AttributeError, IndexError, TypeError) as error:
            problems.append(f"{expectation.label}: cannot be read back ({type(error).__name__}: {error})")
            continue
        if expectation.is_count:
            counts[expectation.label] = int(stored)
            if int(stored) != int(expectation.value):
                problems.append(f"{expectation.label}: {stored} in the file, {expectation.value} in the bundle")
            continue
        if _shape(stored) != _shape(expectation.value):
            problems.append(
                f"{expectation.label}: shape {_shape(stored)} in the file, {_shape(expectation.value)} in the bundle"
            )
            continue
        stored_sum = checksum(stored)
        checksums[expectation.label] = stored_sum
        if stored_sum != bundle_sum:
            problems.append(f"{expectation.label}: values differ (checksum {stored_sum[:12]} vs {bundle_sum[:12]})")
    if problems:
        raise VerificationError("; ".join(problems))
    return counts, checksums


def ragged(column: Any) -> list[np.ndarray]:
    """A ragged table column read back (its VectorIndex) as one array per row."""
    flat = np.asarray(column.target.data[:])
    ends = np.asarray(column.data[:], dtype=np.int64)
    return np.split(flat, ends[:-1]) if len(ends) else []
