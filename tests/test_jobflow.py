"""jobflow Makers with real LAMMPS: outputs equal the campaign layer's (optional extra; never skipped in CI)."""

from __future__ import annotations

import json

import pytest

from nanoto_driver.campaign import open_campaign

from .conftest import half_failing_sweep, need, results

pytestmark = pytest.mark.lammps


@pytest.fixture(scope="module")
def jobflow():
    return need("jobflow")


def memory_store():
    from jobflow import JobStore
    from maggma.stores import MemoryStore

    return JobStore(MemoryStore())


def test_two_design_flow_equals_the_campaign_results(jobflow, smoke, tmp_path):
    from nanoto_driver.design_document import DesignDocument, file_sha256
    from nanoto_driver.jobflow_makers import NanotoDesignMaker

    campaign = open_campaign(smoke)
    expected = results(smoke)
    designs = campaign.designs[:2]
    jobs = [NanotoDesignMaker(name=f"smoke {d.index}", config=campaign.config(d.index).model_dump(mode="json"))
            .make() for d in designs]
    store = memory_store()
    responses = jobflow.run_locally(jobflow.Flow(jobs), store=store, create_folders=True, root_dir=tmp_path,
                                    ensure_success=True, log=False)
    for made, d in zip(jobs, designs, strict=True):
        doc = responses[made.uuid][1].output
        assert isinstance(doc, DesignDocument)
        assert (doc.k_sym_ev_per_a2, doc.final_occupancy_sha256) == expected[d.id]
        assert doc.config_sha256 == json.loads(d.summary_path.read_text())["config_sha256"]
        assert doc.run_file_sha256 == file_sha256(tmp_path / doc.run_file)
        assert doc.provenance["mpi_ranks"] == 1 and doc.provenance["potential_sha256"]
    with store:  # the store holds JSON: the document round-trips through it
        stored = store.query_one({"uuid": jobs[0].uuid})
    assert DesignDocument.model_validate(
        {k: v for k, v in stored["output"].items() if not k.startswith("@")}) == responses[jobs[0].uuid][1].output


def test_sweep_flow_runs_the_campaign_task_and_collects_after_a_failure(jobflow, smoke, tmp_path):
    from nanoto_driver.dataset import read_table
    from nanoto_driver.jobflow_makers import NanotoSweepMaker

    root = tmp_path / "campaign"
    flow = NanotoSweepMaker().make(half_failing_sweep(tmp_path), root)
    assert [j.name for j in flow.jobs] == ["nanoto smoke 0", "nanoto smoke 1", "nanoto smoke dataset"]
    responses = jobflow.run_locally(flow, store=memory_store(), log=False)
    good, bad, collect = flow.jobs
    assert bad.uuid not in responses  # failed: no response recorded
    doc = responses[good.uuid][1].output
    design = open_campaign(root).design(0)
    assert design.id in results(smoke)  # the same config as smoke design 0: the same design id
    assert (doc.k_sym_ev_per_a2, doc.final_occupancy_sha256) == results(smoke)[design.id]
    task = json.loads(open_campaign(root).design(1).task_path.read_text())
    assert task["state"] == "failed" and "no_such_potential.eam.fs' not found" in task["error"]
    report = responses[collect.uuid][1].output
    assert report["n_written"] == 1 and [s["index"] for s in report["skipped"]] == [1]
    assert list(read_table(root / "dataset.h5")["design_id"]) == [design.id]

    mtime = design.run_path.stat().st_mtime_ns  # running the flow again does not redo the finished design
    again = NanotoSweepMaker().make(half_failing_sweep(tmp_path), root)
    responses = jobflow.run_locally(again, store=memory_store(), log=False)
    assert responses[again.jobs[0].uuid][1].output.run_file_sha256 == doc.run_file_sha256
    assert design.run_path.stat().st_mtime_ns == mtime
