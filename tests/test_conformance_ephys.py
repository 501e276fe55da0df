"""Allen's Neuropixels conformance vectors (../shared/allen-vectors) through brainobs's adapters, compared
with the vectors README's rule under each case's tolerances."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from brainobs.conformance_ephys import ADAPTERS
from brainobs.populate.ephys import allen_metrics


def _vectors() -> Path:
    """$BRAINOBS_ALLEN_VECTORS, else the nearest shared/allen-vectors above the repository."""
    if os.environ.get("BRAINOBS_ALLEN_VECTORS"):
        return Path(os.environ["BRAINOBS_ALLEN_VECTORS"])
    here = Path(__file__).resolve()
    found = [p / "shared" / "allen-vectors" for p in here.parents if (p / "shared" / "allen-vectors").is_dir()]
    return found[0] if found else here.parents[2] / "shared" / "allen-vectors"


VECTORS = _vectors()
CASES = sorted(p.with_suffix("") for a in ADAPTERS for p in VECTORS.glob(f"{a}__*.json"))


def load_case(stem: Path) -> tuple[dict, dict, dict]:
    meta = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz")) as z:
        inputs = {k[3:]: z[k] for k in z.files if k.startswith("in_")}
        outputs = {k[4:]: z[k] for k in z.files if k.startswith("out_")}
    return meta, inputs, outputs


def mismatch(a, b, tolerance: dict) -> str | None:
    """None when `a` matches the stored `b` (README: shapes, NaN positions, |a - b| <= atol + rtol |b|)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    if tolerance.get("exact") or b.dtype.kind in "biuU":
        return None if np.array_equal(a, b, equal_nan=b.dtype.kind == "f") else f"{a} != {b}"
    na, nb = np.isnan(a), np.isnan(b)
    if (na != nb).any():
        return f"NaN positions differ: {np.flatnonzero(na != nb)}"
    diff = np.abs(a[~na] - b[~nb])
    bad = diff > tolerance["atol"] + tolerance["rtol"] * np.abs(b[~nb])
    return f"max abs diff {diff.max():.3g} at {np.flatnonzero(bad)}" if bad.any() else None


def test_vectors_present():
    assert {c.name.split("__")[0] for c in CASES} == set(ADAPTERS), f"no Neuropixels vectors in {VECTORS}"


@pytest.mark.parametrize("stem", CASES, ids=lambda p: p.name)
def test_case_matches_allen(stem: Path):
    meta, inputs, expected = load_case(stem)
    got = ADAPTERS[meta["algorithm"]](meta, inputs)
    assert set(got) >= set(expected), f"outputs not computed: {sorted(set(expected) - set(got))}"
    failures = {name: mismatch(got[name], b, meta["tolerances"][name]) for name, b in expected.items()}
    assert not {k: v for k, v in failures.items() if v}, failures


def test_spike_at_time_zero_is_outside_the_epoch():
    """Allen's epoch (0, inf) drops a spike at exactly t = 0: adding one changes no metric."""
    meta, inputs, _ = load_case(VECTORS / "quality_metrics__8units_64ch")
    args = [inputs[k] for k in ("spike_times", "spike_clusters", "spike_templates", "amplitudes", "pc_features",
                                "pc_feature_ind")]  # fmt: skip
    before = allen_metrics.quality_metrics(*args)
    with_zero = [np.concatenate(([0.0], args[0]))] + [np.concatenate((a[:1], a)) for a in args[1:5]] + [args[5]]
    after = allen_metrics.quality_metrics(*with_zero)
    np.testing.assert_allclose(after.to_numpy(float), before.to_numpy(float), rtol=1e-9, equal_nan=True)
