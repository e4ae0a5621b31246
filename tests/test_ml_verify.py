"""``nanoto verify``: candidates relaxed with LAMMPS and scored against a real smoke dataset.

The module fixture runs the smoke sweep (4 designs of 8x4x1 cells, ~5 s each) and builds
its dataset. ``verified`` writes a samples file of two conditions, each equal to one
dataset design's condition:

group 0 (the best training design at the lower target volume fraction, "A"):
    0. A itself: valid, K / K_frontier = 1, distance 0 to the training set
    1. A with two atoms moved to two empty sites next to the structure: valid, Hamming 4
    2. A with every design site of the middle x-slab of cells emptied and as many atoms
       added elsewhere (the count of design atoms stays the requested one): no load path
group 1 (the other target volume fraction): its best design "B" and the other design
    of that target.

The unit tests at the end need no LAMMPS.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from nanoto_driver.campaign import Campaign, plan
from nanoto_driver.config import DomainConfig
from nanoto_driver.dataset import build_dataset, read_table
from nanoto_driver.design import components
from nanoto_driver.errors import EngineError, InputError
from nanoto_driver.load_cases import build_structure
from nanoto_driver.ml_verify import (
    LoadKey,
    frontier,
    hamming_fraction,
    is_novel,
    mean_pairwise_hamming,
    nearest_hamming,
    projection_image,
    read_samples,
    structural_check,
    verify,
)
from nanoto_driver.rundir import run_in_dir
from nanoto_driver.shells import neighbor_pairs
from nanoto_driver.structure import DESIGN, Structure
from nanoto_driver.sweep import load_sweep

from .conftest import ROOT

pytestmark = pytest.mark.lammps
SMOKE = ROOT / "workflows" / "sweeps" / "smoke.yaml"
SHAPE = "4x8x4x1"


@pytest.fixture(scope="module")
def smoke(lammps_ok: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Campaign, Path]:
    """The smoke sweep run with LAMMPS (one design at a time) and its dataset."""
    campaign = plan(load_sweep(SMOKE), SMOKE, tmp_path_factory.mktemp("smoke") / "campaign")
    for design in campaign.designs:
        run_in_dir(campaign.config(design.index), design.path, resume=True, progress=False)
    dataset = campaign.root.parent / "dataset.h5"
    report = build_dataset(campaign.root, dataset)
    assert report.n_written == 4 and report.shapes == {SHAPE: 4}
    return campaign, dataset


def write_samples(path: Path, groups: list[dict[str, Any]]) -> Path:
    """A samples file (format nanoto-samples v1) of groups {condition, config, n_design_atoms, occupancy}."""
    with h5py.File(path, "w") as f:
        f.attrs.update(format="nanoto-samples", format_version=1, checkpoint="none.pt", checkpoint_sha256="0" * 64,
                       sampler="test", n_steps=0, guidance_scale=1.0, seed=0, created_utc="2025-01-01T00:00:00+00:00",
                       nanoto_version="test")
        for i, g in enumerate(groups):
            h = f.create_group(f"conditions/{i}")
            h.attrs.update(condition_json=json.dumps(g["condition"]), config_json=g["config"].model_dump_json(),
                           n_design_atoms=g["n_design_atoms"])
            occ = np.stack(g["occupancy"]).astype(bool)
            h.create_dataset("occupancy", data=occ)
            h.create_dataset("x0", data=occ.astype(np.float32) * 2 - 1)
    return path


def _hamming(a: np.ndarray, b: np.ndarray, design: np.ndarray) -> float:
    return float((a.reshape(-1)[design] != b.reshape(-1)[design]).sum() / design.sum())


def _moved(occ: np.ndarray, structure: Structure) -> np.ndarray:
    """Two atoms moved: the two best-coordinated occupied design sites emptied, the two best-coordinated
    empty design sites filled, keeping one connected cluster."""
    src, dst, _ = neighbor_pairs(structure.lattice.cells, structure.periodic, shell=1)
    design = structure.kind == DESIGN
    neighbours = np.bincount(src, weights=occ[dst], minlength=occ.size)
    full, empty = np.flatnonzero(design & occ), np.flatnonzero(design & ~occ)
    full = full[np.argsort(-neighbours[full], kind="stable")]
    empty = empty[np.argsort(-neighbours[empty], kind="stable")]
    for start in range(len(full) - 1):
        new = occ.copy()
        new[full[start:start + 2]] = False
        new[empty[:2]] = True
        labels = components(structure, new)
        if np.unique(labels[new]).size == 1:
            return new
    raise AssertionError("no pair of atoms can be moved without splitting the design")


def _cut(occ: np.ndarray, kind: np.ndarray, slab: int, nx: int) -> np.ndarray:
    """Every design site of x cell ``slab`` emptied; as many empty design sites elsewhere filled."""
    cell_x = np.indices((4, nx, occ.size // (4 * nx))).reshape(3, -1)[1]
    design = kind == DESIGN
    new = occ.copy()
    removed = np.flatnonzero(design & occ & (cell_x == slab))
    new[removed] = False
    refill = np.flatnonzero(design & ~occ & (cell_x != slab))[: removed.size]
    new[refill] = True
    assert removed.size > 0 and refill.size == removed.size
    return new


@pytest.fixture(scope="module")
def verified(smoke: tuple[Campaign, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    campaign, dataset = smoke
    table = read_table(dataset)
    with h5py.File(dataset, "r") as f:
        group = f[f"shapes/{SHAPE}"]
        ids = list(group["table/design_id"].asstr()[()])
        occupancy = {d: group["occupancy"][i] for i, d in enumerate(ids)}
        kind = group["kind"][0].reshape(-1)
    best = table.loc[table.groupby("target_volume_fraction")["k_sym_ev_per_a2"].idxmax()]
    assert len(best) == 2
    a = best[best["split"] == "train"].iloc[0]  # smoke: the vf 0.5, 1-shell design
    b = best[best["design_id"] != a["design_id"]].iloc[0]
    b_other = table[(table["target_volume_fraction"] == b["target_volume_fraction"])
                    & (table["design_id"] != b["design_id"])].iloc[0]
    cfg_a, cfg_b = campaign.config(int(a["campaign_index"])), campaign.config(int(b["campaign_index"]))
    cells, structure = cfg_a.domain.cells, build_structure(cfg_a.domain, 1.0)
    assert np.array_equal(structure.kind, kind)
    occ_a = occupancy[a["design_id"]].reshape(-1)
    group0 = [occ_a, _moved(occ_a, structure), _cut(occ_a, kind, cells[0] // 2, cells[0])]
    group1 = [occupancy[b["design_id"]].reshape(-1), occupancy[b_other["design_id"]].reshape(-1)]

    def condition(row: pd.Series) -> dict[str, Any]:
        return {"target_volume_fraction": float(row["target_volume_fraction"]), "load_j0": int(row["load_j0"]),
                "load_j1": int(row["load_j1"]), "filter_shells": int(row["filter_shells"])}

    folder = tmp_path_factory.mktemp("verify")
    samples = write_samples(folder / "samples.h5", [
        {"condition": condition(a), "config": cfg_a, "n_design_atoms": int(a["n_design_atoms"]),
         "occupancy": [o.reshape(4, *cells) for o in group0]},
        {"condition": condition(b), "config": cfg_b, "n_design_atoms": int(b["n_design_atoms"]),
         "occupancy": [o.reshape(4, *cells) for o in group1]},
    ])
    report = verify(samples, dataset, folder / "out", progress=True)  # the tqdm bar goes to captured stderr
    train = [occupancy[d].reshape(-1) for d in table["design_id"]]  # novelty: against every dataset design
    return {"report": report, "out": folder / "out", "samples": samples, "dataset": dataset, "table": table,
            "a": a, "b": b, "b_other": b_other, "groups": [group0, group1], "design": kind == DESIGN,
            "train": train}


def test_verify_scores_known_candidates(verified: dict[str, Any]) -> None:
    r, a, b, b_other = verified["report"], verified["a"], verified["b"], verified["b_other"]
    design, (group0, group1) = verified["design"], verified["groups"]
    n_design = int(design.sum())
    assert (r["n_candidates"], r["n_valid"], r["valid_fraction"]) == (5, 4, 0.8)
    cands = r["candidates"]
    assert [(c["group"], c["index"]) for c in cands] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    same, moved, cut, best_b, other_b = cands
    # (a) the training design itself, the best of its target volume fraction
    assert same["valid"] and same["reason"] is None
    assert same["volume_fraction"] == pytest.approx(a["volume_fraction"], abs=1e-12)
    assert same["k_frontier"] == pytest.approx(a["k_sym_ev_per_a2"], rel=1e-12)
    assert abs(same["ratio"] - 1.0) < 1e-9
    assert same["nearest_train_hamming"] == 0.0 and not same["novel"]
    # (b) two atoms moved: same count, another K, Hamming 4 (no other training design is nearer)
    assert moved["valid"] and moved["n_design_atoms_matches"]
    assert abs(moved["k_sym"] - same["k_sym"]) > 1e-6 * same["k_sym"]
    assert _hamming(group0[1], group0[0], design) == 4 / n_design
    assert min(_hamming(group0[1], t, design) for t in verified["train"]) == 4 / n_design
    assert moved["nearest_train_hamming"] == pytest.approx(4 / n_design, abs=1e-12)
    assert moved["novel"]  # 4/80 = 0.05 >= the default threshold 0.05
    assert moved["ratio"] == pytest.approx(moved["k_sym"] / moved["k_frontier"], rel=1e-12)
    # (c) the middle slab cut: invalid, no K, same atom count
    assert not cut["valid"] and "no load path" in cut["reason"] and cut["n_design_atoms_matches"]
    assert cut["k_sym"] is None and cut["ratio"] is None
    # group 1: the best design of the other target and its rival
    assert abs(best_b["ratio"] - 1.0) < 1e-6
    assert other_b["ratio"] == pytest.approx(b_other["k_sym_ev_per_a2"] / b["k_sym_ev_per_a2"], rel=1e-6)
    assert best_b["nearest_train_hamming"] == pytest.approx(
        min(_hamming(group1[0], t, design) for t in verified["train"]), abs=1e-12)
    # summary statistics from the per-candidate list
    ratios = [c["ratio"] for c in cands if c["valid"]]
    assert r["n_ratio"] == 4
    assert r["median_k_over_frontier"] == pytest.approx(float(np.median(ratios)), rel=1e-12)
    assert r["fraction_ge_0_97"] == pytest.approx(np.mean([x >= 0.97 for x in ratios]), abs=1e-12)
    assert r["novel_fraction"] == pytest.approx(np.mean([c["novel"] for c in cands]), abs=1e-12)
    pairs0 = [_hamming(group0[i], group0[j], design) for i, j in ((0, 1), (0, 2), (1, 2))]
    diversity = [float(np.mean(pairs0)), _hamming(group1[0], group1[1], design)]
    assert [c["mean_pairwise_hamming"] for c in r["conditions"]] == pytest.approx(diversity, abs=1e-12)
    assert r["mean_pairwise_hamming"] == pytest.approx(np.mean(diversity), abs=1e-12)
    assert [c["n_candidates"] for c in r["conditions"]] == [3, 2]
    assert r["conditions"][0]["condition"]["target_volume_fraction"] == a["target_volume_fraction"]
    assert [p["volume_fraction"] for p in r["conditions"][0]["frontier"]] == sorted(
        verified["table"].groupby("target_volume_fraction")["volume_fraction"].first())
    assert r["median_wall_s"] > 0 and all(c["wall_s"] > 0 for c in cands if c["k_sym"] is not None)


def test_verify_outputs(verified: dict[str, Any]) -> None:
    out, r = verified["out"], verified["report"]
    on_disk = json.loads((out / "verify.json").read_text())
    assert on_disk == r
    assert r["samples_sha256"] == hashlib.sha256(verified["samples"].read_bytes()).hexdigest()
    assert r["dataset_sha256"] == hashlib.sha256(verified["dataset"].read_bytes()).hexdigest()
    assert r["samples_path"] == str(verified["samples"].resolve()) and r["samples_attrs"]["sampler"] == "test"
    for name in ("k_vs_volume_fraction.png", "candidates.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(out.glob("*.partial"))


def test_bad_inputs_name_the_file(smoke: tuple[Campaign, Path], tmp_path: Path) -> None:
    campaign, dataset = smoke
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    with pytest.raises(InputError, match=str(corrupt)):
        verify(corrupt, dataset, tmp_path / "out")
    with pytest.raises(InputError, match="samples file not found"):
        verify(tmp_path / "missing.h5", dataset, tmp_path / "out")
    config = campaign.config(0)
    good = write_samples(tmp_path / "good.h5", [{"condition": {}, "config": config, "n_design_atoms": 40,
                                                 "occupancy": [np.ones((4, *config.domain.cells), bool)]}])
    with pytest.raises(InputError, match="dataset file not found"):
        verify(good, tmp_path / "no_dataset.h5", tmp_path / "out")
    other = config.model_copy(update={"domain": config.domain.model_copy(update={"cells": (6, 4, 1)})})
    wrong = write_samples(tmp_path / "wrong.h5", [{"condition": {}, "config": other, "n_design_atoms": 1,
                                                   "occupancy": [np.ones((4, 6, 4, 1), bool)]}])
    with pytest.raises(InputError, match="grid shape 4x6x4x1"):
        verify(wrong, dataset, tmp_path / "out")
    with h5py.File(good, "r+") as f:
        del f["conditions/0/occupancy"]
        f["conditions/0/occupancy"] = np.ones((1, 4, 7, 4, 1), bool)
    with pytest.raises(InputError, match="occupancy has shape"):
        read_samples(good)
    assert not (tmp_path / "out").exists()  # every input error comes before any output


def test_engine_error_stops_verify(smoke: tuple[Campaign, Path], tmp_path: Path) -> None:
    campaign, dataset = smoke
    config = campaign.config(0)
    broken = config.model_copy(update={"engine": config.engine.model_copy(
        update={"name": "lammps-exe", "lmp_command": str(tmp_path / "no_lmp")})})
    samples = write_samples(tmp_path / "samples.h5", [{"condition": {}, "config": broken, "n_design_atoms": 40,
                                                       "occupancy": [np.ones((4, 8, 4, 1), bool)]}])
    with pytest.raises(EngineError, match="no_lmp"):
        verify(samples, dataset, tmp_path / "out")
    assert not (tmp_path / "out" / "verify.json").exists()


def _table(rows: list[tuple[float, float, float, int]]) -> pd.DataFrame:
    """Hand-made dataset rows (target vf, achieved vf, K, load_j0) of one 8x4x1 cantilever."""
    return pd.DataFrame([{"design_id": f"d{i}", "target_volume_fraction": t, "volume_fraction": v,
                          "k_sym_ev_per_a2": k, "load_case": "cantilever", "thickness": "periodic",
                          "nx": 8, "ny": 4, "nz": 1, "load_j0": j0, "load_j1": 4}
                         for i, (t, v, k, j0) in enumerate(rows)])


def test_frontier_takes_the_best_per_target_and_interpolates() -> None:
    table = _table([(0.5, 0.50, 1.0, 0), (0.5, 0.49, 1.5, 0), (0.7, 0.70, 2.0, 0), (0.7, 0.71, 1.8, 0),
                    (0.3, 0.30, 9.0, 2), (0.9, 0.9, float("nan"), 0)])
    key = LoadKey("cantilever", "periodic", 8, 4, 1, 0, 4)
    front = frontier(table, key)
    assert front.target_volume_fraction.tolist() == [0.5, 0.7]
    assert front.volume_fraction.tolist() == [0.49, 0.70]  # achieved vf of the best design per target
    assert front.k_sym_ev_per_a2.tolist() == [1.5, 2.0] and front.design_id == ("d1", "d2")
    k = front(np.array([0.49, 0.595, 0.70, 0.70 + 1e-12, 0.45, 0.75]))
    assert k[:4] == pytest.approx([1.5, 1.75, 2.0, 2.0], abs=1e-12)
    assert np.isnan(k[4:]).all()
    other = frontier(table, key._replace(load_j0=2))  # another load patch: its own single point
    assert other.volume_fraction.tolist() == [0.3] and other(0.3) == pytest.approx(9.0)
    assert np.isnan(other(0.31))
    assert np.isnan(frontier(table, key._replace(nx=9))(0.5))  # no rows: NaN


def test_diversity_and_novelty_on_tiny_arrays() -> None:
    design = np.array([True, True, True, True, False])  # last site fixed: never counted
    x = np.array([[1, 1, 0, 0, 1], [1, 0, 1, 0, 0], [0, 0, 1, 1, 1]], bool)
    assert hamming_fraction(x, x, design).tolist() == [[0, 0.5, 1], [0.5, 0, 0.5], [1, 0.5, 0]]
    assert mean_pairwise_hamming(x, design) == pytest.approx(2 / 3)
    assert np.isnan(mean_pairwise_hamming(x[:1], design))
    train = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], bool)
    assert nearest_hamming(x, train, design).tolist() == [0.0, 0.5, 0.0]
    assert np.isnan(nearest_hamming(x, train[:0], design)).all()
    assert is_novel(np.array([0.0, 0.049, 4 / 80, 0.5, np.nan]), 0.05).tolist() == [False, False, True, True, False]


def test_structural_check_and_picture_without_lammps() -> None:
    structure = build_structure(DomainConfig(cells=(7, 4, 1)), 1.0)  # clamp x cells 0-1, load x cell 6
    _, i, j, _ = structure.lattice.index.T
    design, fixed = structure.kind == DESIGN, structure.kind != DESIGN
    assert structural_check(structure, np.ones(structure.n_sites, bool)) is None
    assert "no load path" in str(structural_check(structure, fixed.copy()))
    bridge = fixed | (design & (j == 0))  # one row of cells joins clamp and load
    assert structural_check(structure, bridge) is None
    island = bridge | (design & (i == 3) & (j == 3))  # plus one cell touching nothing
    assert structural_check(structure, island) == "2 first-shell components: 4 atoms are detached from the main cluster"
    empty_fixed = bridge.copy()
    empty_fixed[np.flatnonzero(fixed)[0]] = False
    assert str(structural_check(structure, empty_fixed)).startswith("1 clamp/load sites are empty")
    image, axis = projection_image(structure.kind, island, structure.lattice.grid_shape)
    assert axis == 2 and image.shape == (8, 14, 3)
    # nz = 1: every site is its own pixel; white exactly where a design site is empty
    assert np.all(image == 1.0, axis=2).sum() == int((design & ~island).sum())
    assert np.allclose(image[0, 0], (0.12, 0.47, 0.71)) and np.allclose(image[0, -1], (0.84, 0.15, 0.16))
    assert np.allclose(image[6, 6], 0.2) and np.allclose(image[6, 4], 1.0)  # the island cell (3, 3); empty (2, 3)


def test_import_loads_neither_torch_nor_lammps() -> None:
    code = ("import sys, nanoto_driver.ml_verify; "
            "print(sorted(m for m in ('torch', 'lammps', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
