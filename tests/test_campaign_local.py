"""Campaigns on this machine with real LAMMPS: the local executor, idempotent tasks, status."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import yaml

from nanoto_driver.campaign import open_campaign
from nanoto_driver.campaign_status import campaign_status

from .conftest import ROOT, SMOKE, iterations_done, results, run_cli

pytestmark = pytest.mark.lammps


def test_every_design_finishes_with_its_products(smoke):
    statuses = campaign_status(open_campaign(smoke))
    assert [s.state for s in statuses] == ["done"] * 4
    for d in open_campaign(smoke).designs:
        summary = json.loads(d.summary_path.read_text())
        task = json.loads(d.task_path.read_text())
        assert task["state"] == "done" and task["exit_code"] == 0
        with h5py.File(d.run_path) as f:
            assert f.attrs["status"] in ("converged", "max_iterations")
            assert np.isclose(f["iterations/k_sym_ev_per_a2"][-1], summary["k_sym_ev_per_a2"], rtol=0, atol=0)
        config = open_campaign(smoke).config(d.index)
        assert abs(summary["volume_fraction"] - config.optimizer.volume_fraction) < 0.05


def test_running_a_finished_task_does_no_work(smoke):
    design = open_campaign(smoke).design(0)
    before = {p.name: p.stat().st_mtime_ns for p in design.path.iterdir()}
    t0 = time.perf_counter()
    proc = run_cli("campaign", "task", str(smoke), "0")
    assert proc.returncode == 0 and "nothing to do" in proc.stderr
    proc = run_cli("campaign", "run", str(smoke), "--workers", "2")
    assert proc.returncode == 0 and "0 done, 0 failed, 4 were done already" in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in design.path.iterdir()} == before
    assert time.perf_counter() - t0 < 20


def test_a_failing_design_is_reported_with_its_error(lammps_ok, tmp_path):
    sweep = tmp_path / "fail.yaml"
    tree = yaml.safe_load(SMOKE.read_text())
    tree.update(name="fail", grid={"optimizer.volume_fraction": [0.6]},
                zip={"potential.file": ["Al_mm.eam.fs", "no_such_potential.eam.fs"]})
    sweep.write_text(yaml.safe_dump(tree))
    proc = run_cli("campaign", "plan", str(sweep), "-o", str(tmp_path / "c"))
    assert proc.returncode == 0 and "potential file not found for designs 1" in proc.stderr
    proc = run_cli("campaign", "run", str(tmp_path / "c"), "--workers", "2")
    assert proc.returncode == 1 and "1 done, 1 failed" in proc.stdout
    proc = run_cli("campaign", "status", str(tmp_path / "c"), "--json")
    status = json.loads(proc.stdout)
    assert status["counts"]["done"] == 1 and status["counts"]["failed"] == 1
    failed = status["status"][1]
    assert failed["state"] == "failed" and "no_such_potential.eam.fs' not found" in failed["error"]
    text = run_cli("campaign", "status", str(tmp_path / "c")).stdout
    assert "[    1] failed" in text and "no_such_potential" in text
    proc = run_cli("campaign", "resubmit", str(tmp_path / "c"), "--dry-run",
                   "--profile", str(ROOT / "workflows" / "slurm" / "profiles" / "ci-local.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array=1\n" in proc.stdout and "index=$(( SLURM_ARRAY_TASK_ID + 0 ))" in proc.stdout


def test_interrupted_campaign_resumes_to_the_same_results(smoke, tmp_path):
    root = tmp_path / "smoke"
    assert run_cli("campaign", "plan", str(SMOKE), "-o", str(root)).returncode == 0
    cmd = [sys.executable, "-m", "nanoto_driver", "campaign", "run", str(root), "--workers", "2"]
    # SIGINT at its default in the child: a shell starts background jobs with SIGINT ignored, which
    # the child would inherit (Python then installs no KeyboardInterrupt), so a test suite started
    # with `&` would see the campaign run to its end
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    designs = open_campaign(root).designs
    deadline = time.monotonic() + 120
    # interrupt as soon as a trunk has stored an iteration: designs are then in flight (a
    # fixed delay after the first run file appeared was once longer than the whole campaign)
    while not any(iterations_done(d.run_path) for d in designs[:2]) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    states = {s.index: s.state for s in campaign_status(open_campaign(root))}
    assert "missing" in states.values(), (states, err)  # stopped mid-run, resumable
    interrupted = [d for d in designs if states[d.index] == "missing"]
    for d in interrupted:
        task = json.loads(d.task_path.read_text())
        assert task["state"] == "interrupted" and task["exit_code"] == 128 + signal.SIGTERM
    proc = run_cli("campaign", "run", str(root), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert results(root) == results(smoke)


def test_a_killed_task_is_missing_and_reruns(smoke, tmp_path):
    root = tmp_path / "smoke"
    shutil.copytree(smoke, root)
    design = open_campaign(root).design(2)
    for name in ("summary.json", "task.json"):
        (design.path / name).unlink()
    dead = subprocess.Popen(["true"])
    dead.wait()
    task = {"index": 2, "id": design.id, "state": "running", "host": os.uname().nodename, "pid": dead.pid,
            "slurm_job": None}
    design.task_path.write_text(json.dumps(task))
    assert [s.state for s in campaign_status(open_campaign(root))] == ["done", "done", "missing", "done"]
    proc = run_cli("campaign", "run", str(root), "--workers", "2")
    assert proc.returncode == 0 and "1 done, 0 failed, 3 were done already" in proc.stdout
    assert results(root) == results(smoke)
