"""`brainobs demo`, as a user runs it on a fresh home: it releases every experiment and session of its survey."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BRAINOBS = Path(sys.executable).with_name("brainobs")
SEEDS = (0, 1)


def _demo_env(home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BRAINOBS_")}
    return {**env, "BRAINOBS_HOME": str(home), "BRAINOBS_DATABASE_URL": "embedded"}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> dict[int, tuple[Path, subprocess.CompletedProcess]]:
    """`brainobs demo --seed N` for each seed, each in its own home, the two at once (each uses about one core)."""
    homes = {seed: tmp_path_factory.mktemp(f"demo-seed{seed}") / "home" for seed in SEEDS}
    runs = {
        seed: subprocess.Popen(
            [str(BRAINOBS), "demo", "--seed", str(seed)],
            env=_demo_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed, home in homes.items()
    }
    done = {}
    try:
        for seed, run in runs.items():
            stdout, stderr = run.communicate(timeout=1200)
            done[seed] = (homes[seed], subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr))
    finally:
        for seed, run in runs.items():
            run.kill() if run.poll() is None else None
            subprocess.run([str(BRAINOBS), "db", "stop"], env=_demo_env(homes[seed]), capture_output=True, timeout=120)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_the_demo_releases_every_experiment_and_session_of_its_survey(demos, seed):
    home, run = demos[seed]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data_root = home / ("demo-data" if seed == 0 else f"demo-data-seed{seed}")
    manifest = yaml.safe_load((data_root / "manifest.yaml").read_text())
    experiments = {str(experiment["experiment_id"]) for experiment in manifest["experiments"]}
    ecephys = {str(s["session_id"]) for s in manifest["sessions"] if s.get("modality") == "ecephys"}
    planes = [e for e in manifest["experiments"] if e.get("plane_group") is not None]
    assert len(experiments) == 7 and len(planes) == 4 and len(ecephys) == 1  # 3 single-plane, 4 mesoscope planes
    with open(home / "releases" / "demo" / "qc_summary.csv", newline="") as summary:
        rows = list(csv.DictReader(summary))
    released = {row["item"] if row["item"] != "session" else row["session_id"] for row in rows}
    assert all(row["status"] == "released" for row in rows), rows
    assert released == experiments | ecephys
    assert "0 withheld" in run.stdout


def test_one_home_holds_one_demo_survey(tmp_path):
    from brainobs.demo import DemoSeedError, _claim_seed
    from brainobs.settings import Settings

    settings = Settings(home=tmp_path)
    _claim_seed(settings, 0)
    _claim_seed(settings, 0)
    with pytest.raises(DemoSeedError, match="holds the demo survey of seed 0, not 3"):
        _claim_seed(settings, 3)
    _claim_seed(Settings(home=tmp_path, schema_prefix="bo_other_"), 3)


OVERRIDE = """
import json
from brainobs.schemas import activate
from brainobs.schemas.qc import QC, QCOverride
from brainobs.settings import Settings

activate(Settings.load())
residual = QC.Check & {"check_name": "residual_crosstalk"}
print(json.dumps({r["experiment_id"]: [r["value"], r["outcome"]] for r in residual.to_dicts()}))
QCOverride.insert1({"subject_id": "M0002", "session_id": 100004, "experiment_id": 900005,
                    "ophys_paramset": "allen_short_movies", "qc_paramset": "default", "outcome": "FAIL",
                    "reviewer": "test", "reason": "a withheld mesoscope plane"})
"""


@pytest.mark.slow
def test_a_mesoscope_session_with_a_withheld_plane_releases_its_other_planes(demos, tmp_path):
    home, run = demos[0]
    assert run.returncode == 0, run.stderr[-3000:]
    env = {**_demo_env(home), "BRAINOBS_DATA_ROOT": str(home / "demo-data"),
           "BRAINOBS_OPHYS_PARAMSET": "allen_short_movies"}  # fmt: skip
    try:
        override = subprocess.run([sys.executable, "-c", OVERRIDE], env=env, capture_output=True, text=True)
        assert override.returncode == 0, override.stderr[-3000:]
        residual = {int(k): v for k, v in json.loads(override.stdout.strip().splitlines()[-1]).items()}
        release = subprocess.run([str(BRAINOBS), "release", "planes", "--out", str(tmp_path)], env=env,
                                 capture_output=True, text=True)  # fmt: skip
        page = subprocess.run([str(BRAINOBS), "report", "900005", "--out", str(tmp_path / "plane.html")], env=env,
                              capture_output=True, text=True)  # fmt: skip
    finally:
        subprocess.run([str(BRAINOBS), "db", "stop"], env=env, capture_output=True, timeout=120)
    assert release.returncode == 0, release.stdout[-3000:] + release.stderr[-3000:]
    with open(tmp_path / "planes" / "qc_summary.csv", newline="") as summary:
        rows = {row["item"]: row for row in csv.DictReader(summary) if row["session_id"] == "100004"}
    assert {item: row["status"] for item, row in rows.items()} == {
        "900004": "released", "900005": "withheld", "900006": "released", "900007": "released"
    }  # fmt: skip
    assert rows["900005"]["check"] == "override" and "a withheld mesoscope plane" in rows["900005"]["reason"]
    assert len(list((tmp_path / "planes").rglob("*ses-100004*.nwb"))) == 3
    # mesoscope planes measure what decrosstalk left (clean pairs: well inside the warning limit); single planes 0
    assert all(0 < residual[e][0] < 0.1 and residual[e][1] == "PASS" for e in (900004, 900005, 900006, 900007))
    assert all(residual[e] == [0.0, "PASS"] for e in (900001, 900002, 900003))
    assert page.returncode == 0, page.stdout[-3000:] + page.stderr[-3000:]
    html = (tmp_path / "plane.html").read_text()
    assert "a withheld mesoscope plane" in html and "FAIL" in html
