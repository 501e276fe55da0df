"""Spike sorting through SpikeInterface's run_sorter, with presets as data and clear failures."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import spikeinterface.sorters as ss
from spikeinterface.core import BaseRecording, BaseSorting, NumpySorting
from threadpoolctl import threadpool_limits

from brainobs.populate.ephys.presets import SORTER_PRESETS

# sorter parameter -> the value that skips the sorter's internal filter (SpikeInterface's lupin, tridesclous2,
# spykingcircus2, simple; kilosort4)
SORTER_PREPROCESSING_OFF = {"apply_preprocessing": False, "skip_kilosort_preprocessing": True}
# what a sorter reading brainobs's held, whitened traces turns off, where it has the switch: its filtering, its
# whitening (spykingcircus2 whitens even without its filtering) and its own in-memory copy (spykingcircus2)
HELD_INPUT_PARAMS = {
    "apply_preprocessing": False,
    "apply_whitening": False,
    "cache_preprocessing": {"mode": "no-cache"},
}
# module globals in which SpikeInterface keeps a worker's context after a pass run in the calling process
# (n_jobs=1): lupin's split step leaves its cached traces, features and peaks in itersplit_tools._ctx
WORKER_CONTEXTS = (("spikeinterface.sortingcomponents.clustering.itersplit_tools", "_ctx"),)
JOBS_ENV = "BRAINOBS_EPHYS_JOBS"  # cores one SpikeSorting / UnitMetrics job uses (default 1)


def sorting_jobs() -> int:
    """The cores a spike-sorting job uses: BRAINOBS_EPHYS_JOBS when set, else 1 (a worker per core)."""
    value = os.environ.get(JOBS_ENV, "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{JOBS_ENV}={value!r}: give a whole number of cores, at least 1")
    return int(value)


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


def shares_traces(preset: Mapping | str) -> bool:
    """True when the preset's sorter reads brainobs's traces, whitened (`preprocessing.held_for_sorter`, with the
    preset's `shared_whitening_radius_um`), with its own filtering off, instead of the raw ones."""
    return "shared_whitening_radius_um" in resolve_sorter_preset(preset)


def run_sorter(
    recording: BaseRecording,
    preset: Mapping | str,
    output_folder: Path,
    *,
    n_jobs: int | None = None,
    preprocessed: bool = False,
) -> BaseSorting:
    """Sort `recording` into `output_folder` (replaced if present) and return the sorting, held in memory.

    Raises SorterUnavailableError before starting when the sorter cannot run here, SortingFailedError
    when it crashes (the sorter's log stays in output_folder). With n_jobs, BLAS/OpenMP threads are capped
    at n_jobs too, so a worker uses the cores it was given and no more. `recording` is the raw one
    (`preprocessing.sorter_input`): a preset that turns the sorter's own filtering off is refused (ValueError).
    With preprocessed=True it is a shared preset's whitened traces (`preprocessing.held_for_sorter`), and the
    sorter's own filtering, whitening and cache are turned off (HELD_INPUT_PARAMS, those the sorter has).
    The sorter runs in this process (its imports and compiled kernels serve the waveform passes after it),
    with the objects alive before it frozen out of the garbage collector's passes (a worker holds four times
    the objects of a bare SpikeInterface process: collections took 3.4 s of a 33 s lupin run, 2.7 s frozen);
    when it returns, the memory it held is handed back (`release_sorter_memory`).
    """
    preset = resolve_sorter_preset(preset)
    name = preset["sorter_name"]
    skipped = own_preprocessing_off(preset)
    if skipped:
        raise ValueError(
            f"sorter preset for {name} sets {skipped}: the sorter reads the raw recording and must filter it itself"
        )
    problems = sorter_problems(preset)
    if problems:
        raise SorterUnavailableError("; ".join(problems))
    params = dict(preset.get("params", {}))
    if preprocessed:
        if not shares_traces(preset):
            raise ValueError(f"sorter preset for {name} filters the raw traces itself")
        defaults = ss.get_default_sorter_params(name)
        params.update({switch: value for switch, value in HELD_INPUT_PARAMS.items() if switch in defaults})
    if n_jobs is not None:
        params["job_kwargs"] = {**params.get("job_kwargs", {}), "n_jobs": n_jobs}
    gc.freeze()  # the worker's own objects (DataJoint, torch, ...) are left out of the collections run during it
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
        gc.unfreeze()
        release_sorter_memory()
    return NumpySorting.from_sorting(sorting)


def release_sorter_memory() -> None:
    """Hand back what a sorter held once it has returned: SpikeInterface's worker contexts left in module
    globals (`WORKER_CONTEXTS`; lupin's shared-memory copy of its whitened traces stays mapped through one) are
    emptied, unreachable objects collected and, with glibc, freed heap pages returned to the system
    (malloc_trim), so the waveform passes after the sorter do not add their memory to the sorter's."""
    for module_name, attribute in WORKER_CONTEXTS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(getattr(module, attribute, None), dict):
            setattr(module, attribute, {})
    gc.collect()
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator returns memory its own way
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def own_preprocessing_off(preset: Mapping | str) -> dict:
    """The preset's parameters that would turn off the sorter's own filtering; empty when it filters."""
    params = resolve_sorter_preset(preset).get("params", {})
    return {name: params[name] for name, off in SORTER_PREPROCESSING_OFF.items() if params.get(name, not off) == off}


def _package_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _cuda_available() -> bool:
    if not _package_installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()
