"""Spike sorting through SpikeInterface's run_sorter, with presets as data and clear failures."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

import spikeinterface.sorters as ss
from spikeinterface.core import BaseRecording, BaseSorting, NumpySorting
from threadpoolctl import threadpool_limits

from brainobs.populate.ephys.presets import SORTER_PRESETS


class SorterUnavailableError(RuntimeError):
    """The preset's sorter cannot run here (no GPU, or a package is missing)."""


class SortingFailedError(RuntimeError):
    """The sorter ran and crashed."""


def resolve_sorter_preset(preset: Mapping | str) -> Mapping:
    """A preset given by name (a key of SORTER_PRESETS) or as the dict itself."""
    if isinstance(preset, str):
        if preset not in SORTER_PRESETS:
            raise ValueError(f"unknown sorter preset {preset!r}; known: {sorted(SORTER_PRESETS)}")
        return SORTER_PRESETS[preset]
    return preset


def sorter_problems(preset: Mapping | str) -> list[str]:
    """Why the preset cannot run on this machine; empty when it can."""
    preset = resolve_sorter_preset(preset)
    name = preset["sorter_name"]
    problems = [
        f"{name} needs the Python package {pkg!r}, which is not installed (pip install {pkg})"
        for pkg in preset.get("requires_packages", [])
        if not _package_installed(pkg)
    ]
    if preset.get("requires_gpu") and not _cuda_available():
        problems.append(f"{name} needs a CUDA GPU, and torch.cuda.is_available() is False on this machine")
    if not problems and name not in ss.installed_sorters():
        problems.append(f"SpikeInterface does not list {name} among its installed sorters {ss.installed_sorters()}")
    return problems


def run_sorter(
    recording: BaseRecording,
    preset: Mapping | str,
    output_folder: Path,
    *,
    n_jobs: int | None = None,
    source: BaseRecording | None = None,
) -> BaseSorting:
    """Sort `recording` into `output_folder` (replaced if present) and return the sorting, held in memory.

    Raises SorterUnavailableError before starting when the sorter cannot run here, SortingFailedError
    when it crashes (the sorter's log stays in output_folder). With n_jobs, BLAS/OpenMP threads are capped
    at n_jobs too, so a worker uses the cores it was given and no more. source: the lazy recording that
    `recording` holds in memory (`preprocessing.held_in_memory`); its JSON replaces the in-process handle
    that SpikeInterface dumped into output_folder, so the folder says how to rebuild the sorter's input.
    """
    preset = resolve_sorter_preset(preset)
    problems = sorter_problems(preset)
    if problems:
        raise SorterUnavailableError("; ".join(problems))
    params = dict(preset.get("params", {}))
    if n_jobs is not None:
        params["job_kwargs"] = {**params.get("job_kwargs", {}), "n_jobs": n_jobs}
    name = preset["sorter_name"]
    try:
        with threadpool_limits(limits=n_jobs):
            sorting = ss.run_sorter(
                name, recording, folder=str(output_folder), remove_existing_folder=True, verbose=False, **params
            )
    except Exception as err:  # sorters raise anything; report which one, where its log is, and why
        raise SortingFailedError(
            f"{name} failed on {recording.get_num_channels()} channels ({err}); see {output_folder}"
        ) from err
    finally:
        if source is not None:
            _record_source(Path(output_folder), source)
    return NumpySorting.from_sorting(sorting)


def _record_source(output_folder: Path, source: BaseRecording) -> None:
    handle = output_folder / "spikeinterface_recording.pickle"
    if handle.exists():
        source.dump_to_json(output_folder / "spikeinterface_recording.json")
        handle.unlink()


def _package_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _cuda_available() -> bool:
    if not _package_installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()
