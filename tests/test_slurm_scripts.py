"""Slurm executor without a cluster: array specs, MaxArraySize splits, profiles, golden sbatch scripts.

Regenerate the golden scripts after an intended change with
``NANOTO_UPDATE_GOLDEN=1 pytest tests/test_slurm_scripts.py`` and review the diff.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nanoto_driver.campaign import plan
from nanoto_driver.errors import ConfigError
from nanoto_driver.executor_slurm import (
    SlurmProfile,
    array_spec,
    load_profile,
    render_array,
    render_collector,
    split_indices,
    submit,
)
from nanoto_driver.sweep import load_sweep

from .conftest import ROOT, run_cli

GOLDEN = Path(__file__).parent / "data" / "golden"
SMOKE = ROOT / "workflows" / "sweeps" / "smoke.yaml"
PROFILES = ROOT / "workflows" / "slurm" / "profiles"


@pytest.mark.parametrize("ids, throttle, spec", [
    ([0, 1, 2, 3], None, "0-3"),
    ([5, 0, 2, 1, 7, 8], 2, "0-2,5,7-8%2"),
    ([4], None, "4"),
])
def test_array_spec(ids, throttle, spec):
    assert array_spec(ids, throttle) == spec


def test_split_respects_max_array_size():
    pieces = split_indices(list(range(2500)), 1001)
    assert [(offset, len(ix)) for offset, ix in pieces] == [(0, 1001), (1001, 1001), (2002, 498)]
    for offset, ix in pieces:
        assert all(0 <= i - offset < 1001 for i in ix)
    assert split_indices([3, 1500], 1001) == [(0, [3]), (1001, [1500])]


def test_profiles_validate_and_a_typo_is_named(tmp_path):
    assert load_profile(PROFILES / "example.yaml").ranks_per_task == 4
    assert load_profile(PROFILES / "ci-local.yaml").partition == "debug"
    bad = tmp_path / "p.yaml"
    bad.write_text("partiton: x\n")
    with pytest.raises(ConfigError, match="unknown key 'partiton'"):
        load_profile(bad)


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NANOTO_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review and regenerate if intended"


def test_scripts_match_golden_files(tmp_path):
    campaign = plan(load_sweep(SMOKE), SMOKE, tmp_path / "smoke")
    profile = load_profile(PROFILES / "example.yaml")
    profile = SlurmProfile.model_validate({**profile.model_dump(), "account": "proj42", "qos": "normal"})

    def generic(text: str) -> str:
        return text.replace(str(campaign.root.resolve()), "CAMPAIGN")

    _check("array_smoke.sbatch", generic(render_array(campaign, profile, "example.yaml", 0, [0, 1, 3], 2, 1001)))
    _check("collect_smoke.sbatch", generic(render_collector(campaign, profile, "example.yaml", ["101", "102"])))


def test_dry_run_prints_and_writes_nothing(tmp_path):
    root = tmp_path / "smoke"
    plan(load_sweep(SMOKE), SMOKE, root)
    proc = run_cli("campaign", "submit", str(root), "--profile", str(PROFILES / "ci-local.yaml"),
                   "--throttle", "2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array=0-3%2" in proc.stdout
    assert "#SBATCH --dependency=afterany:<job id of array_" in proc.stdout
    assert f"{sys.executable} -m nanoto_driver campaign task {root.resolve()}" in proc.stdout
    assert not (root / "slurm").exists()


def test_split_scripts_when_the_campaign_exceeds_max_array_size(tmp_path):
    campaign = plan(load_sweep(SMOKE), SMOKE, tmp_path / "smoke")
    profile = SlurmProfile(max_array_size=3)
    scripts = submit(campaign, profile, "p", [0, 1, 2, 3], dry_run=True)
    arrays = [s for s, _ in scripts if s.kind == "array"]
    assert [(s.offset, s.indices) for s in arrays] == [(0, (0, 1, 2)), (3, (3,))]
    assert "#SBATCH --array=0\n" in arrays[1].text and "SLURM_ARRAY_TASK_ID + 3" in arrays[1].text
    collector = scripts[-1][0]
    (dependency,) = [line for line in collector.text.splitlines() if line.startswith("#SBATCH --dependency")]
    assert collector.kind == "collector" and dependency.count(":<job id of array_") == 2


def test_submit_without_sbatch_is_a_clear_input_error(tmp_path, monkeypatch):
    campaign = plan(load_sweep(SMOKE), SMOKE, tmp_path / "smoke")
    monkeypatch.setenv("PATH", str(tmp_path))
    proc = run_cli("campaign", "submit", str(campaign.root), "--profile", str(PROFILES / "ci-local.yaml"))
    assert proc.returncode == 2 and "sbatch not found" in proc.stderr
