"""`brainobs conformance`: the runner's comparison rules, the shipped copy of Allen's vectors, and every
case of ../shared/allen-vectors passing through brainobs's own functions."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from brainobs import conformance
from brainobs.cli import app
from brainobs.conformance import Case, compare, find_cases, load_adapters, run, run_case
from tests.conftest import REPO

ALGORITHMS = (
    "dff",
    "neuropil",
    "demix",
    "roi_postprocess",
    "events",
    "decay_lookup",
    "quality_metrics",
    "waveform_metrics",
)


def shared_vectors() -> Path:
    """../shared/allen-vectors beside the repository (BRAINOBS_ALLEN_VECTORS overrides, e.g. in a worktree)."""
    folder = Path(os.environ.get("BRAINOBS_ALLEN_VECTORS", REPO.parent / "shared" / "allen-vectors"))
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{folder} is missing; CI must check out shared/ beside the repository")
        pytest.skip(f"{folder} is absent (no shared/ beside the repository; set BRAINOBS_ALLEN_VECTORS)")
    return folder


def cases_of(algorithm: str) -> list[Case]:
    return [case for case in find_cases([shared_vectors()]) if case.algorithm == algorithm]


def test_the_shipped_vectors_equal_the_shared_ones_byte_for_byte():
    shared = shared_vectors()
    shipped = conformance.VECTORS_DIR
    assert sorted(p.name for p in shipped.iterdir() if p.is_file()) == sorted(p.name for p in shared.iterdir())
    for path in shared.iterdir():
        assert (shipped / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_case_of_each_algorithm_passes(algorithm):
    cases = cases_of(algorithm)
    assert cases, f"no {algorithm} case in {shared_vectors()}"
    adapters = load_adapters()
    failures = [check for case in cases for check in run_case(case, adapters) if not check.passed]
    assert not failures, "\n".join(f"{c.case} {c.output}: {c.detail}" for c in failures)


def test_every_case_of_the_shared_vectors_passes():
    checks = run([shared_vectors()])
    failures = [check for check in checks if not check.passed]
    assert not failures, "\n".join(f"{c.algorithm}__{c.case} {c.output}: {c.detail}" for c in failures)


def test_the_command_runs_the_shipped_vectors_by_default_and_exits_1_on_failure(tmp_path):
    shared = shared_vectors()
    for stem in ("dff__31hz_20000", "dff__error_window_too_long", "neuropil__3rois_no_fill_odd_length"):
        for suffix in (".json", ".npz"):
            shutil.copy(shared / f"{stem}{suffix}", tmp_path / f"{stem}{suffix}")
    result = CliRunner().invoke(app, ["conformance", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "3 of 3 cases pass" in result.output and "sigma_dff" in result.output
    sidecar = json.loads((tmp_path / "dff__31hz_20000.json").read_text())
    sidecar["algorithm"] = "unknown_stage"
    (tmp_path / "unknown_stage__x.json").write_text(json.dumps(sidecar))
    shutil.copy(tmp_path / "dff__31hz_20000.npz", tmp_path / "unknown_stage__x.npz")
    result = CliRunner().invoke(app, ["conformance", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "3 of 4 cases pass" in result.output and "no adapter for algorithm 'unknown_stage'" in result.output
    assert find_cases([]) == [] and len(find_cases([conformance.VECTORS_DIR])) == len(find_cases([shared]))


def test_a_missing_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["conformance", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such folder" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["conformance", str(tmp_path)])
    assert result.exit_code == 2 and "holds no" in " ".join(result.output.split())


FLOAT = {"atol": 1e-12, "rtol": 1e-9}


@pytest.mark.parametrize(
    ("actual", "expected", "tolerance", "passed"),
    [
        ([1.0, np.nan], [1.0 + 1e-10, np.nan], FLOAT, True),
        ([1.0, np.nan], [1.0 + 1e-8, np.nan], FLOAT, False),  # beyond rtol
        ([1.0, 2.0], [1.0, np.nan], FLOAT, False),  # NaN positions differ
        ([1.0, 2.0], [1.0, 2.0, 3.0], FLOAT, False),  # shapes differ
        ([0.0], [1e-13], FLOAT, True),  # atol near zero
        ([1.0 + 1e-15], [1.0], {"atol": 0.0, "rtol": 0.0, "exact": True}, False),
        ([3, 4], np.array([3, 4], dtype=np.int64), {"atol": 0.0, "rtol": 0.0}, True),
        ([3, 5], np.array([3, 4], dtype=np.int64), {"atol": 1.0, "rtol": 0.0}, False),  # ints are exact
        ([True, False], np.array([True, True]), {"atol": 0.0, "rtol": 0.0}, False),
        (np.array(["a"]), np.array(["a"]), {"atol": 0.0, "rtol": 0.0}, True),
        (np.array(["a"]), np.array(["b"]), {"atol": 0.0, "rtol": 0.0}, False),
    ],
)
def test_comparison_follows_the_readme_rule(actual, expected, tolerance, passed):
    assert compare(np.asarray(actual), np.asarray(expected), tolerance)[0] is passed


def _case(expect_error: bool = False) -> Case:
    sidecar = {"algorithm": "toy", "case": "c", "scalars": {}, "tolerances": {"y": FLOAT}}
    if expect_error:
        sidecar["expect_error"] = {"type": "ValueError", "reason": "bad"}
        sidecar["tolerances"] = {}
    outputs = {} if expect_error else {"y": np.array([2.0])}
    return Case("toy", "c", Path("toy__c.json"), sidecar, {"x": np.array([1.0])}, outputs)


def test_expected_errors_need_a_value_error_with_a_message():
    def refuses(sidecar, inputs):
        raise ValueError("x is bad")

    def silent(sidecar, inputs):
        raise ValueError()

    def accepts(sidecar, inputs):
        return {"y": inputs["x"] * 2}

    assert run_case(_case(True), {"toy": refuses})[0].passed
    assert not run_case(_case(True), {"toy": silent})[0].passed
    assert not run_case(_case(True), {"toy": accepts})[0].passed
    assert run_case(_case(), {"toy": accepts})[0].passed


def test_a_failing_adapter_or_a_missing_output_fails_the_case_without_stopping_the_run():
    def crashes(sidecar, inputs):
        raise RuntimeError("boom")

    checks = run_case(_case(), {"toy": crashes})
    assert not checks[0].passed and "RuntimeError: boom" in checks[0].detail
    checks = run_case(_case(), {"toy": lambda sidecar, inputs: {}})
    assert not checks[0].passed and "no such output" in checks[0].detail


def test_every_algorithm_has_exactly_one_adapter(tmp_path, monkeypatch):
    assert set(load_adapters()) == set(ALGORITHMS)
    (tmp_path / "second_dff_adapter.py").write_text("ADAPTERS = {'dff': print}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(conformance.ConformanceError, match="'dff' has adapters in two modules"):
        load_adapters(["brainobs.conformance_ophys", "second_dff_adapter"])
