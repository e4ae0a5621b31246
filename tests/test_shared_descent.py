"""Shared descent: a run seeds the runs of higher target volume fraction, which end as if alone."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from nanoto_driver.config import build_config
from nanoto_driver.shared_descent import Branch, family_key, seed_due, seeded_iterations
from nanoto_driver.update import next_count

from .conftest import SMOKE


def _counts(n0: int, target: int, rate: float, steps: int) -> list[int]:
    out = [n0]
    for _ in range(steps):
        out.append(next_count(out[-1], target, rate))
    return out


@pytest.mark.parametrize("rate", [0.02, 0.05, 0.1])
@pytest.mark.parametrize("n0", [816, 128, 3000])
def test_seed_is_due_exactly_at_the_last_state_the_branch_shares(n0, rate):
    """Brute force: walk trunk and branch count paths; the seed falls on their last common state.

    Common state m: counts equal up to m, and the branch is above its target before m (at its
    target it tests convergence, so its records differ from there on).
    """
    trunk_target = int(0.3 * n0)
    trunk = _counts(n0, trunk_target, rate, 200)
    for n_branch in range(trunk_target + 1, n0 + 5):
        branch = _counts(n0, n_branch, rate, 200)
        common = next(j for j in range(len(trunk)) if trunk[j] != branch[j]) - 1
        m = min(common, branch.index(n_branch))
        due = [k for k in range(len(trunk) - 1) if seed_due(trunk[k], trunk[k + 1], n_branch, rate)]
        assert due == ([m - 1] if m >= 1 else []), (n_branch, m, due)


def _smoke_config(**optimizer):
    tree = yaml.safe_load(SMOKE.read_text())["config"]
    tree["optimizer"] = {**tree["optimizer"], **optimizer}
    return build_config(tree, "smoke")


def test_family_ignores_only_the_target_volume_fraction():
    a = _smoke_config(volume_fraction=0.5)
    assert family_key(a) == family_key(_smoke_config(volume_fraction=0.7))
    assert family_key(a) != family_key(_smoke_config(volume_fraction=0.7, evolution_rate=0.04))


@pytest.mark.lammps
def test_a_seeded_branch_ends_exactly_as_the_run_alone(lammps_ok, tmp_path):
    """Real LAMMPS: trunk V* = 0.5 seeds V* = 0.7; the seeded run equals the independent one bit for bit."""
    from nanoto_driver.rundir import run_in_dir

    trunk, branch = _smoke_config(volume_fraction=0.5), _smoke_config(volume_fraction=0.7)
    run_in_dir(trunk, tmp_path / "trunk", branches=[Branch(tmp_path / "branch", branch)])
    shared = seeded_iterations(tmp_path / "branch" / "run.h5")
    assert shared > 1
    seeded = run_in_dir(branch, tmp_path / "branch", resume=True)
    alone = run_in_dir(branch, tmp_path / "alone")
    assert seeded["shared_iterations"] == shared and alone["shared_iterations"] == 0
    for key in ("k_sym_ev_per_a2", "final_occupancy_sha256", "iterations", "status", "force_evaluations"):
        assert seeded[key] == alone[key], key
    with h5py.File(tmp_path / "branch" / "run.h5") as a, h5py.File(tmp_path / "alone" / "run.h5") as b:
        for column in ("k_sym_ev_per_a2", "n_design_atoms", "occupancy"):
            assert np.array_equal(a[f"iterations/{column}"][:], b[f"iterations/{column}"][:]), column
        assert json.loads(a.attrs["config_json"]) == json.loads(b.attrs["config_json"])
    assert "shared with a run of lower target" in (tmp_path / "branch" / "run.log").read_text()


@pytest.mark.lammps
def test_a_branch_that_started_is_never_overwritten(lammps_ok, tmp_path):
    from nanoto_driver.rundir import run_in_dir

    trunk, branch = _smoke_config(volume_fraction=0.5), _smoke_config(volume_fraction=0.7)
    (tmp_path / "branch").mkdir()
    (tmp_path / "branch" / "run.h5").write_bytes(b"started elsewhere")
    run_in_dir(trunk, tmp_path / "trunk", branches=[Branch(tmp_path / "branch", branch)])
    assert (tmp_path / "branch" / "run.h5").read_bytes() == b"started elsewhere"
    assert [p.name for p in (tmp_path / "branch").iterdir()] == ["run.h5"]  # no seed left behind


def test_descent_order_runs_one_trunk_per_family_first(tmp_path):
    """Lowest target of each family first, then the next of each: no two workers share a descent."""
    from nanoto_driver.campaign import open_campaign, plan
    from nanoto_driver.shared_descent import descent_order
    from nanoto_driver.sweep import load_sweep

    tree = yaml.safe_load(SMOKE.read_text())
    tree["grid"] = {"optimizer.volume_fraction": [0.7, 0.5, 0.6], "filter.shells": [1, 3]}
    sweep_path = tmp_path / "order.yaml"
    sweep_path.write_text(yaml.safe_dump(tree, sort_keys=False))
    plan(load_sweep(sweep_path), sweep_path, tmp_path / "c")
    campaign = open_campaign(tmp_path / "c")
    points = [(d.point["optimizer.volume_fraction"], d.point["filter.shells"]) for d in campaign.designs]
    assert points == [(0.7, 1), (0.7, 3), (0.5, 1), (0.5, 3), (0.6, 1), (0.6, 3)]
    assert descent_order(campaign, range(6)) == [2, 3, 4, 5, 0, 1]
    assert descent_order(campaign, [0, 4, 5]) == [4, 5, 0]
