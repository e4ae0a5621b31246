"""BESO update and cleanup on hand-made designs."""

import numpy as np
import pytest

from nanoto_driver.cleanup import clean, load_path_mask, occupied_neighbors, padded_table, prune
from nanoto_driver.errors import GeometryError
from nanoto_driver.lattice import FccLattice
from nanoto_driver.shells import neighbor_table
from nanoto_driver.update import beso_step, next_count, rank_order

CELLS = (8, 4, 2)
PERIODIC = (False, False, True)


@pytest.fixture
def beam():
    lat = FccLattice(CELLS, 1.0)
    i = lat.index[:, 1]
    clamp, load = i < 2, i >= 7
    table = padded_table(neighbor_table(CELLS, PERIODIC, 1))
    return lat, table, clamp, load, ~clamp & ~load


def test_next_count_is_exact_and_stops_at_target():
    assert next_count(1000, 500, 0.02) == 980
    assert next_count(510, 500, 0.02) == 500
    assert next_count(3, 1, 0.1) == 3  # round(2.7) = 3: integers, no drift


def test_rank_order_breaks_ties_by_site_index():
    alpha = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    assert rank_order(alpha, np.arange(5)).tolist() == [1, 2, 4, 3, 0]
    # round-off far below the rank resolution does not reorder mirror-image sites
    alpha2 = alpha + np.array([0, 0, 1e-14, 0, -1e-14])
    assert rank_order(alpha2, np.arange(5)).tolist() == [1, 2, 4, 3, 0]


def test_beso_step_removes_the_weakest_with_exact_count(beam):
    lat, _, clamp, load, design = beam
    alpha = np.random.default_rng(0).random(lat.n_sites)
    occ = np.ones(lat.n_sites, bool)
    n_next = next_count(int(design.sum()), 60, 0.1)
    new = beso_step(alpha, occ, design, n_next, 0.02)
    assert (new & design).sum() == n_next
    assert np.all(new[clamp | load])
    removed = np.flatnonzero(occ & ~new)
    kept = np.flatnonzero(new & design)
    assert alpha[removed].max() < alpha[kept].min()


def test_addition_cap(beam):
    lat, _, _, _, design = beam
    sites = np.flatnonzero(design)
    occ = ~design.copy()
    occ[sites[:100]] = True  # current design: the first 100 design sites
    alpha = np.zeros(lat.n_sites)
    alpha[sites[100:]] = 10.0  # every empty site looks better than every atom
    alpha[sites[:100]] = np.linspace(2, 1, 100)
    new = beso_step(alpha, occ, design, 100, addition_ratio=0.05)
    added = np.flatnonzero(new & ~occ)
    assert added.size == 5 and (new & design).sum() == 100
    assert added.tolist() == sites[100:105].tolist()  # equal alpha: lowest site index first
    kept = np.flatnonzero(new & occ & design)
    assert kept.tolist() == sites[:95].tolist()  # the best 95 current atoms


def test_ties_are_deterministic(beam):
    lat, _, _, _, design = beam
    alpha = np.ones(lat.n_sites)
    occ = np.ones(lat.n_sites, bool)
    a = beso_step(alpha, occ, design, 50, 0.02)
    b = beso_step(alpha.copy(), occ.copy(), design, 50, 0.02)
    assert np.array_equal(a, b)
    assert np.flatnonzero(a & design).tolist() == np.flatnonzero(design)[:50].tolist()


def test_islands_are_removed_and_count_refilled(beam):
    lat, table, clamp, load, design = beam
    cell = lat.index[:, 1:]
    bar = design & (cell[:, 1] == 1)  # one layer of cells joining clamp and load
    island = design & (cell[:, 0] == 4) & (cell[:, 1] == 3)  # floating block, no contact
    occ = clamp | load | bar | island
    n_design = int((occ & design).sum())
    alpha = np.random.default_rng(1).random(lat.n_sites)
    out = clean(table, occ, design, clamp, load, alpha, n_design)
    assert (out & design).sum() == n_design
    assert not np.any(out & island & ~(occupied_neighbors(table, out) > 0))
    assert load_path_mask(table, out, clamp, load)[out].all()  # everything sits on the load path


def test_low_coordination_atoms_are_pruned(beam):
    lat, table, clamp, load, design = beam
    occ = np.ones(lat.n_sites, bool)
    lonely = np.flatnonzero(design)[0]
    occ[table[lonely][table[lonely] < lat.n_sites]] = False  # strip its neighbours
    occ[lonely] = True
    pruned = prune(table, occ, design, 3)
    assert not pruned[lonely]


def test_no_load_path_is_an_error(beam):
    lat, table, clamp, load, design = beam
    occ = clamp | load
    with pytest.raises(GeometryError, match="load path"):
        clean(table, occ, design, clamp, load, np.zeros(lat.n_sites), 10)
