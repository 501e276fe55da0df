"""A second seed of the tiny survey (seed 0: test_pipeline_tables.py) through the pipeline and a release.

Its ecephys session is ingested without its behavior folder and its probe without a targeted_structure or a
registration in its probe file:
the session must still get session QC and be released, and its units must not all count as outside the brain.
A behavior-only session (reading the first ophys session's behavior folder) is added: it is released alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import warnings

import pytest
import yaml

pytestmark = [pytest.mark.db, pytest.mark.slow]
SEED = 7
BEHAVIOR_ONLY = 300001


@pytest.fixture(scope="module")
def seeded(database, settings, test_home):
    """Tiny survey seed 7, its ecephys session stripped of behavior and probe target, processed and released."""
    from brainobs.ingest.manifest import load_manifest
    from brainobs.ingest.synthetic import generate_survey
    from brainobs.pipeline import populate_all
    from brainobs.publish import publish
    from brainobs.schemas import activate
    from brainobs.schemas.loading import insert_manifest
    from brainobs.schemas.subject import Subject

    root = test_home / f"tiny-seed{SEED}"
    generate_survey(root, preset="tiny", seed=SEED)
    manifest = yaml.safe_load((root / "manifest.yaml").read_text())
    for session in manifest["sessions"]:
        if session["modality"] == "ecephys":
            session["behavior_dir"] = ""
    for probe in manifest["probe_insertions"]:
        probe["targeted_structure"] = ""
        _unregister(root / probe["probe_file"])
    first = manifest["sessions"][0]  # a behavior-only session, reading the first ophys session's behavior folder
    manifest["sessions"].append({**first, "session_id": BEHAVIOR_ONLY, "modality": "behavior"})
    (root / "stripped.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    seeded_settings = dataclasses.replace(settings, data_root=root)
    activate(seeded_settings)
    try:
        Subject.delete(prompt=False)
        insert_manifest(load_manifest(root / "stripped.yaml", root))
        results = populate_all(seeded_settings)
        failures = {name: r["error_list"] for name, r in results.items() if r["error_list"]}
        assert not failures, failures
        yield publish(f"seed{SEED}", test_home / "releases-seed", settings=seeded_settings), seeded_settings
    finally:
        Subject.delete(prompt=False)
        activate(settings)


def _unregister(probe_file):
    """Drop the synthetic probe file's CCF registration (its contact annotations)."""
    document = json.loads(probe_file.read_text())
    for probe in document["probes"]:
        probe.pop("contact_annotations", None)
    probe_file.write_text(json.dumps(document))


def test_every_clean_item_is_released(seeded):
    from brainobs.publish import release_summary
    from brainobs.schemas.qc import QC

    summary = release_summary(f"seed{SEED}")
    assert sorted(summary["item"]) == ["900001", "900002", "900003", "behavior", "session"]
    assert (summary["status"] == "released").all(), summary.to_string()
    assert len(seeded[0].files) == 5
    behavior = [f.path for f in seeded[0].files if f.session_id == str(BEHAVIOR_ONLY)]
    assert behavior == [f"sub-M0001/sub-M0001_ses-{BEHAVIOR_ONLY}_behavior.nwb"]
    # the ROI-level findings are there, as counts that did not gate
    counts = (QC.Check & {"check_name": "negative_transient_rois"}).to_dicts()
    assert len(counts) == 3 and all(c["outcome"] == "PASS" and c["threshold"] is None for c in counts)
    # z-drift is measured on the registered movies and passes on clean data
    drift = (QC.Check & {"check_name": "z_drift"}).to_dicts()
    assert len(drift) == 3 and all(c["outcome"] == "PASS" and abs(c["value"]) < 0.05 for c in drift), drift


def test_ecephys_without_behavior_gets_session_qc_from_its_probes(seeded):
    from brainobs.schemas.acquisition import Session
    from brainobs.schemas.qc import SessionQC

    session = (Session & {"modality": "ecephys"}).proj().fetch1()
    checks = {c["check_name"]: c for c in (SessionQC.Check & session).to_dicts()}
    assert checks["dropped_frames_fraction"]["outcome"] == "NOT_SET"
    assert checks["dropped_frames_fraction"]["reason"].startswith("not evaluated: no display frames")
    assert checks["unit_count:probeA"]["outcome"] == "PASS" and checks["unit_count:probeA"]["value"] > 0
    assert len(SessionQC.Probe & session) == 1
    dead = checks["dead_channels:probeA"]  # every channel of the synthetic probe carries signal
    assert (dead["outcome"], dead["value"]) == ("PASS", 0.0) and "0 of 16 channels dead" in dead["reason"]


def test_units_of_a_probe_without_target_are_not_all_outside_the_brain(seeded):
    from brainobs import api

    with pytest.warns(UserWarning, match="probeA of session 200001 has no targeted_structure"):
        units = api.units()
    assert len(units) > 0 and units["in_brain"].all()
    with pytest.warns(UserWarning, match="no targeted_structure"):
        behavior = api.units(preset="visual_behavior")
    # the preset drops noise clusters, and nothing for lack of a target (how many are noise varies by sorting)
    assert len(behavior) > 0 and len(behavior) == (units["quality"] == "good").sum()


