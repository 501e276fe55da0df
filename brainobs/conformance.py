"""``brainobs conformance``: run Allen's conformance vectors through brainobs and compare every output.

A case is two files with one stem, ``<algorithm>__<case>.json`` (the sidecar: scalars, shapes, tolerances,
optional ``expect_error``) and ``<algorithm>__<case>.npz`` (``in_<name>`` inputs, ``out_<name>`` Allen's
outputs); the format is described in ``allen_vectors/README.md``. Each algorithm has an adapter:

    adapter(sidecar: dict, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]

taking the sidecar and the inputs without their ``in_`` prefix and returning brainobs's outputs without the
``out_`` prefix, computed by the same core functions the pipeline tables call. Adapter modules expose
``ADAPTERS: dict[str, adapter]``; the runner merges those of `ADAPTER_MODULES`.

Comparison (README rule): equal shapes and identical NaN positions, then ``|a - b| <= atol + rtol * |b|``
elsewhere; ``exact`` tolerances and integer, bool and string outputs must be equal. An ``expect_error`` case
passes when the adapter raises a ValueError (or subclass) with a message. A case whose algorithm has no
adapter, a missing output or an adapter that fails counts as failed.
"""

from __future__ import annotations

import importlib
import json
import math
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Adapter = Callable[[dict, dict[str, np.ndarray]], dict[str, np.ndarray]]

ADAPTER_MODULES = ("brainobs.conformance_ophys", "brainobs.conformance_events", "brainobs.conformance_ephys")
VECTORS_DIR = Path(__file__).parent / "allen_vectors"
# Outputs an adapter may leave out because they are information only, per algorithm (none today: every
# stored output is computed and compared).
INFORMATIONAL_OUTPUTS: dict[str, frozenset[str]] = {}
_SEPARATOR = "__"


class ConformanceError(ValueError):
    """A vector folder or case file that cannot be read; the message names the path and the problem."""


@dataclass(frozen=True)
class Case:
    """One conformance case: its sidecar, its inputs and Allen's outputs (names without prefix)."""

    algorithm: str
    name: str
    path: Path
    sidecar: dict[str, Any]
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    @property
    def expect_error(self) -> dict[str, Any] | None:
        return self.sidecar.get("expect_error")


@dataclass(frozen=True)
class Check:
    """The verdict on one output of one case (``output`` is ``-`` for whole-case verdicts)."""

    algorithm: str
    case: str
    output: str
    passed: bool
    max_abs_diff: float = math.nan
    max_rel_diff: float = math.nan
    detail: str = ""


def load_case(json_path: Path) -> Case:
    """Read ``<algorithm>__<case>.json`` and the ``.npz`` beside it."""
    json_path = Path(json_path)
    stem = json_path.name.removesuffix(".json")
    if _SEPARATOR not in stem:
        raise ConformanceError(f"{json_path}: the name must be <algorithm>__<case>.json")
    algorithm, name = stem.split(_SEPARATOR, 1)
    try:
        sidecar = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConformanceError(f"{json_path}: not a readable JSON sidecar: {err}") from err
    named = sidecar.get("algorithm") if isinstance(sidecar, dict) else None
    if named != algorithm:
        raise ConformanceError(f"{json_path}: the sidecar's 'algorithm' ({named!r}) does not match the file name")
    npz_path = json_path.with_suffix(".npz")
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as err:
        raise ConformanceError(f"{npz_path}: not a readable .npz archive: {err}") from err
    inputs = {key[3:]: value for key, value in arrays.items() if key.startswith("in_")}
    outputs = {key[4:]: value for key, value in arrays.items() if key.startswith("out_")}
    tolerances = sidecar.get("tolerances", {})
    untolerated = sorted(set(outputs) - set(tolerances))
    if untolerated:
        raise ConformanceError(f"{json_path}: outputs {untolerated} have no entry in 'tolerances'")
    return Case(algorithm, name, json_path, sidecar, inputs, outputs)


def find_cases(folders: Sequence[Path]) -> list[Case]:
    """Every case in ``folders`` (sorted by file name within each folder)."""
    cases = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ConformanceError(f"{folder}: no such folder of conformance vectors")
        sidecars = sorted(folder.glob(f"*{_SEPARATOR}*.json"))
        if not sidecars:
            raise ConformanceError(f"{folder}: holds no <algorithm>__<case>.json conformance cases")
        cases.extend(load_case(path) for path in sidecars)
    return cases


