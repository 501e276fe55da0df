"""Split an interleaved mesoscope TIFF into one TIFF per plane, as Allen's pipeline does before processing.

Plane order (docs/formats/manifest.md): page k of the recording holds plane ``k mod n_planes`` at time point
``k // n_planes``: all planes of the first time point, then all planes of the second, and so on. Plane p is
written next to the source as ``<stem>_plane<p>.tif`` (written under a temporary name, then renamed), with
the first page's description (the ScanImage header) carried over; pages are streamed, so memory stays
bounded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import tifffile

MAX_PLANES = 8


class MesoscopeError(ValueError):
    """The interleaved recording cannot be split as asked."""


def _is_shape_record(description: str) -> bool:
    """Whether a page description is tifffile's JSON record of the array shape."""
    try:
        return "shape" in json.loads(description)
    except (ValueError, TypeError):
        return False


def plane_paths(source: Path, n_planes: int) -> list[Path]:
    """Where plane p of ``source`` is written: ``<stem>_plane<p>.tif`` in the source's folder."""
    return [source.with_name(f"{source.stem}_plane{p}.tif") for p in range(n_planes)]


def split_interleaved_tiff(source: Path | str, n_planes: int) -> list[Path]:
    """Write one TIFF per plane of an interleaved mesoscope recording; returns their paths, plane by plane."""
    source = Path(source)
    if not 1 <= n_planes <= MAX_PLANES:
        raise MesoscopeError(f"{source}: {n_planes} planes; a mesoscope session holds 1 to {MAX_PLANES}")
    if not source.is_file():
        raise MesoscopeError(f"{source}: not a file")
    targets = plane_paths(source, n_planes)
    partial = [target.with_name(target.name + ".partial") for target in targets]
    try:
        with tifffile.TiffFile(source) as tif:
            pages = tif.pages
            if len(pages) % n_planes:
                raise MesoscopeError(
                    f"{source}: {len(pages)} pages are not a whole number of time points of {n_planes} planes"
                )
            shape = pages[0].shape
            description = pages[0].description
            if _is_shape_record(description):  # tifffile's record of the whole recording's shape: not a header
                description = None
            writers = [tifffile.TiffWriter(path, bigtiff=True) for path in partial]
            try:
                for k, page in enumerate(pages):
                    frame = page.asarray()
                    if frame.shape != shape:
                        raise MesoscopeError(f"{source}: page {k} is {frame.shape}, page 0 {shape}")
                    writers[k % n_planes].write(
                        frame, contiguous=True, metadata=None, description=description if k < n_planes else None
                    )
            finally:
                for writer in writers:
                    writer.close()
        for tmp, target in zip(partial, targets, strict=True):
            os.replace(tmp, target)
    finally:
        for tmp in partial:
            tmp.unlink(missing_ok=True)
    return targets
