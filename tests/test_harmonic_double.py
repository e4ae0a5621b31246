"""Invariants of the symmetric curvature on the analytic test double (fast, exact)."""

import numpy as np
import pytest

from nanoto_driver.config import DomainConfig
from nanoto_driver.engine_harmonic import HarmonicEngine
from nanoto_driver.load_cases import build_structure
from nanoto_driver.stiffness import symmetric_curvature


@pytest.fixture(scope="module")
def pillar():
    return build_structure(DomainConfig(load_case="pillar", cells=(3, 3, 8)), 4.05)


def test_sum_alpha_equals_k_sym_and_empty_sites_are_zero(pillar):
    occ = np.ones(pillar.n_sites, bool)
    occ[np.flatnonzero(pillar.kind == 0)[::7]] = False
    r = symmetric_curvature(HarmonicEngine(), pillar, occ, 0.04)
    assert r.sum_alpha_ev_per_a2 == pytest.approx(r.k_sym_ev_per_a2, rel=1e-10)
    assert np.all(r.alpha[~occ] == 0.0)


def test_one_sided_bias_is_exactly_the_residual_force_term(pillar):
    occ = np.ones(pillar.n_sites, bool)
    eng = HarmonicEngine()
    results = [symmetric_curvature(eng, pillar, occ, d) for d in (0.01, 0.04)]
    for r in results:
        assert abs(r.residual_force_ev_per_a) > 0.1  # pre-tension leaves a residual force
        assert r.k_fwd_ev_per_a2 == pytest.approx(
            r.k_sym_ev_per_a2 + 2 * r.residual_force_ev_per_a / r.delta_a, rel=1e-8)
        assert r.k_force_ev_per_a2 == pytest.approx(r.k_sym_ev_per_a2, rel=1e-6)
    assert results[0].k_sym_ev_per_a2 == pytest.approx(results[1].k_sym_ev_per_a2, rel=1e-9)


def test_no_pretension_no_bias(pillar):
    r = symmetric_curvature(HarmonicEngine(t=0.0), pillar, np.ones(pillar.n_sites, bool), 0.04)
    assert r.k_fwd_ev_per_a2 == pytest.approx(r.k_sym_ev_per_a2, rel=1e-9)


def test_removing_atoms_softens(pillar):
    eng = HarmonicEngine()
    full = np.ones(pillar.n_sites, bool)
    holed = full.copy()
    holed[np.flatnonzero(pillar.kind == 0)[::3]] = False
    k_full = symmetric_curvature(eng, pillar, full, 0.04).k_sym_ev_per_a2
    k_holed = symmetric_curvature(eng, pillar, holed, 0.04).k_sym_ev_per_a2
    assert 0 < k_holed < k_full
