"""Allen's own outputs for event detection and the decay-time lookup (../shared/allen-vectors)."""

import json
from pathlib import Path

import numpy as np
import pytest

from brainobs.conformance_events import ADAPTERS
from brainobs.populate.ophys.events import default_noise_multiplier

ROOT = Path(__file__).resolve().parents[1]
# the shared vectors sit beside the repository (../shared) or beside a worktree folder (../../shared)
VECTORS = next(
    (p for p in (ROOT.parent / "shared" / "allen-vectors", ROOT.parents[1] / "shared" / "allen-vectors") if p.is_dir()),
    ROOT.parent / "shared" / "allen-vectors",
)
STEMS = sorted(p.with_suffix("") for a in ADAPTERS for p in VECTORS.glob(f"{a}__*.json"))


def load_case(stem: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    meta = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz")) as z:
        inputs = {k[3:]: z[k] for k in z.files if k.startswith("in_")}
        outputs = {k[4:]: z[k] for k in z.files if k.startswith("out_")}
    return meta, inputs, outputs


def mismatch(mine: np.ndarray, allen: np.ndarray, tol: dict) -> str:
    """Empty when ``mine`` matches ``allen`` under the README's rule, else what differs."""
    mine, allen = np.asarray(mine), np.asarray(allen)
    if mine.shape != allen.shape:
        return f"shape {mine.shape} != {allen.shape}"
    if tol.get("exact") or allen.dtype.kind in "biuU":
        return "" if np.array_equal(mine, allen, equal_nan=allen.dtype.kind == "f") else "not equal"
    nan_mine, nan_allen = np.isnan(mine), np.isnan(allen)
    if (nan_mine != nan_allen).any():
        return f"NaN at {np.flatnonzero(nan_mine != nan_allen)[:5]}"
    diff = np.abs(mine[~nan_mine] - allen[~nan_allen])
    bad = diff > tol["atol"] + tol["rtol"] * np.abs(allen[~nan_allen])
    return f"{bad.sum()} values off, max abs diff {diff.max():.3g}" if bad.any() else ""


@pytest.mark.skipif(not STEMS, reason=f"no conformance vectors in {VECTORS}")
@pytest.mark.parametrize("stem", STEMS, ids=lambda s: s.name)
def test_case_matches_allen(stem):
    meta, inputs, expected = load_case(stem)
    got = ADAPTERS[meta["algorithm"]](meta, inputs)
    assert set(got) == set(expected)
    problems = {name: mismatch(got[name], expected[name], meta["tolerances"][name]) for name in expected}
    assert not any(problems.values()), problems
    if meta["algorithm"] == "events":  # event frames exactly, not only within the magnitude tolerance
        np.testing.assert_array_equal(got["events"] != 0, expected["events"] != 0)
        assert default_noise_multiplier(meta["scalars"]["frame_rate_hz"]) == meta["scalars"]["noise_multiplier"]


def test_vectors_are_present():
    assert len(STEMS) >= 4, f"expected the events and decay_lookup vectors in {VECTORS}"


def test_unknown_genotype_is_refused_by_name():
    meta, inputs, _ = load_case(next(s for s in STEMS if s.name.startswith("events__")))
    meta = {**meta, "scalars": {**meta["scalars"], "full_genotype": "Foo-Cre/wt", "decay_time_s": None}}
    with pytest.raises(ValueError, match="'Foo-Cre/wt' is not in Allen's decay-time table"):
        ADAPTERS["events"](meta, inputs)
