"""Release folders: DANDI layout, offline `dandi validate`, manifest, changelog, reuse across tags."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from brainobs.export.release import ReleaseError, ReleaseItem, build_release
from brainobs.export.validation import dandi_validate
from brainobs.export.writer import WriteResult, export_ecephys_session, export_ophys_experiment, file_sha256
from tests.test_export_bundles import make_ecephys_bundle, make_ophys_bundle

QC = pd.DataFrame({"ophys_experiment_id": [951980471], "check": ["motion"], "outcome": ["PASS"]})


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, WriteResult]:
    folder = tmp_path_factory.mktemp("exported")
    return {
        "ophys": export_ophys_experiment(make_ophys_bundle(), folder / "ophys_951980471.nwb"),
        "ecephys": export_ecephys_session(make_ecephys_bundle(), folder / "ecephys_1055240613.nwb"),
    }


def _items(exported: dict[str, WriteResult]) -> list[ReleaseItem]:
    ophys, ecephys = exported["ophys"], exported["ecephys"]
    return [
        ReleaseItem(ophys.path, "409296", "951410079", ophys.source_sha256, "ophys", label="951980471"),
        ReleaseItem(ecephys.path, "550324", "1055240613", ecephys.source_sha256, "ecephys"),
    ]


@contextlib.contextmanager
def no_network():
    """Every attempt to open a network connection fails, so what runs inside must be offline."""
    real_connect = socket.socket.connect

    def refuse(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network access attempted: {address}")
        return real_connect(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        yield


@pytest.fixture(scope="module")
def release(tmp_path_factory, exported):
    """Tag v1.0.0 of both files, built (and dandi-validated) with the network cut off."""
    out_dir = tmp_path_factory.mktemp("releases")
    with no_network():
        return build_release("v1.0.0", out_dir, _items(exported), "brainobs test survey", QC, "First release.")


def test_release_layout(release) -> None:
    folder = release.folder
    assert folder.name == "v1.0.0"
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == [
        "CHANGELOG.md",
        "dandiset.yaml",
        "manifest.csv",
        "manifest.json",
        "qc_summary.csv",
        "sub-409296/sub-409296_ses-951410079_desc-951980471_ophys.nwb",
        "sub-550324/sub-550324_ses-1055240613_ecephys.nwb",
    ]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["v1.0.0"]  # no staging left behind
    manifest = json.loads((folder / "manifest.json").read_text())
    for row in manifest["files"]:
        assert row["sha256"] == file_sha256(folder / row["path"])
        assert row["size"] == (folder / row["path"]).stat().st_size
    assert pd.read_csv(folder / "manifest.csv")["sha256"].tolist() == [r["sha256"] for r in manifest["files"]]
    assert pd.read_csv(folder / "qc_summary.csv").equals(QC)
    assert yaml.safe_load((folder / "dandiset.yaml").read_text())["version"] == "v1.0.0"
    assert "## v1.0.0" in (folder / "CHANGELOG.md").read_text()


def test_dandi_validate_passes_offline(release) -> None:
    report = release.validation
    print(report.summary())
    assert report.passed and report.files_checked == 2, report.summary()
    assert not report.findings  # not even a hint
    with no_network():
        again = dandi_validate(release.folder)
    assert again.passed and again.files_checked == 2


def test_dandi_validate_command_passes(release) -> None:
    """The `dandi validate` command itself, in a network namespace without network where one can be made."""
    dandi = Path(sys.executable).with_name("dandi")
    offline = (
        ["unshare", "-rn"] if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0 else []
    )
    done = subprocess.run([*offline, str(dandi), "validate", str(release.folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No errors found" in done.stdout


def test_modality_names_match_dandi_organize(exported) -> None:
    """The modality in each name is the one `dandi organize` derives from the file's neurodata types, an Allen
    extension type counting as its NWB core base type (dandi maps no extension: it would name an ecephys file,
    whose probes and electrode groups are Allen's EcephysProbe and EcephysElectrodeGroup, with no modality)."""
    import pynwb
    from dandi.pynwb_utils import get_neurodata_types, get_neurodata_types_to_modalities_map

    from brainobs.export.allen_types import load

    load()
    modality_of = get_neurodata_types_to_modalities_map()

    def modality(name: str) -> str | None:
        if name in modality_of:
            return modality_of[name]
        catalog = pynwb.get_type_map().namespace_catalog
        namespace = next(
            (n for n in catalog.namespaces if name in catalog.get_namespace(n).get_registered_types()), None
        )
        if namespace is None:
            return None
        ancestors = catalog.get_hierarchy(namespace, name)
        return next((modality_of[a] for a in ancestors if a in modality_of), None)

    for item in _items(exported):
        types = {entry.split()[0] for entry in get_neurodata_types(item.path)}
        modalities = {modality(t) for t in types} - {None, "base", "device", "file", "misc"}
        assert "+".join(sorted(modalities)) == item.modality


def test_second_tag_reuses_unchanged_files(tmp_path: Path, exported) -> None:
    items = _items(exported)
    first = build_release("v1", tmp_path, items, "survey", {"experiments_passed": 1}, "First.", validate=False)
    assert (first.written, first.reused) == (2, 0)
    # the ophys experiment is re-processed: a new bundle, a new file; the ecephys session is unchanged
    changed = export_ophys_experiment(make_ophys_bundle(seed=5), tmp_path / "reprocessed.nwb")
    items[0] = dataclasses.replace(items[0], path=changed.path, source_sha256=changed.source_sha256)
    second = build_release("v2", tmp_path, items, "survey", {"experiments_passed": 1}, "Re-processed ophys.")
    assert second.validation.passed, second.validation.summary()
    assert (second.written, second.reused) == (1, 1)
    unchanged = "sub-550324/sub-550324_ses-1055240613_ecephys.nwb"
    assert os.path.samefile(tmp_path / "v1" / unchanged, tmp_path / "v2" / unchanged)  # not rewritten
    ophys = "sub-409296/sub-409296_ses-951410079_desc-951980471_ophys.nwb"
    assert not os.path.samefile(tmp_path / "v1" / ophys, tmp_path / "v2" / ophys)
    rows = {r["path"]: r for r in json.loads((tmp_path / "v2" / "manifest.json").read_text())["files"]}
    assert rows[unchanged]["reused_from"] == "v1" and rows[ophys]["reused_from"] == ""
    assert rows[ophys]["sha256"] == changed.sha256
    changelog = (tmp_path / "v2" / "CHANGELOG.md").read_text()
    assert changelog.index("## v2") < changelog.index("## v1") and "Re-processed ophys." in changelog
    # a third tag with nothing re-processed writes nothing
    third = build_release("v3", tmp_path, items, "survey", {"experiments_passed": 1}, "Metadata only.", validate=False)
    assert (third.written, third.reused) == (0, 2)
    assert [r.reused_from for r in third.files] == ["v2", "v2"]


def test_release_refusals(tmp_path: Path, exported) -> None:
    items = _items(exported)
    build_release("v1", tmp_path, items, "survey", {}, "First.", validate=False)
    with pytest.raises(FileExistsError, match="never rebuilt"):
        build_release("v1", tmp_path, items, "survey", {}, "Again.", validate=False)
    with pytest.raises(ReleaseError, match="both map to"):
        build_release("v2", tmp_path, [items[0], dataclasses.replace(items[0], source_sha256="x")], "s", {}, "e")
    with pytest.raises(ReleaseError, match="tag"):
        build_release("../v3", tmp_path, items, "survey", {}, "Bad tag.")
    with pytest.raises(ReleaseError, match="modality"):
        build_release("v3", tmp_path, [dataclasses.replace(items[1], modality="Ecephys")], "s", {}, "e")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]


