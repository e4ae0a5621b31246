"""Sweep expansion: grid and zip axes, validation, identity, campaign plans (no LAMMPS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nanoto_driver.campaign import open_campaign, plan
from nanoto_driver.config import config_hash
from nanoto_driver.errors import ConfigError, InputError
from nanoto_driver.sweep import expand, load_sweep

from .conftest import ROOT, run_cli

SMOKE = ROOT / "workflows" / "sweeps" / "smoke.yaml"


def _sweep(tmp_path: Path, **tree) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", **tree}, sort_keys=False))
    return path


def test_grid_is_a_product_in_c_order_and_zip_is_the_outer_loop(tmp_path):
    path = _sweep(tmp_path, grid={"optimizer.volume_fraction": [0.4, 0.6], "filter.shells": [1, 2, 3]},
                  zip={"domain.cells": [[8, 4, 1], [10, 4, 1]], "load.strain": [1e-3, 2e-3]})
    designs = expand(load_sweep(path))
    assert len(designs) == 2 * 2 * 3
    assert [d.index for d in designs] == list(range(12))
    first, last = designs[0], designs[-1]
    assert first.point == {"domain.cells": [8, 4, 1], "load.strain": 1e-3,
                           "optimizer.volume_fraction": 0.4, "filter.shells": 1}
    assert designs[1].point["filter.shells"] == 2 and designs[3].point["optimizer.volume_fraction"] == 0.6
    assert last.config.domain.cells == (10, 4, 1) and last.config.load.strain == 2e-3
    assert last.config.filter.shells == 3 and last.config.optimizer.volume_fraction == 0.6
    assert len({config_hash(d.config) for d in designs}) == 12


def test_base_file_and_overrides_are_merged(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"domain": {"cells": [9, 5, 2]},
                                                        "optimizer": {"window": 4}}))
    path = _sweep(tmp_path, base="base.yaml", config={"optimizer": {"max_iterations": 7}},
                  grid={"optimizer.volume_fraction": [0.5]})
    (design,) = expand(load_sweep(path))
    assert design.config.domain.cells == (9, 5, 2)
    assert design.config.optimizer.window == 4 and design.config.optimizer.max_iterations == 7
    assert design.config.name == "t" and design.config.base_dir == str(tmp_path.resolve())


@pytest.mark.parametrize("tree, message", [
    ({"grid": {"optimizer.volume_fration": [0.5]}}, "unknown key 'optimizer.volume_fration'"),
    ({"grid": {"optimizer.volume_fraction": [0.5, 1.5]}}, "design 1 (optimizer.volume_fraction=1.5)"),
    ({"zip": {"filter.shells": [1, 2], "load.strain": [1e-3]}}, "equal lengths"),
    ({"grid": {"engine.ranks": [1, 2]}}, "are the same run config"),
    ({"grid": {"filter.shells": []}}, "has no values"),
    ({"grids": {"filter.shells": [1]}}, "unknown key 'grids'"),
    ({"base": "nope.yaml"}, "base config not found"),
])
def test_bad_sweeps_are_refused_with_the_reason(tmp_path, tree, message):
    with pytest.raises(ConfigError) as err:
        expand(load_sweep(_sweep(tmp_path, **tree)))
    assert message in str(err.value)


def test_plan_is_idempotent_and_ids_are_config_hashes(tmp_path):
    sweep = load_sweep(SMOKE)
    campaign = plan(sweep, SMOKE, tmp_path / "c")
    assert len(campaign) == 4
    again = plan(sweep, SMOKE, tmp_path / "c")
    assert [d.id for d in again.designs] == [d.id for d in campaign.designs]
    for d, design in zip(campaign.designs, expand(sweep), strict=True):
        assert config_hash(campaign.config(d.index)) == config_hash(design.config)
        statepoint = json.loads((d.path / "signac_statepoint.json").read_text())
        assert statepoint["optimizer"]["volume_fraction"] == design.config.optimizer.volume_fraction
    import signac

    project = signac.get_project(str(tmp_path / "c"))
    assert len(list(project.find_jobs({"optimizer.volume_fraction": 0.7}))) == 2


def test_plan_refuses_another_sweep_in_the_same_folder(tmp_path):
    plan(load_sweep(SMOKE), SMOKE, tmp_path / "c")
    other = _sweep(tmp_path, grid={"optimizer.volume_fraction": [0.3]})
    with pytest.raises(InputError, match="another sweep"):
        plan(load_sweep(other), other, tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("")
    with pytest.raises(InputError, match="not a campaign folder"):
        plan(load_sweep(SMOKE), SMOKE, tmp_path / "d")


def test_cli_plan_status_and_bad_campaign(tmp_path):
    proc = run_cli("campaign", "plan", str(SMOKE), "-o", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    assert "4 designs planned" in proc.stdout
    proc = run_cli("campaign", "status", str(tmp_path / "c"), "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["counts"] == {"done": 0, "running": 0, "pending": 4, "failed": 0, "missing": 0}
    proc = run_cli("campaign", "status", str(tmp_path))
    assert proc.returncode == 2 and "not a campaign" in proc.stderr
    assert open_campaign(tmp_path / "c").design(3).index == 3
    with pytest.raises(InputError, match="no design 4"):
        open_campaign(tmp_path / "c").design(4)