def load_adapters(modules: Iterable[str] = ADAPTER_MODULES) -> dict[str, Adapter]:
    """The merged ``ADAPTERS`` of the adapter modules; an algorithm may have one adapter only."""
    adapters: dict[str, Adapter] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for algorithm, adapter in module.ADAPTERS.items():
            if algorithm in adapters:
                raise ConformanceError(f"algorithm {algorithm!r} has adapters in two modules (one is {module_name})")
            adapters[algorithm] = adapter
    return adapters


def compare(actual: Any, expected: np.ndarray, tolerance: dict[str, Any]) -> tuple[bool, float, float, str]:
    """(passed, max abs diff, max rel diff, detail) of ``actual`` against Allen's ``expected``."""
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return False, math.nan, math.nan, f"shape {actual.shape}, expected {expected.shape}"
    if expected.dtype.kind == "U" or actual.dtype.kind == "U":
        equal = np.array_equal(actual, expected)
        return equal, math.nan, math.nan, "" if equal else "strings differ"
    if actual.dtype.kind not in "biuf" or expected.dtype.kind not in "biuf":
        return False, math.nan, math.nan, f"dtype {actual.dtype} cannot be compared with {expected.dtype}"
    a = actual.astype(np.float64)
    b = expected.astype(np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    both = ~nan_a & ~nan_b
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(a[both] == b[both], 0.0, np.abs(a[both] - b[both]))
        magnitude = np.abs(b[both])
        rel = np.divide(diff, magnitude, out=np.full(diff.shape, np.inf), where=magnitude > 0)
        rel[diff == 0] = 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    if not np.array_equal(nan_a, nan_b):
        return False, max_abs, max_rel, f"NaN at {int((nan_a != nan_b).sum())} positions where Allen's differ"
    if tolerance.get("exact") or expected.dtype.kind in "biu":
        equal = bool((diff == 0).all())
        return equal, max_abs, max_rel, "" if equal else f"{int((diff != 0).sum())} values differ (exact)"
    limit = float(tolerance["atol"]) + float(tolerance["rtol"]) * magnitude
    within = diff <= limit
    ok = bool(within.all())
    return ok, max_abs, max_rel, "" if ok else f"{int((~within).sum())} values beyond atol+rtol*|allen|"


def run_case(case: Case, adapters: dict[str, Adapter]) -> list[Check]:
    """Run one case through its adapter and check every stored output."""
    head = (case.algorithm, case.name)
    adapter = adapters.get(case.algorithm)
    if adapter is None:
        return [Check(*head, "-", False, detail=f"brainobs has no adapter for algorithm {case.algorithm!r}")]
    inputs = {key: value.copy() for key, value in case.inputs.items()}
    if case.expect_error:
        try:
            adapter(case.sidecar, inputs)
        except ValueError as err:
            ok = bool(str(err).strip())
            detail = f"{type(err).__name__}: {err}" if ok else f"{type(err).__name__} without a message"
            return [Check(*head, "error", ok, detail=detail)]
        except Exception as err:  # noqa: BLE001 - any other failure is reported, not raised
            return [Check(*head, "error", False, detail=f"expected ValueError, got {type(err).__name__}: {err}")]
        return [Check(*head, "error", False, detail="expected a ValueError; brainobs returned outputs")]
    try:
        produced = adapter(case.sidecar, inputs)
    except Exception as err:  # noqa: BLE001 - a failing adapter is a failed case, and the run goes on
        last = traceback.extract_tb(err.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        return [Check(*head, "-", False, detail=f"{type(err).__name__}: {err} ({where})")]
    optional = INFORMATIONAL_OUTPUTS.get(case.algorithm, frozenset())
    checks = []
    for output, expected in case.outputs.items():
        if output not in produced:
            if output in optional:
                checks.append(Check(*head, output, True, detail="informational output, not computed"))
            else:
                checks.append(Check(*head, output, False, detail="brainobs returned no such output"))
            continue
        ok, max_abs, max_rel, detail = compare(produced[output], expected, case.sidecar["tolerances"][output])
        checks.append(Check(*head, output, ok, max_abs, max_rel, detail))
    return checks


def run(folders: Sequence[Path] | None = None, adapters: dict[str, Adapter] | None = None) -> list[Check]:
    """Checks of every case in ``folders`` (default: the vectors shipped with brainobs)."""
    cases = find_cases(list(folders) if folders else [VECTORS_DIR])
    adapters = load_adapters() if adapters is None else adapters
    return [check for case in cases for check in run_case(case, adapters)]
