"""Guards against relaxations that start or end with overlapping atoms."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from nanoto_driver import overlaps
from nanoto_driver.config import DomainConfig
from nanoto_driver.engine import COLLAPSE_EV_PER_ATOM, WarmStart
from nanoto_driver.engine_harmonic import HarmonicEngine
from nanoto_driver.errors import RelaxationError
from nanoto_driver.load_cases import build_structure
from nanoto_driver.overlaps import overlap_pairs, repair_overlaps
from nanoto_driver.stiffness import symmetric_curvature

A0 = 4.05


@pytest.fixture(scope="module")
def beam():
    """Cantilever periodic along z (thickness), free along y: both kinds of axis."""
    return build_structure(DomainConfig(load_case="cantilever", cells=(6, 4, 2), thickness="periodic"), A0)


def _neighbour_pair(structure, axis_wraps: bool):
    """Two occupied sites one first-neighbour apart; across the periodic z boundary if asked."""
    x = structure.positions_a
    lo, hi = structure.lattice.box_a()
    d = x[None, :, :] - x[:, None, :]
    if axis_wraps:
        d[..., 2] -= (hi[2] - lo[2]) * np.round(d[..., 2] / (hi[2] - lo[2]))
    dist = np.linalg.norm(d, axis=2)
    near = np.isclose(dist, A0 / np.sqrt(2))
    if axis_wraps:  # only pairs whose plain distance is long: they meet through the boundary
        near &= np.linalg.norm(x[None] - x[:, None], axis=2) > A0
    i, j = np.argwhere(near)[0]
    return int(i), int(j)


def test_lattice_sites_do_not_overlap(beam):
    occ = np.ones(beam.n_sites, bool)
    assert len(overlap_pairs(beam, occ, beam.positions_a)) == 0


@pytest.mark.parametrize("through_boundary", [False, True])
def test_an_atom_moved_onto_its_neighbour_overlaps(beam, through_boundary):
    i, j = _neighbour_pair(beam, through_boundary)
    x = beam.positions_a.copy()
    x[i] = x[j] + np.array([0.3, 0.0, 0.0])  # the site of an added atom that a neighbour moved into
    occ = np.ones(beam.n_sites, bool)
    assert len(overlap_pairs(beam, occ, x)) == 1
    occ[i] = False  # an empty site does not count
    assert len(overlap_pairs(beam, occ, x)) == 0


def _relaxed_like(structure, seed=0):
    """Lattice positions plus a small random displacement: a stand-in for relaxed positions."""
    return structure.positions_a + np.random.default_rng(seed).normal(0.0, 0.05, structure.positions_a.shape)


def test_a_repair_resets_only_the_atoms_around_an_overlap(beam):
    occ = np.ones(beam.n_sites, bool)
    i, j = _neighbour_pair(beam, False)
    warm = _relaxed_like(beam)
    warm[i] = warm[j]  # added on a site that a neighbour moved into
    assert len(overlap_pairs(beam, occ, warm)) == 1
    fixed, reset = repair_overlaps(beam, occ, warm)
    assert len(overlap_pairs(beam, occ, fixed)) == 0
    moved = np.any(fixed != warm, axis=1)
    assert moved[i] and moved[j] and 2 < reset == moved.sum() < beam.n_sites // 2
    # kept atoms keep their warm positions; reset ones sit on their sites, all within the first round's radius
    assert np.array_equal(fixed[~moved], warm[~moved])
    assert np.array_equal(fixed[moved], beam.positions_a[moved])
    reach = overlaps.REPAIR_SHELLS * A0 / np.sqrt(2) + 1e-9
    lo, hi = beam.lattice.box_a()
    length = np.where(beam.periodic, np.asarray(hi) - np.asarray(lo), 0.0)  # minimum image on periodic axes
    d = beam.positions_a[moved][:, None] - beam.positions_a[[i, j]][None]
    d -= length * np.round(d / np.where(beam.periodic, length, 1.0))
    assert np.all(np.linalg.norm(d, axis=2).min(axis=1) <= reach)
    # a clean start comes back unchanged
    again, none = repair_overlaps(beam, occ, fixed)
    assert none == 0 and np.array_equal(again, fixed)


def test_a_repair_that_does_not_clear_the_overlaps_falls_back_to_the_lattice(beam, monkeypatch, caplog):
    """An atom far away that moved onto a reset atom's site keeps the overlap after round 1."""
    monkeypatch.setattr(overlaps, "REPAIR_ROUNDS", 1)
    occ = np.ones(beam.n_sites, bool)
    i, j = _neighbour_pair(beam, False)
    far = int(np.argmax(np.linalg.norm(beam.positions_a - beam.positions_a[i], axis=1)))
    warm = _relaxed_like(beam)
    warm[i] = warm[j]
    warm[far] = beam.positions_a[i]
    fixed, reset = repair_overlaps(beam, occ, warm)
    assert reset == beam.n_sites
    assert np.array_equal(fixed, beam.positions_a)
    with caplog.at_level(logging.WARNING, logger="nanoto"):
        symmetric_curvature(HarmonicEngine(), beam, occ, 0.04, warm=WarmStart(warm, None))
    assert "warm start dropped" in caplog.text and "repaired" not in caplog.text