def test_failing_dandi_validation_leaves_no_tag(tmp_path: Path, exported) -> None:
    """A folder dandi rejects (here: a truncated NWB file) is removed and no tag appears."""
    truncated = tmp_path / "exports" / "truncated.nwb"
    truncated.parent.mkdir()
    truncated.write_bytes(exported["ecephys"].path.read_bytes()[:100_000])
    items = [dataclasses.replace(_items(exported)[1], path=truncated)]
    with pytest.raises(ReleaseError, match="fails dandi validate"):
        build_release("v1", tmp_path / "releases", items, "survey", {}, "First.")
    assert list((tmp_path / "releases").iterdir()) == []


def _dead_owner() -> str:
    """The owner name of a process of this host that has exited (as a killed release or export leaves)."""
    from brainobs.partials import HOST

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{HOST}-{int(child.stdout)}"


def test_recorded_size_and_sha256_are_checked_before_release(tmp_path: Path, exported) -> None:
    item = _items(exported)[0]
    copy = tmp_path / "exports" / "experiment.nwb"
    copy.parent.mkdir()
    data = bytearray(item.path.read_bytes())
    copy.write_bytes(data)
    good = dataclasses.replace(item, path=copy, size=len(data), sha256=file_sha256(copy))
    data[len(data) // 2] ^= 0xFF  # same size, one byte altered
    copy.write_bytes(data)
    with pytest.raises(ReleaseError, match=f"{copy}: sha256 differs from the one recorded"):
        build_release("v1", tmp_path / "releases", [good], "survey", {}, "First.", validate=False)
    copy.write_bytes(data[:-10])
    with pytest.raises(ReleaseError, match=f"{copy}: {len(data) - 10} bytes, {len(data)} recorded"):
        build_release("v1", tmp_path / "releases", [good], "survey", {}, "First.", validate=False)
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == []


def test_next_release_removes_what_a_killed_release_left(tmp_path: Path, exported) -> None:
    from brainobs.partials import HOST

    staging = tmp_path / ".staging"
    dead = _dead_owner()
    (staging / "v0" / "sub-1").mkdir(parents=True)
    (staging / "v0" / "sub-1" / ".sub-1_ophys.nwb.partial").write_bytes(b"half a copy")
    (staging / f"v0.owner-{dead}").touch()
    (staging / "v9").mkdir()  # another host's run: it may still be alive, so it is left alone
    (staging / "v9.owner-elsewhere-1").touch()
    (staging / "v5").mkdir()
    (staging / f"v5.owner-{HOST}-{os.getpid()}").touch()  # a live run building v5
    with pytest.raises(ReleaseError, match="release v5 is being built by"):
        build_release("v5", tmp_path, _items(exported), "survey", {}, "Busy.", validate=False)
    build_release("v1", tmp_path, _items(exported), "survey", {}, "First.", validate=False)
    assert sorted(p.name for p in staging.iterdir()) == [
        "v5",
        f"v5.owner-{HOST}-{os.getpid()}",
        "v9",
        "v9.owner-elsewhere-1",
    ]
    assert (tmp_path / "v1" / "manifest.json").is_file()


def test_an_altered_file_of_an_earlier_tag_is_not_reused(tmp_path: Path, exported) -> None:
    items = [
        dataclasses.replace(item, size=item.path.stat().st_size, sha256=file_sha256(item.path))
        for item in _items(exported)
    ]
    first = build_release("v1", tmp_path, items, "survey", {}, "First.", validate=False)
    damaged = first.folder / first.files[0].path
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    staged = tmp_path / "staged.nwb"
    staged.write_bytes(bytes(data))
    os.replace(staged, damaged)  # a new inode: the exported file it was linked from stays intact
    second = build_release("v2", tmp_path, items, "survey", {}, "Second.", validate=False)
    assert [f.reused_from for f in second.files] == ["", "v1"]
    assert second.files[0].sha256 == first.files[0].sha256 == file_sha256(second.folder / second.files[0].path)
