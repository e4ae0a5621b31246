"""Basin restarts: a displaced state that escapes the basin of u = 0 makes the batch relax again there.

The engine here is a fake with two basins, A (the lattice) and B (one atom hopped 2 Å, or 0.3 Å:
a drop that no bond change reveals), each a parabola in u with its own stiffness: a start in A
stays in A at u = 0 and falls into B at u != 0; a start in B stays in B. Real LAMMPS met both on
10^5-site cantilevers (docs/performance.md).
"""

import numpy as np
import pytest

from nanoto_driver.config import build_config
from nanoto_driver.engine import RelaxResult
from nanoto_driver.errors import DisplacementError, RelaxationError
from nanoto_driver.evaluate import open_problem
from nanoto_driver.stiffness import STATES, symmetric_curvature
from nanoto_driver.structure import DESIGN

K_A, K_B, E_B = 2.0, 3.0, -5.0  # eV/Å², eV/Å², eV: B is lower and stiffer
HOP = np.array([0.0, 0.0, 2.0])  # Å, far beyond max_nonaffine_a = 1 Å


class TwoBasins:
    name = "two-basins"
    ranks = 1

    def __init__(self, structure, escape_always=False, hop=HOP):
        self.structure = structure
        self.hop = hop
        self.hopper = int(np.flatnonzero(structure.kind == DESIGN)[len(structure.kind) // 3])
        self.escape_always = escape_always
        self.relaxed: list[float] = []  # u of every state actually relaxed

    def _in_b(self, positions):
        hopped = np.linalg.norm(positions[self.hopper] - self.structure.positions_a[self.hopper])
        return hopped > 0.5 * np.linalg.norm(self.hop)

    def relax(self, structure, occupancy, states_a, warm=None, done=(), on_state=None, in_flight=None):
        results = list(done)
        for n in range(len(done), len(states_a)):
            u = float(states_a[n])
            start = structure.positions_a if warm is None else warm.positions_a
            if n == 0:
                lands_in_b = self._in_b(start)
            else:  # a push sends A into B; B stays (or, escaping always, flips back to A)
                lands_in_b = not (self.escape_always and self._in_b(results[0].positions_a))
            self.relaxed.append(u)
            results.append(self._result(structure, occupancy, u, lands_in_b))
            if on_state is not None:
                on_state(results[-1])
        return results

    def _result(self, structure, occupancy, u, in_b):
        k, e0 = (K_B, E_B) if in_b else (K_A, 0.0)
        n = structure.n_sites
        energies = np.where(occupancy, (e0 + 0.5 * k * u * u) / occupancy.sum(), 0.0)
        positions = structure.positions_a + structure.affine_displacement_a(u)
        if in_b:
            positions[self.hopper] += self.hop
        return RelaxResult(u_a=u, site_energies_ev=energies, positions_a=positions,
                           engine_energy_ev=float(energies.sum()), reaction_ev_per_a=k * u, converged=True,
                           stop_reason="energy tolerance", iterations=10, force_evaluations=10 + n % 7,
                           fnorm_ev_per_a=0.0, fmax_ev_per_a=0.0, n_atoms=int(occupancy.sum()), wall_s=0.0)


@pytest.fixture(scope="module")
def structure():
    cfg = build_config({"engine": {"name": "harmonic"}, "domain": {"cells": [6, 3, 2]}})
    return open_problem(cfg).structure


def _curvature(engine, structure, **kw):
    occ = np.ones(structure.n_sites, bool)
    return symmetric_curvature(engine, structure, occ, 0.01, 1.0, **kw)


def test_escaped_state_restarts_the_batch_in_the_lower_basin(structure):
    engine = TwoBasins(structure)
    res = _curvature(engine, structure)
    assert res.k_sym_ev_per_a2 == pytest.approx(K_B, rel=1e-9)  # the curvature of basin B, not a mix
    assert res.basin_restarts == 1 and len(res.discarded) == len(STATES)
    assert engine.relaxed == [0.0, 0.01, -0.01] * 2
    per_state = sum(s.force_evaluations for s in res.states)
    assert res.force_evaluations == per_state + sum(r.force_evaluations for r in res.discarded)
    assert engine._in_b(res.relaxed[0].positions_a)  # u = 0 restarted from the escaped configuration


def test_a_drop_into_a_lower_basin_without_a_bond_change_is_an_escape_too(structure):
    # B is 5 eV lower and only 0.3 Å away: no bond moves by max_nonaffine_a, but the batch's
    # E(+δ) + E(-δ) - 2 E(0) is about -10 eV, which one basin never gives
    engine = TwoBasins(structure, hop=np.array([0.0, 0.0, 0.3]))
    res = _curvature(engine, structure)
    assert res.k_sym_ev_per_a2 == pytest.approx(K_B, rel=1e-9)
    assert res.basin_restarts == 1 and engine.relaxed == [0.0, 0.01, -0.01] * 2
    with pytest.raises(RelaxationError, match="not positive"):  # what a batch without restarts gives
        _curvature(TwoBasins(structure, hop=np.array([0.0, 0.0, 0.3])), structure, basin_restarts=0)


def test_without_restarts_an_escape_is_a_tear(structure):
    with pytest.raises(DisplacementError, match="basin_restarts"):
        _curvature(TwoBasins(structure), structure, basin_restarts=0)


def test_restarts_are_bounded(structure):
    engine = TwoBasins(structure, escape_always=True)  # every push flips the basin: never settles
    with pytest.raises(DisplacementError, match="every basin tried"):
        _curvature(engine, structure, basin_restarts=2)
    assert len(engine.relaxed) == 3 * len(STATES)


@pytest.mark.parametrize("n_done", [1, 3, 4, 5])
def test_resume_replays_the_states_of_every_attempt(structure, n_done):
    saved: list[RelaxResult] = []
    whole = _curvature(TwoBasins(structure), structure, on_state=saved.append)
    assert len(saved) == 2 * len(STATES)
    engine = TwoBasins(structure)
    resumed = _curvature(engine, structure, done=saved[:n_done])
    assert len(engine.relaxed) == len(saved) - n_done  # nothing relaxed twice
    assert resumed.k_sym_ev_per_a2 == whole.k_sym_ev_per_a2
    assert resumed.force_evaluations == whole.force_evaluations
    assert np.array_equal(resumed.alpha, whole.alpha)
