"""The coarse correction (nanoto_driver/coarse.py, minimizer.coarse_every): its pieces, then real LAMMPS."""

import ctypes
import time
from types import SimpleNamespace

import numpy as np
import pytest

from nanoto_driver import coarse
from nanoto_driver.coarse import (
    SpringPreconditioner,
    floppy_sites,
    hessian_product,
    network_bonds,
    spring_matrix,
    subspace_step,
    translation_modes,
)
from nanoto_driver.config import build_config
from nanoto_driver.engine_harmonic import bonds
from nanoto_driver.lammps_text import parse_log, split_at_minimize
from nanoto_driver.load_cases import build_structure
from nanoto_driver.structure import DESIGN

from .conftest import ROOT, evaluate_json, run_cli


def _cantilever(cells=(8, 4, 2)):
    return build_structure(build_config({"domain": {"cells": list(cells)}}).domain, 4.05)


def _rigid_body_modes(positions_a):
    """(3 n, 6): translations, then rotations in the (x, y), (y, z), (z, x) planes."""
    xyz = positions_a - positions_a.mean(axis=0)
    rotations = np.zeros((3 * len(xyz), 3))
    for m, (a, b) in enumerate(((0, 1), (1, 2), (2, 0))):
        rotations[a::3, m] = -xyz[:, b]
        rotations[b::3, m] = xyz[:, a]
    return np.hstack([translation_modes(len(xyz)), rotations])


def test_spring_network_has_the_rigid_modes_of_its_geometry():
    s = _cantilever()  # x, y free, z periodic: translations and the rotation about z cost nothing
    k = spring_matrix(s, np.ones(s.n_sites, bool))  # both shells: central springs keep rotations free
    modes = _rigid_body_modes(s.positions_a)
    null = [0, 1, 2, 3]  # translations x, y, z; rotation in the (x, y) plane
    assert np.abs(k @ modes[:, null]).max() < 1e-12
    assert np.abs(k @ modes[:, 4]).max() > 1e-3  # rotations that tilt z cross the periodic boundary


def test_direction_solves_the_spring_network_on_free_atoms():
    s = _cantilever()
    occ = np.ones(s.n_sites, bool)
    occ[np.flatnonzero(s.kind == DESIGN)[::7]] = False
    rng = np.random.default_rng(1)
    f = rng.normal(size=(s.n_sites, 3))
    pre = SpringPreconditioner(s, occ)
    free = np.repeat(pre.free_site, 3)
    assert free.sum() > 0.8 * 3 * (occ & (s.kind == DESIGN)).sum()
    k = spring_matrix(s, occ)[free][:, free]
    g = f.reshape(-1)[free]
    for iterations, bound in ((100, 2e-3), (3, 0.5)):  # to the solve tolerance; the default few iterations
        d = pre.direction(f, iterations)
        assert np.all(d.reshape(-1)[~free] == 0)  # clamp, load and empty sites never move
        residual = k @ d.reshape(-1)[free] + 1e-6 * d.reshape(-1)[free] - g
        assert np.linalg.norm(residual) < bound * np.linalg.norm(g)
        assert float(g @ d.reshape(-1)[free]) > 0  # a descent direction of the energy


def _share_of_exact_gain(structure, occupancy, forces, iterations, prolongator=None):
    """(g·d)² / (d·K d) / (g·K⁻¹g): how much of the exact solve's energy gain on the network the
    exact step along d = ``direction(forces, iterations)`` reaches (1 for the exact solve)."""
    pre = SpringPreconditioner(structure, occupancy, prolongator=prolongator)
    free = np.repeat(pre.free_site, 3)
    k = spring_matrix(structure, occupancy)[free][:, free]
    g = forces.reshape(-1)[free]
    exact = pre.direction(forces, 200).reshape(-1)[free]
    d = pre.direction(forces, iterations).reshape(-1)[free]
    return float((g @ d) ** 2 / (d @ (k @ d)) / (g @ exact))


