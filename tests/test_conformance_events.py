"""Event detection and the decay-time lookup against Allen's outputs, beyond the tolerances that
tests/test_conformance.py checks for every case: event frames exactly, and clear refusals."""

import numpy as np
import pytest

from brainobs.conformance import find_cases
from brainobs.conformance_events import ADAPTERS
from brainobs.populate.ophys.events import default_noise_multiplier
from tests.test_conformance import shared_vectors


def event_cases():
    return [case for case in find_cases([shared_vectors()]) if case.algorithm == "events"]


def test_event_frames_and_noise_multiplier_are_allens_exactly():
    cases = event_cases()
    assert len(cases) >= 3
    for case in cases:
        got = ADAPTERS["events"](case.sidecar, case.inputs)
        np.testing.assert_array_equal(got["events"] != 0, case.outputs["events"] != 0, err_msg=case.name)
        scalars = case.sidecar["scalars"]
        assert default_noise_multiplier(scalars["frame_rate_hz"]) == scalars["noise_multiplier"], case.name


def test_unknown_genotype_is_refused_by_name():
    case = event_cases()[0]
    sidecar = {
        **case.sidecar,
        "scalars": {**case.sidecar["scalars"], "full_genotype": "Foo-Cre/wt", "decay_time_s": None},
    }
    with pytest.raises(ValueError, match="'Foo-Cre/wt' is not in Allen's decay-time table"):
        ADAPTERS["events"](sidecar, case.inputs)
