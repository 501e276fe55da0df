"""docker-compose.yml cannot run here (no Docker engine), so its structure is checked by parsing it."""

import re

import yaml

from tests.conftest import REPO


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_and_volumes():
    document = compose()
    assert {"db", "mysql", "store", "worker"} <= set(document["services"])
    assert document["services"]["db"]["image"].startswith("postgres:")
    assert document["services"]["mysql"]["image"].startswith("mysql:8")
    assert document["services"]["mysql"]["profiles"] == ["mysql"]
    assert {"pgdata", "mysqldata", "objects"} <= set(document["volumes"])
    for service in ("db", "mysql", "store"):
        for volume in document["services"][service]["volumes"]:
            assert volume.split(":")[0] in document["volumes"]


def test_worker_runs_brainobs_worker_and_scales():
    worker = compose()["services"]["worker"]
    assert worker["command"][:2] == ["brainobs", "worker"]
    assert "container_name" not in worker  # a fixed name would forbid --scale worker=N
    assert not any(str(port).split(":")[0] for port in worker.get("ports", []))
    env = worker["environment"]
    for name in (
        "BRAINOBS_DATABASE_URL",
        "BRAINOBS_STORE_URL",
        "BRAINOBS_DATA_ROOT",
        "BRAINOBS_SCHEMA_PREFIX",
        "BRAINOBS_OPHYS_PARAMSET",
    ):
        assert name in env
    assert env["BRAINOBS_DATABASE_URL"].startswith(("${BRAINOBS_DATABASE_URL:-postgresql://", "postgresql://"))
    assert "@db:5432" in env["BRAINOBS_DATABASE_URL"]
    assert env["BRAINOBS_STORE_URL"].startswith("s3://") and "store:9000" in env["BRAINOBS_STORE_URL"]
    assert worker["depends_on"]["db"]["condition"] == "service_healthy"
    assert (REPO / "Dockerfile").is_file() and worker["build"] == "."


def test_ports_listen_on_loopback_only():
    services = compose()["services"]
    for name in ("db", "mysql", "store"):
        ports = services[name]["ports"]
        assert ports, name
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_passwords_come_from_the_environment_without_defaults():
    text = (REPO / "docker-compose.yml").read_text()
    variables = re.findall(r"\$\{(\w*(?:PASSWORD|SECRET)\w*)(:?[-?])", text)
    assert {name for name, _ in variables} >= {"DB_PASSWORD", "STORE_PASSWORD"}
    for name, operator in variables:
        if name != "DB_ROOT_PASSWORD":  # defaults to DB_PASSWORD, itself required
            assert operator == ":?", f"${{{name}}} has a default"
    environments = [service.get("environment", {}) for service in compose()["services"].values()]
    for environment in [*environments, compose()["x-brainobs-env"]]:
        for key, value in environment.items():
            if re.search("PASSWORD|SECRET", key):
                assert str(value).startswith("${"), f"{key} is written in the file"
