"""Every command has help text; the CLI talks to a real database."""

import pytest
from typer.testing import CliRunner

from brainobs.cli import app

runner = CliRunner()
COMMANDS = [
    [],
    ["db"],
    ["db", "start"],
    ["db", "stop"],
    ["db", "status"],
    ["db", "url"],
    ["db", "grant-reader"],
    ["ingest"],
    ["populate"],
    ["status"],
    ["diagram"],
    ["synth"],
    ["demo"],
    ["conformance"],
    ["release"],
    ["report"],
    ["worker"],
    ["jobs"],
    ["jobs", "refresh"],
    ["jobs", "errors"],
    ["jobs", "retry"],
    ["jobs", "ignore"],
    ["jobs", "slurm"],
    ["select", "ophys"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "brainobs")
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert len(result.output.split("Usage", 1)[1].strip().splitlines()) > 2


def _env(settings):
    return {
        "BRAINOBS_DATABASE_URL": settings.database_url,
        "BRAINOBS_HOME": str(settings.home),
        "BRAINOBS_SCHEMA_PREFIX": settings.schema_prefix,
    }


@pytest.mark.db
def test_ingest_status_and_diagram_through_the_cli(db, settings, tmp_path):
    from tests.manifests import make_manifest

    env = {**_env(settings), "BRAINOBS_DATA_ROOT": str(tmp_path)}
    result = runner.invoke(app, ["ingest", str(make_manifest(tmp_path))], env=env)
    assert result.exit_code == 0, result.output
    assert "Subject: 1 new" in result.output
    again = runner.invoke(app, ["ingest", str(make_manifest(tmp_path))], env=env)
    assert "Subject: 0 new, 1 unchanged" in again.output
    bad = runner.invoke(app, ["ingest", str(make_manifest(tmp_path, sessions__0__modality="mri"))], env=env)
    assert bad.exit_code == 1 and "expected one of" in bad.output
    mermaid = runner.invoke(app, ["diagram", "-f", "mermaid"], env=env)
    assert mermaid.exit_code == 0
    for table in ("Subject", "Session", "Container", "Experiment", "ProbeInsertion"):
        assert table in mermaid.output
    assert runner.invoke(app, ["status"], env=env).exit_code == 0


@pytest.mark.db
def test_diagram_as_svg(db, settings, tmp_path):
    import shutil

    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot is missing: `make test` installs it (deploy/system-packages.sh)")
    out = tmp_path / "pipeline.svg"
    result = runner.invoke(app, ["diagram", "-f", "svg", "-o", str(out)], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert out.read_text().lstrip().startswith(("<?xml", "<svg")) and "Experiment" in out.read_text()


@pytest.mark.db
def test_select_ophys_pairs_experiments_with_a_preset_beside_the_default(db, settings, tmp_path):
    from brainobs import api
    from brainobs.schemas import activate
    from brainobs.schemas.ophys import OphysSelection
    from tests.manifests import make_manifest

    try:
        env = {**_env(settings), "BRAINOBS_DATA_ROOT": str(tmp_path)}
        assert runner.invoke(app, ["ingest", str(make_manifest(tmp_path))], env=env).exit_code == 0
        default = settings.ophys_paramset
        assert OphysSelection.to_arrays("ophys_paramset").tolist() == [default]  # new experiments: the default
        unknown = runner.invoke(app, ["select", "ophys", "better"], env=env)
        assert unknown.exit_code == 1 and "not a 2-photon preset" in unknown.output
        missing = runner.invoke(app, ["select", "ophys", "enhanced", "--experiment", "999"], env=env)
        assert missing.exit_code == 1 and "no experiment with id 999" in missing.output
        one = runner.invoke(app, ["select", "ophys", "enhanced", "--experiment", "11"], env=env)
        assert one.exit_code == 0 and "1 experiment(s) newly paired" in one.output, one.output
        again = runner.invoke(app, ["select", "ophys", "enhanced"], env=env)  # every unpaired one: none left
        assert again.exit_code == 0 and "0 experiment(s)" in again.output
        assert sorted(OphysSelection.to_arrays("ophys_paramset").tolist()) == sorted([default, "enhanced"])
        assert OphysSelection & {"experiment_id": 11, "ophys_paramset": "enhanced"}
        api.connect()  # the API takes the parameter set as a restriction: a known set, nothing populated yet
        assert api.roi_masks(11, ophys_paramset="enhanced") == {}
        with pytest.raises(api.NotFoundError, match="better"):
            api.roi_masks(11, ophys_paramset="better")
    finally:  # the CLI activated the schemas with this test's data root: give the session its own back
        activate(settings)
