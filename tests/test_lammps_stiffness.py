"""Symmetric-curvature stiffness on real LAMMPS with the shipped EAM Al potential."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nanoto_driver.config import load_config
from nanoto_driver.design import initial_occupancy
from nanoto_driver.evaluate import evaluate, open_problem
from nanoto_driver.stiffness import symmetric_curvature

from .conftest import EXAMPLES

pytestmark = pytest.mark.lammps
EXAMPLE_NAMES = ["cantilever_periodic", "cantilever_finite", "pillar"]


@pytest.fixture(scope="module")
def problems(lammps_ok):
    opened = {name: open_problem(load_config(EXAMPLES / f"{name}.yaml")) for name in EXAMPLE_NAMES}
    yield opened
    for p in opened.values():
        p.engine.close()


@pytest.fixture(scope="module")
def results(problems):
    return {name: evaluate(p) for name, p in problems.items()}


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_sum_alpha_equals_k_sym(results, name):
    r = results[name]
    assert r.k_sym_ev_per_a2 > 0
    assert abs(r.sum_alpha_ev_per_a2 - r.k_sym_ev_per_a2) <= 1e-8 * r.k_sym_ev_per_a2


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_per_atom_energies_partition_lammps_total(results, name):
    """Σ e_i (compute pe/atom, gathered by id) equals LAMMPS' own total energy in every state."""
    for st in results[name].states:
        assert st.converged
        assert abs(st.energy_ev - st.engine_energy_ev) <= 1e-11 * abs(st.engine_energy_ev)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_k_sym_converged_in_delta(problems, results, name):
    p = problems[name]
    occ = initial_occupancy(p.config.design, p.structure)
    full = results[name]
    half = symmetric_curvature(p.engine, p.structure, occ, full.delta_a / 2)
    assert abs(full.k_sym_ev_per_a2 - half.k_sym_ev_per_a2) / full.k_sym_ev_per_a2 < 0.01


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_k_force_cross_check(results, name):
    r = results[name]
    assert r.k_force_ev_per_a2 == pytest.approx(r.k_sym_ev_per_a2, rel=0.01)


def test_pillar_surface_stress_bias(problems, results):
    """Axial load: residual force f != 0, so K_fwd is biased by 2f/δ and moves with δ; K_sym does not."""
    p, r = problems["pillar"], results["pillar"]
    occ = initial_occupancy(p.config.design, p.structure)
    r2 = symmetric_curvature(p.engine, p.structure, occ, 2 * r.delta_a)
    assert abs(r.residual_force_ev_per_a) > 0.1
    for res in (r, r2):
        assert abs(res.k_fwd_ev_per_a2 - res.k_sym_ev_per_a2) > 0.10 * res.k_sym_ev_per_a2
        predicted = res.k_sym_ev_per_a2 + 2 * res.residual_force_ev_per_a / res.delta_a
        assert res.k_fwd_ev_per_a2 == pytest.approx(predicted, rel=0.01)
    assert abs(r2.k_fwd_ev_per_a2 - r.k_fwd_ev_per_a2) > 0.10 * r.k_sym_ev_per_a2
    assert r2.k_sym_ev_per_a2 == pytest.approx(r.k_sym_ev_per_a2, rel=0.01)


def test_cantilever_twofold_symmetry_has_no_bias(results):
    """The 2-fold axis along the beam maps +δ to -δ, so f = 0 by symmetry: K_fwd = K_sym there."""
    r = results["cantilever_periodic"]
    assert abs(r.residual_force_ev_per_a) < 1e-6
    assert r.k_fwd_ev_per_a2 == pytest.approx(r.k_sym_ev_per_a2, rel=1e-6)


def test_removing_atoms_softens_the_cantilever(problems, results):
    p = problems["cantilever_periodic"]
    occ = initial_occupancy(p.config.design, p.structure)
    idx = p.structure.lattice.index
    hole = (idx[:, 1] >= 4) & (idx[:, 1] < 8) & (idx[:, 2] >= 2) & (idx[:, 2] < 4)
    occ[hole] = False
    holed = symmetric_curvature(p.engine, p.structure, occ, results["cantilever_periodic"].delta_a)
    assert 0 < holed.k_sym_ev_per_a2 < results["cantilever_periodic"].k_sym_ev_per_a2
    assert np.all(holed.alpha[~occ] == 0.0)
    assert math.isclose(holed.sum_alpha_ev_per_a2, holed.k_sym_ev_per_a2, rel_tol=1e-8)


def test_a0_comes_from_the_potential(problems):
    a0 = problems["pillar"].a0_a
    assert 4.0 < a0 < 4.1 and a0 != 4.05


def test_a_max_force_norm_tolerance_gives_the_same_k(lammps_ok, results):
    """minimizer.norm max bounds the largest force on an atom: at 1e-5 eV/Å every state
    ends below it and K_sym agrees with the default (2-norm 1e-8) within 1e-4."""
    config = load_config(EXAMPLES / "cantilever_periodic.yaml",
                         ["minimizer.norm=max", "minimizer.ftol_ev_per_a=1e-5"])
    problem = open_problem(config)
    try:
        loose = evaluate(problem)
    finally:
        problem.engine.close()
    assert all(st.converged and st.fmax_ev_per_a <= 1e-5 for st in loose.states)
    strict = results["cantilever_periodic"]
    assert loose.k_sym_ev_per_a2 == pytest.approx(strict.k_sym_ev_per_a2, rel=1e-4)
    assert sum(st.force_evaluations for st in loose.states) < sum(st.force_evaluations for st in strict.states)