def test_api_warns_when_qc_withholds_an_experiment(seeded):
    from brainobs import api
    from brainobs.schemas.qc import QC, QCOverride

    key = QC.proj().to_dicts(order_by="experiment_id")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.dff_traces(key["experiment_id"])  # released: no warning
    table = api.ophys_experiments().set_index("experiment_id")
    assert table["released"].all() and (table["withheld_reason"] == "").all()
    QCOverride.insert1({**key, "outcome": "FAIL", "reviewer": "jdoe", "reason": "z-drift seen by eye"})
    try:
        with pytest.warns(UserWarning, match="withheld from release: .*reviewer jdoe set FAIL: z-drift seen by eye"):
            api.events(key["experiment_id"])
        table = api.ophys_experiments().set_index("experiment_id")
        withheld = table.loc[key["experiment_id"]]
        assert not withheld["released"] and "reviewer jdoe set FAIL: z-drift seen by eye" in withheld["withheld_reason"]
        assert table.drop(index=key["experiment_id"])["released"].all()
    finally:
        (QCOverride & key).delete(prompt=False)


def test_a_public_release_leaves_embargoed_sessions_out_and_a_team_release_keeps_them(seeded, test_home):
    from brainobs.publish import publish, release_summary
    from brainobs.schemas.acquisition import Session

    _, seeded_settings = seeded
    key = (Session & {"session_id": 100002}).proj().fetch1()
    stored = (Session & key).fetch1("embargo_end")
    until = dt.date.today() + dt.timedelta(days=30)
    Session.update1({**key, "embargo_end": until})
    try:
        public = publish("public", test_home / "releases-embargo", settings=seeded_settings)
        summary = release_summary("public").set_index("item")
        assert summary.loc["900002", "status"] == "withheld" and summary.loc["900002", "check"] == "embargo"
        assert f"embargoed until {until.isoformat()}" in summary.loc["900002", "reason"]
        assert (summary.drop(index="900002")["status"] == "released").all()
        dandiset = yaml.safe_load((public.folder / "dandiset.yaml").read_text())
        assert dandiset["access"] == [{"status": "dandi:OpenAccess"}]
        team = publish("team", test_home / "releases-embargo", settings=seeded_settings, include_embargoed=True)
        assert (release_summary("team")["status"] == "released").all()
        dandiset = yaml.safe_load((team.folder / "dandiset.yaml").read_text())
        assert dandiset["access"] == [{"status": "dandi:EmbargoedAccess"}]
        assert "team release" in (team.folder / "CHANGELOG.md").read_text()
    finally:
        Session.update1({**key, "embargo_end": stored})


def test_placeholder_metadata_warns_and_a_configuration_fills_dandiset_yaml(seeded, test_home, tmp_path):
    from brainobs.export.release_config import load_release_config
    from brainobs.publish import publish

    _, seeded_settings = seeded
    with pytest.warns(UserWarning, match="leaves dandiset_id, name, description"):
        publish("placeholders", test_home / "releases-config", settings=seeded_settings)
    config = tmp_path / "release.yaml"
    config.write_text(
        "dandiset_id: 'DANDI:000123'\nname: Synthetic survey\ndescription: brainobs synthetic data\n"
        "contributors: [{name: 'Doe, Jane', roles: [dcite:ContactPerson]}]\nexperimenters: ['Doe, Jane']\n"
        "institution: Example Institute\nlab: Example Lab\nkeywords: [synthetic]\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = publish(
            "configured",
            test_home / "releases-config",
            settings=seeded_settings,
            config=load_release_config(config),
        )
    assert not [w for w in caught if "release configuration" in str(w.message)]
    dandiset = yaml.safe_load((result.folder / "dandiset.yaml").read_text())
    assert dandiset["identifier"] == "DANDI:000123" and dandiset["name"] == "Synthetic survey configured"
    assert dandiset["contributor"] == [{"name": "Doe, Jane", "roleName": ["dcite:ContactPerson"]}]
    assert dandiset["lab"] == "Example Lab" and dandiset["keywords"] == ["synthetic"]


def test_a_behavior_only_session_gets_session_qc_with_licks(seeded):
    from brainobs.schemas.qc import SessionQC

    checks = {c["check_name"]: c for c in (SessionQC.Check & {"session_id": BEHAVIOR_ONLY}).to_dicts()}
    assert set(checks) == {"dropped_frames_fraction", "lick_count"}
    assert checks["lick_count"]["outcome"] == "PASS" and checks["lick_count"]["value"] > 0


def test_failed_cell_matching_gives_container_qc_fail_with_the_reason(seeded, monkeypatch):
    """Runs last: it replaces the container's matching by a failed one."""
    from brainobs.populate.matching import RegistrationError
    from brainobs.publish import publish, release_summary
    from brainobs.schemas import matching
    from brainobs.schemas.qc import ContainerQC

    def unrelated(*_args, **_kwargs):
        raise RegistrationError("registration of experiment 900002 onto experiment 900001 failed: best SSIM 0.05")

    _, seeded_settings = seeded
    monkeypatch.setattr("brainobs.populate.matching.summary.match_container", unrelated)
    matching.CellMatching.delete(prompt=False)
    matching.CellMatching.populate()
    ContainerQC.populate()
    assert matching.CellMatching.fetch1("outcome", "failure") == (
        "failed",
        "registration of experiment 900002 onto experiment 900001 failed: best SSIM 0.05",
    )
    checks = {c["check_name"]: c for c in ContainerQC.Check.to_dicts()}
    assert ContainerQC.fetch1("outcome") == "FAIL" and checks["cell_matching"]["outcome"] == "FAIL"
    assert "best SSIM 0.05" in checks["cell_matching"]["reason"]
    publish("unmatched", seeded_settings.home / "releases-unmatched", settings=seeded_settings)
    summary = release_summary("unmatched").set_index("item")
    for experiment in ("900001", "900002", "900003"):
        assert summary.loc[experiment, "status"] == "withheld"
        assert summary.loc[experiment, "check"] == "cell_matching"
        assert "cell matching failed: registration of experiment 900002" in summary.loc[experiment, "reason"]
    assert summary.loc["session", "status"] == "released"
