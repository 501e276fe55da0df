"""`brainobs demo`, as a user runs it on a fresh home: it releases every experiment and session of its survey."""

import csv
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
