"""Writers of synthetic 2-photon movies: multi-page uint16 TIFF with ScanImage-like metadata, or HDF5.

Frames arrive one at a time and are written in blocks, so memory stays bounded whatever the length.
Nothing time-dependent goes into a file: the same frames give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np
import tifffile

FRAMES_PER_WRITE = 100
_CLASSIC_TIFF_LIMIT = 2**32 - 2**25  # bytes of pixel data beyond which BigTIFF is used


def scanimage_description(metadata: dict[str, object]) -> str:
    """`key = value` lines, as ScanImage writes its header into the first page's ImageDescription."""
    return "".join(f"{key} = {value}\n" for key, value in metadata.items())


def _blocks(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    block: list[np.ndarray] = []
    for frame in frames:
        block.append(frame)
        if len(block) == FRAMES_PER_WRITE:
            yield np.stack(block)
            block = []
    if block:
        yield np.stack(block)


def write_tiff_movie(
    path: Path,
    frames: Iterable[np.ndarray],
    shape: tuple[int, int, int],
    pixel_size_um: float,
    metadata: dict[str, object],
) -> None:
    """Multi-page uint16 TIFF: metadata on page 0's description, resolution tags in pixels per cm."""
    tmp = path.with_name(path.name + ".partial")
    resolution = 1e4 / pixel_size_um
    first = True
    with tifffile.TiffWriter(tmp, bigtiff=2 * int(np.prod(shape)) > _CLASSIC_TIFF_LIMIT) as tif:
        for block in _blocks(frames):
            tif.write(
                block,
                contiguous=True,
                metadata=None,
                software=False,
                description=scanimage_description(metadata) if first else None,
                resolution=(resolution, resolution) if first else None,
                resolutionunit="CENTIMETER" if first else None,
            )
            first = False
    os.replace(tmp, path)


def write_h5_movie(
    path: Path, frames: Iterable[np.ndarray], shape: tuple[int, int, int], metadata: dict[str, object]
) -> None:
    """HDF5 with dataset `data` (frames, height, width) uint16 chunked by frame; metadata as its attributes."""
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as h5:
        data = h5.create_dataset("data", shape, np.uint16, chunks=(1, *shape[1:]), track_times=False)
        for key, value in metadata.items():
            data.attrs[key] = value
        start = 0
        for block in _blocks(frames):
            data[start : start + len(block)] = block
            start += len(block)
    os.replace(tmp, path)
