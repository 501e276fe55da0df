"""The worker recipes (docker compose, SLURM, Kubernetes) run a `brainobs worker` command that the CLI accepts."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess

import pytest
import typer
import yaml

from brainobs.cli import app
from tests.conftest import REPO

SBATCH = REPO / "deploy" / "slurm" / "brainobs-worker.sbatch"
K8S = REPO / "deploy" / "k8s" / "worker-job.yaml"


def parse_worker_command(argv: list[str]) -> dict:
    """The options `brainobs worker` would run with; raises a usage error for ones it does not know."""
    assert argv[:2] == ["brainobs", "worker"], argv
    group = typer.main.get_command(app)
    worker = group.get_command(group.context_class(group), "worker")
    return worker.make_context("worker", list(argv[2:])).params


def test_parse_worker_command_rejects_unknown_options():
    assert parse_worker_command(["brainobs", "worker", "--max-idle", "60"])["max_idle"] == 60
    with pytest.raises(Exception, match="No such option: --max-idel"):
        parse_worker_command(["brainobs", "worker", "--max-idel", "60"])


def test_compose_worker_command():
    worker = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["worker"]
    params = parse_worker_command(worker["command"])
    assert params["max_idle"] > 0
    grace = re.fullmatch(r"(\d+)m", worker["stop_grace_period"])
    assert grace and int(grace[1]) >= 1, "SIGTERM needs time to finish the job in hand"


def sbatch_options(text: str) -> dict[str, str]:
    """The #SBATCH options, which SLURM reads only before the first command."""
    options = {}
    for line in text.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            name, _, value = line.removeprefix("#SBATCH ").strip().partition("=")
            options[name] = value
    return options


def test_sbatch_resources_and_signal():
    options = sbatch_options(SBATCH.read_text())
    assert re.fullmatch(r"0-\d+", options["--array"])
    assert int(options["--cpus-per-task"]) >= 1 and options["--mem"].endswith("G")
    assert re.fullmatch(r"\d+:\d\d:\d\d", options["--time"])
    assert options["--signal"].startswith("B:TERM@"), "SIGTERM to the batch shell, which execs the worker"
    assert "%a" in options["--output"] and "--requeue" in options


def test_sbatch_script_runs_the_worker(tmp_path):
    """Run the script with a stand-in `brainobs` that records its arguments."""
    record = tmp_path / "argv"
    fake = tmp_path / "bin" / "brainobs"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{fake.parent}:{os.environ['PATH']}", "SLURM_CPUS_PER_TASK": "4", "BRAINOBS_MAX_IDLE": "900"}
    done = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    params = parse_worker_command(["brainobs", *record.read_text().splitlines()])
    assert params["max_idle"] == 900


def test_kubernetes_indexed_job_reads_the_database_url_from_its_secret():
    documents = list(yaml.safe_load_all(K8S.read_text()))
    secret = next(d for d in documents if d["kind"] == "Secret")
    job = next(d for d in documents if d["kind"] == "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] >= 2
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60 and pod["restartPolicy"] in ("OnFailure", "Never")
    (container,) = pod["containers"]
    assert parse_worker_command(container["command"])["max_idle"] > 0
    env = {item["name"]: item for item in container["env"]}
    reference = env["BRAINOBS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert reference["name"] == secret["metadata"]["name"]
    assert secret["stringData"][reference["key"]].startswith(("postgresql://", "mysql://"))
    assert "value" not in env["BRAINOBS_DATABASE_URL"], "the URL (with its password) belongs in the Secret"
    for name in ("BRAINOBS_STORE_URL", "BRAINOBS_DATA_ROOT", "BRAINOBS_SCHEMA_PREFIX", "BRAINOBS_OPHYS_PARAMSET"):
        assert name in env
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert container["image"] == compose["services"]["worker"]["image"]


def test_readme_documents_every_recipe():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Running workers", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "docker compose up --scale worker=",
        "deploy/slurm/brainobs-worker.sbatch",
        "deploy/k8s/worker-job.yaml",
        "brainobs populate --workers",
        "brainobs jobs refresh",
        "orphan_timeout_s",
    ):
        assert needle in section, needle


def test_sbatch_commands_group_tables_by_resources():
    from brainobs.worker.queue import sbatch_commands

    class MotionCorrection:
        worker_resources = {"cpus": 8, "mem_gb": 32, "hours": 8}

    class Segmentation:
        worker_resources = {"cpus": 8, "mem_gb": 32, "hours": 8}

    class DeltaFOverF:
        pass

    commands = sbatch_commands([MotionCorrection, Segmentation, DeltaFOverF], workers=4)
    assert len(commands) == 2
    heavy, light = (shlex.split(c) for c in commands)
    assert heavy[0] == "sbatch" and heavy[-1] == "deploy/slurm/brainobs-worker.sbatch"
    assert {"--array=0-3", "--cpus-per-task=8", "--mem=32G", "--time=8:00:00"} <= set(heavy)
    assert "--export=ALL,BRAINOBS_WORKER_TABLES=MotionCorrection,Segmentation" in heavy
    assert "--cpus-per-task=2" in light and "--export=ALL,BRAINOBS_WORKER_TABLES=DeltaFOverF" in light
    submitted = sbatch_options("#!/bin/sh\n" + "\n".join(f"#SBATCH {o}" for o in heavy[1:-1]))
    assert submitted["--mem"] == "32G"