def test_an_overlapping_warm_start_is_repaired(beam, caplog):
    """The repaired start relaxes to the same K_sym as the lattice start (the harmonic minimum is unique)."""
    occ = np.ones(beam.n_sites, bool)
    i, j = _neighbour_pair(beam, False)
    x = beam.positions_a.copy()
    x[i] = x[j]
    cold = symmetric_curvature(HarmonicEngine(), beam, occ, 0.04)
    with caplog.at_level(logging.WARNING, logger="nanoto"):
        warm = symmetric_curvature(HarmonicEngine(), beam, occ, 0.04, warm=WarmStart(x, None))
    assert "warm start repaired" in caplog.text
    assert warm.k_sym_ev_per_a2 == pytest.approx(cold.k_sym_ev_per_a2, rel=1e-12)


def test_a_collapsed_relaxation_is_an_error_not_a_stiffness(beam):
    occ = np.ones(beam.n_sites, bool)

    class Collapsing(HarmonicEngine):
        def relax(self, structure, occupancy, states_a, warm=None, done=(), on_state=None, in_flight=None):
            results = super().relax(structure, occupancy, states_a, warm)
            energy = -2.0 * COLLAPSE_EV_PER_ATOM * results[1].n_atoms
            return [results[0], dataclasses.replace(results[1], engine_energy_ev=energy), results[2]]

    with pytest.raises(RelaxationError, match="collapsed"):
        symmetric_curvature(Collapsing(), beam, occ, 0.04)


@pytest.mark.lammps
def test_a_repaired_warm_start_gives_the_cold_stiffness_in_lammps(lammps_ok, caplog):
    """Real EAM: a hole is refilled after a 'reconstruction' moved a neighbour onto one of its sites.
    The repaired warm start relaxes to the K_sym of the lattice start within 1e-4 (the design does
    not reconstruct, so both find one minimum) and takes fewer force evaluations."""
    from nanoto_driver.config import load_config
    from nanoto_driver.design import initial_occupancy
    from nanoto_driver.evaluate import open_problem

    from .conftest import EXAMPLES

    problem = open_problem(load_config(EXAMPLES / "cantilever_periodic.yaml"))
    s, delta = problem.structure, problem.delta_a()
    try:
        full = initial_occupancy(problem.config.design, s)
        idx = s.lattice.index
        hole = (idx[:, 1] >= 5) & (idx[:, 1] < 7) & (idx[:, 2] >= 2) & (idx[:, 2] < 4)
        previous = symmetric_curvature(problem.engine, s, full & ~hole, delta)
        refilled = np.flatnonzero(hole & full)[0]
        x = previous.relaxed[0].positions_a.copy()
        gap = np.linalg.norm(s.positions_a - s.positions_a[refilled], axis=1)
        gap[~(full & ~hole)] = np.inf
        x[np.argmin(gap)] = s.positions_a[refilled]  # a neighbour moved onto the refilled site
        occ = full & ~hole
        occ[refilled] = True
        cold = symmetric_curvature(problem.engine, s, occ, delta)
        with caplog.at_level(logging.WARNING, logger="nanoto"):
            warm = symmetric_curvature(problem.engine, s, occ, delta, warm=WarmStart(x, previous.response_a))
    finally:
        problem.engine.close()
    assert "warm start repaired" in caplog.text
    assert warm.k_sym_ev_per_a2 == pytest.approx(cold.k_sym_ev_per_a2, rel=1e-4)
    assert sum(st.force_evaluations for st in warm.states) < sum(st.force_evaluations for st in cold.states)