def test_the_energy_minimizing_prolongator_does_more_per_multigrid_iteration():
    # why coarse.PROLONGATOR is not pyamg's Jacobi-smoothed default: a long wave along the beam plus
    # noise, on a cantilever large enough for a three-level hierarchy's middle level to matter
    s = _cantilever((24, 12, 3))
    occ = np.ones(s.n_sites, bool)
    occ[np.flatnonzero(s.kind == DESIGN)[::7]] = False
    x = s.positions_a
    f = np.sin(np.pi * (x[:, :1] - x[:, 0].min()) / np.ptp(x[:, 0])) * np.array([[0.3, 1.0, 0.1]])
    f = f + 0.05 * np.random.default_rng(0).standard_normal(f.shape)
    energy = _share_of_exact_gain(s, occ, f, 1)
    assert _share_of_exact_gain(s, occ, f, coarse.SOLVE_ITERATIONS) > 0.98
    jacobi = _share_of_exact_gain(s, occ, f, 1, coarse.JACOBI_PROLONGATOR)
    assert energy > jacobi + 0.05  # 0.94 against 0.83 here


def _pair_set(bonds_):
    i, j, _ = bonds_
    return set(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist(), strict=True))


def test_the_network_of_positions_is_the_lattice_network_on_the_lattice_and_follows_a_moved_atom():
    s = _cantilever((8, 4, 3))  # periodic along z, 3 cells: images must be told apart
    occ = np.ones(s.n_sites, bool)
    occ[::7] = False
    lo, hi = s.lattice.box_a()
    x = s.positions_a * np.array([1.002, 1.0, 1.0])  # strained along the beam: bonds turn by ~1e-3
    # LAMMPS keeps coordinates inside the box along a periodic axis: shift and wrap them there
    x[:, 2] = lo[2] + np.mod(x[:, 2] + 1.0 - lo[2], (hi - lo)[2]) - 1.0
    lattice, positions = network_bonds(s, occ), network_bonds(s, occ, x)
    for a, b in zip(lattice, positions, strict=True):
        assert _pair_set(a) == _pair_set(b) and len(a[0]) > 0
    # the bonds the lattice has keep its exact directions: the same matrix, the same zeros
    k_lattice, k_positions = spring_matrix(s, occ), spring_matrix(s, occ, positions)
    assert k_positions.nnz == k_lattice.nnz and abs(k_lattice - k_positions).max() < 1e-12
    # an interior atom moved onto an empty site is bonded where it now sits
    atom = np.flatnonzero(occ & (s.kind == DESIGN))[len(s.kind) // 2]
    empty = np.flatnonzero(~occ & (s.kind == DESIGN))
    target = empty[np.argmin(np.linalg.norm(s.positions_a[empty] - s.positions_a[atom], axis=1))]
    moved = s.positions_a.copy()
    moved[atom] = s.positions_a[target]
    first = network_bonds(s, occ, moved)[0]
    pretend = occ.copy()
    pretend[atom], pretend[target] = False, True  # the lattice network of an atom on the target site
    expected = {tuple(sorted((atom if p == target else p, atom if q == target else q)))
                for p, q in _pair_set(network_bonds(s, pretend)[0])}
    assert _pair_set(first) == expected
    i, j, unit = first  # its new bonds point from i to j where the atoms are (nearest image along z)
    mine = (i == atom) | (j == atom)
    d = moved[j[mine]] - moved[i[mine]]
    d[:, 2] -= (hi - lo)[2] * np.round(d[:, 2] / (hi - lo)[2])
    assert mine.sum() == sum(atom in pair for pair in expected) > 0
    assert np.allclose(unit[mine], d / np.linalg.norm(d, axis=1, keepdims=True))


def test_floppy_sites_are_atoms_whose_bonds_lie_in_a_plane():
    s = _cantilever((6, 4, 2))
    occ = np.ones(s.n_sites, bool)
    assert not floppy_sites(s, occ).any()  # every site of a full block has bonds in 3D
    i, j, unit = bonds(s, occ)
    coordination = np.bincount(i, minlength=s.n_sites) + np.bincount(j, minlength=s.n_sites)
    atom = np.flatnonzero((s.kind == DESIGN) & (coordination == 12))[0]  # an interior atom
    bonded = np.concatenate([j[i == atom], i[j == atom]])
    rel = np.concatenate([unit[i == atom], -unit[j == atom]])  # unit vectors from the atom
    assert len(bonded) == 12
    # keep two of its neighbours (a line through 3 atoms is never rigid) and then 3 in one (111) plane
    occ[bonded] = False
    occ[bonded[:2]] = True
    assert floppy_sites(s, occ)[atom]
    in_plane = bonded[np.abs(rel @ np.array([1.0, 1.0, 1.0])) < 1e-6][:3]
    occ[bonded] = False
    occ[in_plane] = True
    assert floppy_sites(s, occ)[atom]
    # a fourth neighbour out of that plane makes it rigid
    occ[bonded[np.abs(rel @ np.array([1.0, 1.0, 1.0])) > 1e-6][0]] = True
    assert not floppy_sites(s, occ)[atom]
    # the preconditioner leaves floppy atoms to CG
    occ[bonded] = False
    occ[bonded[:2]] = True
    pre = SpringPreconditioner(s, occ)
    assert not pre.free_site[atom]
    assert np.all(pre.direction(np.ones((s.n_sites, 3)))[atom] == 0)


def _quadratic(seed=2, n=12):
    """E(x) = ½ xᵀ A x - bᵀ x with A positive definite; forces f = b - A x."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, n))
    return q @ q.T + n * np.eye(n), rng.normal(size=n), rng


def test_the_subspace_step_on_one_direction_is_the_line_minimum():
    a, b, rng = _quadratic()
    x, d = rng.normal(size=12), rng.normal(size=12)
    f, eps = b - a @ x, 1e-3
    hd = hessian_product(f.reshape(-1, 3), (b - a @ (x + eps * d)).reshape(-1, 3), eps)
    (s,) = subspace_step(f.reshape(-1, 3), [d.reshape(-1, 3)], [hd])
    assert s == pytest.approx((f @ d) / (d @ a @ d), rel=1e-10)
    # negative curvature along d: no step
    assert subspace_step(f.reshape(-1, 3), [d.reshape(-1, 3)], [-hd]) is None


def test_the_subspace_step_is_the_minimum_over_the_plane_and_beats_the_line():
    a, b, rng = _quadratic(seed=5)
    x, d = rng.normal(size=12), rng.normal(size=12)
    f = b - a @ x
    s = (f @ d) / (d @ a @ d)
    g = f - s * (a @ d)
    c = subspace_step(f.reshape(-1, 3), [d.reshape(-1, 3), g.reshape(-1, 3)],
                      [(a @ d).reshape(-1, 3), (a @ g).reshape(-1, 3)])

    def energy(y):
        return 0.5 * y @ a @ y - b @ y

    plane = np.column_stack([d, g])  # the minimum over the plane, by least squares on the normal equations
    best = np.linalg.solve(plane.T @ a @ plane, plane.T @ f)
    assert c == pytest.approx(best, rel=1e-8)
    assert energy(x + plane @ c) < energy(x + s * d) - 1e-6


def test_a_state_relaxed_in_cycles_reports_the_sum_of_its_minimizations():
    def block(reason, it, ev, loop):
        return (f"Loop time of {loop} on 1 procs for {it} steps with 100 atoms\n\nMinimization stats:\n"
                f"  Stopping criterion = {reason}\n  Energy initial, next-to-last, final = \n"
                f"  Iterations, force evaluations = {it} {ev}\n")
    result = "NANOTO_RESULT label=s0 u=0 pe=-1.5 fnorm=1e-6 fmax=1e-7 reaction=0.25 natoms=100\n"
    text = (block("max iterations", 15, 30, 1.5) + "Loop time of 0.1 on 1 procs for 0 steps\n"
            + block("max iterations", 15, 31, 2.0) + block("force tolerance", 4, 9, 0.5) + result
            + block("force tolerance", 7, 14, 0.25) + result.replace("s0", "s1"))
    first, second = parse_log(text)
    assert (first.stats.stop_reason, first.stats.iterations, first.stats.force_evaluations) == \
        ("force tolerance", 34, 70)
    assert first.stats.loop_s == pytest.approx(4.0)
    assert (second.label, second.stats.iterations, second.stats.loop_s) == ("s1", 7, 0.25)


def test_split_at_minimize_leaves_the_command_out():
    before, after = split_at_minimize("a\nminimize 0.0 1e-8 10 100\nprint x\n")
    assert (before, after) == ("a\n", "print x\n")
    with pytest.raises(ValueError):
        split_at_minimize("no minimization here")


@pytest.mark.lammps
def test_coarse_correction_gives_the_same_stiffness_with_fewer_force_evaluations(lammps_ok):
    demo = ROOT / "workflows" / "examples" / "optimize_cantilever.yaml"
    sets = ["domain.cells=[32, 16, 3]", "minimizer.norm=max", "minimizer.ftol_ev_per_a=1e-5"]
    plain = evaluate_json(demo, *sets)
    coarse = evaluate_json(demo, *sets, "minimizer.coarse_every=15")
    again = evaluate_json(demo, *sets, "minimizer.coarse_every=15")
    assert coarse["k_sym_ev_per_a2"] == pytest.approx(plain["k_sym_ev_per_a2"], rel=1e-4)
    assert coarse["force_evaluations"] < 0.6 * plain["force_evaluations"]
    assert again["k_sym_ev_per_a2"] == coarse["k_sym_ev_per_a2"]  # deterministic: resumes reproduce it
    assert all(s["converged"] for s in coarse["states"])


@pytest.mark.lammps
@pytest.mark.mpi
def test_coarse_correction_on_two_ranks_agrees_with_one(lammps_ok):
    demo = ROOT / "workflows" / "examples" / "optimize_cantilever.yaml"
    sets = ["domain.cells=[24, 12, 3]", "minimizer.norm=max", "minimizer.ftol_ev_per_a=1e-5",
            "minimizer.coarse_every=15"]
    one, two = evaluate_json(demo, *sets), evaluate_json(demo, *sets, ranks=2)
    assert two["mpi_ranks"] == 2
    assert two["k_sym_ev_per_a2"] == pytest.approx(one["k_sym_ev_per_a2"], rel=1e-4)


def test_coarse_correction_is_refused_by_the_executable_engine():
    demo = ROOT / "workflows" / "examples" / "optimize_cantilever.yaml"
    proc = run_cli("evaluate", str(demo), "--set", "engine.name=lammps-exe", "--set", "minimizer.coarse_every=15")
    assert proc.returncode == 2 and "coarse_every needs the in-process engine" in proc.stderr


class _FakeLammps:
    """The few calls of the correction cycle on a toy energy E(x) = Σ (½ x² + c x⁴ - g x), forces
    -dE/dx; ``minimize`` takes one steepest-descent step per iteration, up to its cap, and
    stops for good after ``stop_after`` steps in all (its tolerance)."""

    def __init__(self, x, quartic, tilt, stop_after):
        self.x, self.c, self.g = x.astype(float), quartic, tilt
        self.step, self.stop_after, self.runs = 0, stop_after, 0

    def forces(self):
        return -(self.x + 4 * self.c * self.x ** 3 - self.g)

    def command(self, text):
        if text.startswith("minimize"):
            cap = int(text.split()[3])
            ran = min(cap, self.stop_after - self.step)
            for _ in range(ran):
                self.x += 0.1 * self.forces()
            self.step += ran
        else:
            self.runs += 1  # run 0: one force evaluation

    def extract_global(self, name):
        return self.step

    def get_thermo(self, name):
        return float(np.sum(0.5 * self.x ** 2 + self.c * self.x ** 4 - self.g * self.x))

    def gather_subset(self, name, kind, count, n, ids):
        values = self.x if name == "x" else self.forces()
        return (ctypes.c_double * values.size)(*values.reshape(-1))

    def scatter_subset(self, name, kind, count, n, ids, buffer):
        self.x = np.ctypeslib.as_array(buffer).reshape(self.x.shape).copy()


NO_BONDS = (np.zeros(0, int), np.zeros(0, int))


def _engine_on(fake, direction, every=4, bonds_between=NO_BONDS, secant_pairs=0):
    from nanoto_driver.engine_lammps import CORRECTION_VECTORS, LammpsEngine
    from nanoto_driver.lammps_text import ScriptSettings

    engine = object.__new__(LammpsEngine)
    engine._lmp, engine.comm, engine.rank, engine.coarse_every, engine._coarse_s = fake, None, 0, every, 0.0
    engine._solve_s, engine.correction_vectors = 0.0, CORRECTION_VECTORS
    engine.secant_pairs, engine._secant = secant_pairs, []
    engine.settings = ScriptSettings(maxiter=1000)
    engine._direction = lambda structure, occupancy, ids, f: direction(f)
    engine._bond_ends = lambda structure, occupancy: bonds_between
    return engine


def test_a_correction_that_overshoots_is_retried_at_a_quarter_step():
    # from x = 0 the curvature is 1, the quadratic model's step lands on x = 1, up the quartic wall
    # (E = 1.5 per component against 0); a quarter of it, x = 0.25, is downhill (E = -0.21)
    fake = _FakeLammps(np.zeros((4, 3)), quartic=2.0, tilt=1.0, stop_after=10**6)
    engine = _engine_on(fake, lambda f: (time.sleep(0.05), 3.0 * f)[1])  # a solve that takes 50 ms
    e0 = fake.get_thermo("pe")
    kept, evaluations = engine._coarse_correction(None, None, np.arange(1, 5))
    assert kept and evaluations == 3  # probe, full step (rejected), quarter step
    assert 0.05 <= engine._solve_s < 0.5  # the solve is booked as such (the time outside LAMMPS)
    assert fake.get_thermo("pe") < e0
    assert np.allclose(fake.x, 0.25, rtol=1e-3)


def test_a_correction_reaches_the_minimum_when_the_network_errs_on_half_the_atoms():
    # E = Σ ½ x² - x (minimum at x = 1); the "network" answers d = f on half the atoms and 5 f on
    # the other half, so the line step along d stops short; span{d, g} holds the exact answer
    fake = _FakeLammps(np.zeros((4, 3)), quartic=0.0, tilt=1.0, stop_after=10**6)
    weight = np.repeat([1.0, 5.0], 6).reshape(4, 3)
    engine = _engine_on(fake, lambda f: weight * f)
    kept, evaluations = engine._coarse_correction(None, None, np.arange(1, 5))
    assert kept and evaluations == 3  # probe along d, probe along g, the step
    assert np.allclose(fake.x, 1.0, atol=1e-5)
    line = (weight.sum()) / (weight ** 2).sum()  # s = f·d / d·d with f = 1, H = 1
    assert not np.allclose(line * weight, 1.0, atol=0.1)  # what the line step alone would have reached


def test_a_correction_moves_no_atom_farther_than_the_trust_length():
    # E = Σ ½ x² - 10 x: the exact step moves every coordinate by 10 Å; the correction stops at
    # MAX_MOVE_A per atom along the same direction, and that lowers the energy, so it is kept
    from nanoto_driver.coarse import MAX_MOVE_A, limit_move

    fake = _FakeLammps(np.zeros((4, 3)), quartic=0.0, tilt=10.0, stop_after=10**6)
    # bonded in pairs: the move is a rigid translation, which changes no bond and is not bounded by them
    engine = _engine_on(fake, lambda f: f, bonds_between=(np.array([0, 2]), np.array([1, 3])))
    e0 = fake.get_thermo("pe")
    kept, _ = engine._coarse_correction(None, None, np.arange(1, 5))
    assert kept and fake.get_thermo("pe") < e0
    assert np.allclose(np.linalg.norm(fake.x, axis=1), MAX_MOVE_A)
    assert np.allclose(fake.x, MAX_MOVE_A / np.sqrt(3.0))  # the exact step's direction, shortened
    small = np.full((2, 3), 0.1)
    assert limit_move(small, MAX_MOVE_A) is small  # a move within the length is left alone


def test_a_correction_changes_no_bond_by_more_than_a_cg_step():
    # E = Σ ½ x²: atom 0 starts 0.5 Å off in every direction, its bonded neighbour 1 at rest. The
    # exact step takes atom 0 home, a bond change of 0.87 Å; the correction goes the same way until
    # the bond has changed by MAX_BOND_CHANGE_A, and that lowers the energy, so it is kept
    from nanoto_driver.coarse import MAX_BOND_CHANGE_A, limit_bond_change

    x0 = np.zeros((4, 3))
    x0[0] = 0.5
    fake = _FakeLammps(x0, quartic=0.0, tilt=0.0, stop_after=10**6)
    engine = _engine_on(fake, lambda f: f, bonds_between=(np.array([0, 2]), np.array([1, 3])))
    e0 = fake.get_thermo("pe")
    kept, _ = engine._coarse_correction(None, None, np.arange(1, 5))
    assert kept and fake.get_thermo("pe") < e0
    assert np.isclose(np.linalg.norm(fake.x[0] - fake.x[1]), np.linalg.norm(x0[0]) - MAX_BOND_CHANGE_A)
    assert np.allclose(fake.x[0], 0.5 - MAX_BOND_CHANGE_A / np.sqrt(3.0))  # towards home, shortened
    assert np.allclose(fake.x[1:], 0.0)
    small = np.full((2, 3), 0.05)
    assert limit_bond_change(small, (np.array([0]), np.array([1])), MAX_BOND_CHANGE_A) is small


def test_a_batch_bonds_its_network_where_it_starts():
    from nanoto_driver.engine import WarmStart
    from nanoto_driver.engine_lammps import network_of

    s = _cantilever()
    assert network_of(None) == ("", None)  # a cold start: the lattice network
    start = s.positions_a + 0.01
    digest, where = network_of(WarmStart(start))
    assert where is not None and np.array_equal(where, start)
    # the same start (a batch resumed after a stop) gives the same key; another one (a basin restart) not
    assert network_of(WarmStart(start.copy(), None))[0] == digest
    moved = start.copy()
    moved[3, 0] += 1e-9
    assert network_of(WarmStart(moved))[0] != digest


def test_bond_rows_are_the_first_neighbour_bonds_of_the_atoms_in_site_order():
    from nanoto_driver.coarse import bond_rows

    s = _cantilever()
    occ = np.ones(s.n_sites, bool)
    occ[::7] = False  # some empty sites
    i, j = bond_rows(s, occ)
    si, sj, _ = bonds(s, occ)
    sites = np.flatnonzero(occ)
    assert np.array_equal(sites[i], si) and np.array_equal(sites[j], sj)


class _StiffnessesLammps(_FakeLammps):
    """E(x) = Σ ½ k x² - 0.1 x with a stiffness k per coordinate: modes that a network answering
    d = f gets wrong wherever k is not 1."""

    def __init__(self, x, stiffness):
        super().__init__(x, quartic=0.0, tilt=0.1, stop_after=10**6)
        self.k = stiffness

    def forces(self):
        return -(self.k * self.x - self.g)

    def get_thermo(self, name):
        return float(np.sum(0.5 * self.k * self.x ** 2 - self.g * self.x))


def _error_after_corrections(secant_pairs, corrections=5):
    """E - E_min after ``corrections`` corrections, each followed by one step of descent (CG's cycle)."""
    stiffness = np.array([1.0, 0.3, 0.2, 1.0, 0.5, 0.2, 2.0, 0.3, 0.7, 2.0, 0.25, 1.5]).reshape(4, 3)
    fake = _StiffnessesLammps(np.zeros((4, 3)), stiffness)
    engine = _engine_on(fake, lambda f: f, secant_pairs=secant_pairs)
    engine._structure, engine._box_lengths = SimpleNamespace(periodic=(False, False, False)), lambda: np.full(3, 50.0)
    for _ in range(corrections):
        kept, evaluations = engine._coarse_correction(None, None, np.arange(1, 5))
        assert kept and evaluations == 3  # two probes, the step: the secant pairs cost none
        fake.command("minimize 0 0 1 0")
    return fake.get_thermo("pe") - float(np.sum(-0.5 * fake.g ** 2 / stiffness))


def test_secant_pairs_find_the_slow_modes_the_network_misses():
    # without them each correction sees span{d, g} only; with them also the steps between the
    # corrections (measured here: 3e-5 against 2e-7 above the minimum after 5 corrections)
    plain, secant = _error_after_corrections(0), _error_after_corrections(4)
    assert 0 < secant < plain / 20


def test_secant_steps_take_the_nearest_image_across_a_periodic_axis():
    engine = _engine_on(None, lambda f: f, secant_pairs=2)
    engine._structure = SimpleNamespace(periodic=(False, False, True))
    engine._box_lengths = lambda: np.array([50.0, 50.0, 12.0])
    x0 = np.array([[1.0, 1.0, 11.99], [2.0, 2.0, 6.0]])
    f0 = np.ones((2, 3))
    assert engine._secant_history(x0, f0) == ([], [])  # one record: no step yet
    x1 = x0 + np.array([[0.0, 0.0, 0.02], [0.01, 0.0, 0.0]])
    x1[0, 2] -= 12.0  # LAMMPS wrapped the atom that crossed the boundary
    steps, changes = engine._secant_history(x1, 3 * f0)
    assert np.allclose(steps[0], [[0.0, 0.0, 0.02], [0.01, 0.0, 0.0]])
    assert np.allclose(changes[0], -2 * f0)


def test_undone_corrections_end_the_cycle_after_three_in_a_row():
    from nanoto_driver.engine_lammps import MAX_FAILED_CORRECTIONS

    fake = _FakeLammps(np.full((2, 3), 0.5), quartic=0.0, tilt=0.0, stop_after=40)
    engine = _engine_on(fake, lambda f: -f)  # uphill: the exact step is 0, never kept
    x_before = fake.x.copy()
    evaluations = engine._minimize_in_cycles(None, None, np.arange(1, 3))
    # cycles of 4 CG steps, MAX_FAILED corrections of 1 evaluation each (the probe), then plain CG to the end
    assert evaluations == MAX_FAILED_CORRECTIONS
    assert fake.step == 40
    assert np.all(np.abs(fake.x) < np.abs(x_before))


@pytest.mark.lammps
def test_a_minimization_leaves_the_energy_and_forces_of_where_it_stopped(lammps_ok):
    """A correction starts from the energy, positions and forces LAMMPS holds after a `minimize`,
    without evaluating them again: they are those of a full `run 0` at the same positions, to
    round-off (the set-up sorts the atoms in memory, which can reorder the sums), whether CG
    stopped on its iteration cap (a cycle) or on its tolerance."""
    from nanoto_driver.engine_lammps import FORCE_AFTER_MINIMIZE
    from nanoto_driver.evaluate import open_problem

    config = build_config({"domain": {"cells": [12, 6, 3]}, "minimizer": {"norm": "max"}})
    problem = open_problem(config)
    engine, s = problem.engine, problem.structure
    try:
        occ = np.ones(s.n_sites, bool)
        occ[np.flatnonzero(s.kind == DESIGN)[::5]] = False  # surfaces inside: forces everywhere
        ids = np.flatnonzero(occ) + 1
        engine._ensure_setup(s)
        engine._load_atoms(s, occ, ids, s.positions_a)
        for cap in (1, 5, 8, 10_000):
            engine._lmp.command(f"minimize 0.0 1e-6 {cap} 100000")
            left = [float(engine._lmp.get_thermo("pe")), engine._gather("x", 3, ids), engine._gather("f", 3, ids)]
            engine._lmp.command(FORCE_AFTER_MINIMIZE)
            again = [float(engine._lmp.get_thermo("pe")), engine._gather("x", 3, ids), engine._gather("f", 3, ids)]
            assert left[0] == pytest.approx(again[0], rel=1e-13) and np.array_equal(left[1], again[1])
            # round-off of sums of pair terms of order 1 eV/Å, however small the net force
            np.testing.assert_allclose(left[2], again[2], rtol=0, atol=1e-12)
            assert np.abs(left[2]).max() > 1e-9
    finally:
        engine.close()


@pytest.mark.lammps
@pytest.mark.parametrize("scale_a", [0.01, 1.5])  # within half the 2 Å skin, and past it (lists rebuilt)
def test_a_force_evaluation_without_set_up_gives_the_set_up_forces(lammps_ok, scale_a):
    """The correction's later evaluations skip LAMMPS' set-up (engine_lammps.FORCE_AGAIN): the same
    energy and forces to round-off (the set-up also sorts the atoms in memory by position, which
    can change the order of the sums); a stale or partial evaluation would miss by far more."""
    from nanoto_driver.engine_lammps import FORCE_AGAIN
    from nanoto_driver.evaluate import open_problem

    config = build_config({"domain": {"cells": [12, 6, 3]}, "minimizer": {"norm": "max"}})
    problem = open_problem(config)
    engine, s = problem.engine, problem.structure
    try:
        occ = np.ones(s.n_sites, bool)
        ids = engine.start_of_a_correction(s, occ)
        x = engine._gather("x", 3, ids)
        move = np.random.default_rng(1).normal(0.0, scale_a, x.shape)
        seen = []
        # two new positions, each evaluated without set-up first (a stale result would show) then with it
        for command in (FORCE_AGAIN, "run 0 post no", FORCE_AGAIN, "run 0 post no"):
            engine._scatter_x(ids, x + move * (1 + len(seen) // 2))
            engine._lmp.command(command)
            seen.append((float(engine._lmp.get_thermo("pe")), engine._gather("f", 3, ids)))
    finally:
        engine.close()
    for quick, full in (seen[0:2], seen[2:4]):
        assert quick[0] == pytest.approx(full[0], rel=1e-13)
        np.testing.assert_allclose(quick[1], full[1], rtol=0, atol=1e-10 * np.abs(full[1]).max())
    assert seen[0][0] != seen[2][0]
