"""FireWorks export: lpad add accepts the file; an in-process mongomock LaunchPad runs it with real LAMMPS.

Optional extra (skipped on a laptop without FireWorks, never in CI).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nanoto_driver.campaign import open_campaign
from nanoto_driver.potential import resolve_path

from .conftest import half_failing_sweep, need, results, run_cli

pytestmark = pytest.mark.lammps


@pytest.fixture(scope="module")
def fireworks():
    return need("fireworks")


@pytest.fixture
def launchpad(fireworks, monkeypatch):
    """A LaunchPad on mongomock's in-memory MongoClient, inside this process."""
    need("mongomock")
    import fireworks.core.launchpad as launchpad_module
    import mongomock.gridfs

    monkeypatch.setattr(launchpad_module, "MongoClient", mongomock.MongoClient)
    mongomock.gridfs.enable_gridfs_integration()
    pad = fireworks.LaunchPad(name="nanoto_test")
    pad.reset("", require_password=False)
    return pad


def planned(tmp_path: Path) -> tuple[Path, Path]:
    root, wf = tmp_path / "campaign", tmp_path / "wf.yaml"
    assert run_cli("campaign", "plan", str(half_failing_sweep(tmp_path)), "-o", str(root)).returncode == 0
    proc = run_cli("campaign", "export", str(root), "--fireworks", str(wf))
    assert proc.returncode == 0, proc.stderr
    return root, wf


def test_written_yaml_round_trips_and_lpad_add_accepts_it(fireworks, lammps_ok, tmp_path):
    from nanoto_driver.fireworks_export import campaign_workflow

    root, wf = planned(tmp_path)
    loaded = fireworks.Workflow.from_file(str(wf))
    made = campaign_workflow(open_campaign(root))
    assert [fw.name for fw in loaded.fws] == [fw.name for fw in made.fws]
    assert [fw.to_dict()["spec"] for fw in loaded.fws] == [fw.to_dict()["spec"] for fw in made.fws]
    collector = next(fw for fw in loaded.fws if fw.name.endswith("dataset"))
    assert loaded.links[collector.fw_id] == []  # the collector comes last, after both designs
    assert sorted(parent for parent, children in loaded.links.items() if collector.fw_id in children) == sorted(
        fw.fw_id for fw in loaded.fws if fw is not collector)
    assert collector.spec["_allow_fizzled_parents"] is True
    need("mongomock_persistence")  # FireWorks' own mongomock mode, for the real `lpad` command
    store = tmp_path / "launchpad.json"
    store.write_text("{}")
    env = {**os.environ, "MONGOMOCK_SERVERSTORE_FILE": str(store)}
    lpad = [str(Path(sys.executable).parent / "lpad"), "-l", str(tmp_path / "my_launchpad.yaml")]
    (tmp_path / "my_launchpad.yaml").write_text("host: localhost\nport: 27017\nname: nanoto_test\n")
    today = datetime.datetime.now().strftime("%Y-%m-%d")  # lpad's confirmation password for a reset
    proc = subprocess.run([*lpad, "reset", "--password", today], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([*lpad, "add", str(wf)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([*lpad, "get_fws", "-d", "count"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("3"), proc.stdout + proc.stderr


def test_rapidfire_runs_the_campaign_fizzles_the_bad_design_and_reruns_only_it(fireworks, launchpad, smoke,
                                                                              tmp_path):
    from fireworks.core.rocket_launcher import rapidfire

    root, wf = planned(tmp_path)
    ids = launchpad.add_wf(fireworks.Workflow.from_file(str(wf)))
    launches = tmp_path / "launches"
    launches.mkdir()
    rapidfire(launchpad, fireworks.FWorker(), m_dir=str(launches), sleep_time=0)

    def fireworks_by_name() -> dict[str, object]:
        return {fw.name: fw for fw in launchpad.get_wf_by_fw_id(next(iter(ids.values()))).fws}

    fws = fireworks_by_name()
    good, bad, collector = fws["nanoto smoke 0"], fws["nanoto smoke 1"], fws["nanoto smoke dataset"]
    assert (good.state, bad.state, collector.state) == ("COMPLETED", "FIZZLED", "COMPLETED")
    error = bad.launches[-1].action.stored_data["_exception"]["_stacktrace"]
    assert "no_such_potential.eam.fs' not found" in error
    doc = good.launches[-1].action.stored_data["design"]
    campaign = open_campaign(root)
    assert (doc["k_sym_ev_per_a2"], doc["final_occupancy_sha256"]) == results(smoke)[campaign.design(0).id]
    assert collector.launches[-1].action.stored_data["n_written"] == 1

    # fix the input (the missing potential appears), rerun the fizzled design: only it runs again
    shutil.copy(resolve_path("Al_mm.eam.fs", "."), Path(campaign.config(1).base_dir) / "no_such_potential.eam.fs")
    mtime = campaign.design(0).run_path.stat().st_mtime_ns
    launchpad.rerun_fw(bad.fw_id)
    rapidfire(launchpad, fireworks.FWorker(), m_dir=str(launches), sleep_time=0)
    fws = fireworks_by_name()
    assert {name: fw.state for name, fw in fws.items()} == dict.fromkeys(fws, "COMPLETED")
    assert len(fws["nanoto smoke 0"].launches) == 1 and campaign.design(0).run_path.stat().st_mtime_ns == mtime
    assert fws["nanoto smoke dataset"].launches[-1].action.stored_data["n_written"] == 2
    assert json.loads(campaign.design(1).task_path.read_text())["attempts"] == 2
