"""`brainobs demo`, as a user runs it on a fresh home: it releases every experiment and session of its survey."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BRAINOBS = Path(sys.executable).with_name("brainobs")


def _demo_env(home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BRAINOBS_")}
    return {**env, "BRAINOBS_HOME": str(home), "BRAINOBS_DATABASE_URL": "embedded"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_the_demo_releases_its_three_experiments_and_its_ecephys_session(tmp_path, seed):
    home = tmp_path / "home"
    env = _demo_env(home)
    try:
        run = subprocess.run(
            [str(BRAINOBS), "demo", "--seed", str(seed)], env=env, capture_output=True, text=True, timeout=900
        )
    finally:
        subprocess.run([str(BRAINOBS), "db", "stop"], env=env, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data_root = home / ("demo-data" if seed == 0 else f"demo-data-seed{seed}")
    manifest = yaml.safe_load((data_root / "manifest.yaml").read_text())
    experiments = {str(experiment["experiment_id"]) for experiment in manifest["experiments"]}
    ecephys = {str(s["session_id"]) for s in manifest["sessions"] if s.get("modality") == "ecephys"}
    assert len(experiments) == 3 and len(ecephys) == 1
    with open(home / "releases" / "demo" / "qc_summary.csv", newline="") as summary:
        rows = list(csv.DictReader(summary))
    released = {row["item"] if row["item"] != "session" else row["session_id"] for row in rows}
    assert all(row["status"] == "released" for row in rows), rows
    assert released == experiments | ecephys
    assert "0 withheld" in run.stdout


def test_one_home_holds_the_demo_of_one_seed(tmp_path):
    from brainobs.demo import DemoSeedError, _claim_seed
    from brainobs.settings import Settings

    settings = Settings(home=tmp_path)
    _claim_seed(settings, 0)
    _claim_seed(settings, 0)
    with pytest.raises(DemoSeedError, match="holds the demo survey of seed 0, not 3"):
        _claim_seed(settings, 3)
    _claim_seed(Settings(home=tmp_path, schema_prefix="bo_other_"), 3)
