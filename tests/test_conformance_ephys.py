"""Allen's quality metrics beyond the per-case tolerances that tests/test_conformance.py checks."""

import numpy as np

from brainobs.conformance import find_cases
from brainobs.populate.ephys import allen_metrics
from tests.test_conformance import shared_vectors


def test_spike_at_time_zero_is_outside_the_epoch():
    """Allen's epoch (0, inf) drops a spike at exactly t = 0: adding one changes no metric."""
    case = next(c for c in find_cases([shared_vectors()]) if c.algorithm == "quality_metrics")
    names = ("spike_times", "spike_clusters", "spike_templates", "amplitudes", "pc_features", "pc_feature_ind")
    args = [case.inputs[k] for k in names]
    before = allen_metrics.quality_metrics(*args)
    with_zero = [np.concatenate(([0.0], args[0]))] + [np.concatenate((a[:1], a)) for a in args[1:5]] + [args[5]]
    after = allen_metrics.quality_metrics(*with_zero)
    np.testing.assert_allclose(after.to_numpy(float), before.to_numpy(float), rtol=1e-9, equal_nan=True)
