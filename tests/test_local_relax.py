"""The region around a BESO step's changes is relaxed first, in a system of its own (local_relax.py)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from nanoto_driver import local_relax as local_relax_module
from nanoto_driver.bond_changes import rearranged_sites
from nanoto_driver.cleanup import first_shell_table, padded_table
from nanoto_driver.config import load_config
from nanoto_driver.design import initial_occupancy
from nanoto_driver.engine import RelaxResult, WarmStart
from nanoto_driver.engine_lammps import settings_from, tolerance
from nanoto_driver.evaluate import local_relax, open_problem, tail_polish
from nanoto_driver.load_cases import build_structure
from nanoto_driver.local_relax import (
    LocalRelax,
    TailPolish,
    changed_region,
    grow,
    polish_tail,
    region_around,
    relax_changes,
    shell_hops_for,
)
from nanoto_driver.shells import neighbor_table
from nanoto_driver.stiffness import symmetric_curvature
from nanoto_driver.structure import CLAMP, DESIGN

from .conftest import EXAMPLES

SETS = ["domain.cells=[24, 12, 3]", "minimizer.norm=max", "minimizer.ftol_ev_per_a=1e-5",
        "minimizer.coarse_every=8"]


def _notch(structure, occupancy):
    """``occupancy`` without the design sites of a block at the top surface, mid-span."""
    i, j = structure.lattice.index[:, 1], structure.lattice.index[:, 2]
    nx, ny, _ = structure.lattice.cells
    cut = (abs(i - nx // 2) <= 1) & (j >= ny - 3) & (structure.kind == DESIGN)
    return occupancy & ~cut


def test_two_potential_cutoffs_take_seven_hops_for_al_mm():
    # Al_mm.eam.fs: cutoff 6.5 Å, a0 4.05 Å; 7 hops reach 14.2 Å along a cube axis, 6 only 12.2
    assert shell_hops_for(6.5, 4.05) == 7
    assert shell_hops_for(6.0, 4.0) == 6


def test_the_region_holds_design_atoms_near_the_changes_and_the_shell_closes_it():
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", ["domain.cells=[20, 10, 3]"])
    structure = build_structure(config.domain, 4.05, 6.5)
    before = np.ones(structure.n_sites, bool)
    after = _notch(structure, before)
    local = LocalRelax(hops=2, shell_hops=3)
    region, shell = changed_region(structure, before, after, local)
    table = padded_table(neighbor_table(structure.lattice.cells, structure.periodic, 1))
    changed = before != after
    assert region.any() and shell.any() and not (region & shell).any()
    assert not (region & ~after).any() and not (shell & ~after).any()
    assert (structure.kind[region] == DESIGN).all()
    # exactly the design atoms within 2 hops of a changed site
    assert np.array_equal(region, grow(table, changed, 2) & after & (structure.kind == DESIGN))
    # every atom within 3 hops of the region is in the region or the shell: none is left out
    assert not (grow(table, region, 3) & after & ~region & ~shell).any()
    # atoms far from the notch take no part
    assert (region | shell).sum() < after.sum() / 3


def test_nothing_changed_means_nothing_to_relax():
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", ["domain.cells=[20, 10, 3]"])
    structure = build_structure(config.domain, 4.05, 6.5)
    occupancy = np.ones(structure.n_sites, bool)
    warm = WarmStart(structure.positions_a.copy(), None, occupancy.copy())
    assert relax_changes(object(), structure, occupancy, warm, LocalRelax(3, 7)) == (warm, None)  # type: ignore[arg-type]
    no_previous = WarmStart(structure.positions_a.copy())
    assert relax_changes(object(), structure, occupancy, no_previous, LocalRelax(3, 7)) == (no_previous, None)  # type: ignore[arg-type]


def test_a_part_holding_more_than_max_share_of_the_atoms_is_left_to_the_whole_design(caplog):
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", ["domain.cells=[20, 10, 3]"])
    structure = build_structure(config.domain, 4.05, 6.5)
    before = np.ones(structure.n_sites, bool)
    after = _notch(structure, before)
    warm = WarmStart(structure.positions_a.copy(), None, before)
    region, shell = changed_region(structure, before, after, LocalRelax(2, 3))
    share = (region | shell).sum() / after.sum()
    assert 0.05 < share < 1 / 3  # (the region test above)
    # the engine is never asked: object() has no relax
    with caplog.at_level("INFO", logger="nanoto"):
        assert relax_changes(object(), structure, after, warm, LocalRelax(2, 3, share - 0.01)) == (warm, None)  # type: ignore[arg-type]
    assert "local_max_share" in caplog.text
    with pytest.raises(AttributeError, match="relax"):  # just under the share it goes to the engine
        relax_changes(object(), structure, after, warm, LocalRelax(2, 3, share + 0.01))  # type: ignore[arg-type]


def _notch_without_and_with(sets: list[str], option: str):
    """The notched design relaxed warm from the full one, without and with the symmetric_curvature
    keyword ``option`` (local or polish) as the config with ``sets`` defines it; returns the
    option, the shell hops two cutoffs take, both results and the notched design."""
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", [*SETS, *sets, "minimizer.local_max_share=1"])
    problem = open_problem(config)
    try:
        s, delta = problem.structure, problem.delta_a()
        before = initial_occupancy(config.design, s)
        after = _notch(s, before)
        first = symmetric_curvature(problem.engine, s, before, delta)
        warm = WarmStart(first.relaxed[0].positions_a, first.response_a, before)
        setting = {"local": local_relax, "polish": tail_polish}[option](problem)
        shell = shell_hops_for(problem.potential.cutoff_a, problem.a0_a)
        without = symmetric_curvature(problem.engine, s, after, delta, warm=warm)
        with_it = symmetric_curvature(problem.engine, s, after, delta, warm=warm, **{option: setting})
    finally:
        problem.engine.close()
    return setting, shell, without, with_it, after


@pytest.mark.lammps
def test_relaxing_the_notch_first_ends_in_the_same_minimum_and_counts_the_part_by_its_atoms(lammps_ok):
    local, shell, plain, first_local, after = _notch_without_and_with(["minimizer.local_hops=4"], "local")
    assert local == LocalRelax(4, shell, 1.0)
    part = first_local.local
    assert plain.local is None and part is not None and part.converged
    assert part.n_atoms < after.sum()
    # the same minimum: K_sym and E(0) as without the local relaxation
    assert first_local.k_sym_ev_per_a2 == pytest.approx(plain.k_sym_ev_per_a2, rel=1e-4)
    assert first_local.relaxed[0].energy_ev == pytest.approx(plain.relaxed[0].energy_ev, abs=1e-3)
    # the part's force evaluations count by its share of the atoms (what it saves is measured at
    # scale, bench/warm_start.py: on a design this small u = 0 costs tens from either start)
    whole = sum(st.force_evaluations for st in first_local.states)
    share = part.force_evaluations * part.n_atoms / first_local.relaxed[0].n_atoms
    assert first_local.force_evaluations == whole + round(share)


def _energy(engine, structure, occupancy, positions) -> float:
    """LAMMPS' total energy of ``occupancy`` at ``positions`` (n_sites, 3) Å, unrelaxed (eV)."""
    engine._ensure_setup(structure)
    engine._load_atoms(structure, occupancy, np.flatnonzero(occupancy) + 1, positions)
    engine._lmp.command("run 0 post no")
    return float(engine._lmp.get_thermo("pe"))


@pytest.mark.lammps
@pytest.mark.parametrize("shell_hops", [None, 2])
def test_the_shell_makes_the_part_lower_the_whole_design_energy_by_its_own_drop(lammps_ok, shell_hops):
    # With a shell two cutoffs thick, every energy term that depends on a region atom is in the
    # part, so relaxing the part lowers the whole design's energy by exactly the part's drop. A
    # shell of 2 hops (5.7 Å at most, under one cutoff) misses terms, and the two drops differ.
    config = load_config(EXAMPLES / "optimize_cantilever.yaml",
                         [*SETS, "minimizer.local_hops=3", "minimizer.local_max_share=1"])
    problem = open_problem(config)
    try:
        s, engine = problem.structure, problem.engine
        before = initial_occupancy(config.design, s)
        after = _notch(s, before)
        start = symmetric_curvature(engine, s, before, problem.delta_a()).relaxed[0].positions_a
        local = local_relax(problem)
        if shell_hops is not None:
            local = LocalRelax(local.hops, shell_hops)
        relaxed, part = relax_changes(engine, s, after, WarmStart(start, None, before), local)
        region, shell = changed_region(s, before, after, local)
        kind = s.kind.copy()
        kind[shell & (kind == DESIGN)] = CLAMP
        part_structure = dataclasses.replace(s, kind=kind)
        part_drop = part.engine_energy_ev - _energy(engine, part_structure, region | shell, start)
        whole_drop = _energy(engine, s, after, relaxed.positions_a) - _energy(engine, s, after, start)
    finally:
        engine.close()
    assert part_drop < -1e-3  # the notch's new surfaces relaxed
    if shell_hops is None:
        assert whole_drop == pytest.approx(part_drop, rel=1e-6, abs=1e-6)
    else:
        assert abs(whole_drop - part_drop) > 1e-4


class _Scripted:
    """An engine that records its calls: the whole design's relaxation moves ``moved`` sites by 1.5 Å
    along x; a part's relaxation moves its atoms by 0.01 Å along y."""

    def __init__(self, moved: np.ndarray) -> None:
        self.moved, self.calls = moved, []

    def relax(self, structure, occupancy, states_a, warm=None, done=(), on_state=None, in_flight=None,
              plain=False, ftol_ev_per_a=None):
        self.calls.append({"occupancy": occupancy.copy(), "plain": plain, "ftol": ftol_ev_per_a,
                           "in_flight": in_flight, "kind": structure.kind.copy()})
        start = structure.positions_a if warm is None else warm.positions_a
        positions = start.copy()
        if plain:
            positions[occupancy] += [0.0, 0.01, 0.0]
        else:
            positions[self.moved] += [1.5, 0.0, 0.0]
        n = structure.n_sites
        return [RelaxResult(u_a=0.0, site_energies_ev=np.zeros(n), positions_a=positions, engine_energy_ev=0.0,
                            reaction_ev_per_a=0.0, converged=True, stop_reason="force tolerance", iterations=3,
                            force_evaluations=7 if plain else 11, fnorm_ev_per_a=0.0, fmax_ev_per_a=0.0,
                            n_atoms=int(occupancy.sum()), wall_s=0.0)]


def test_the_tail_polish_relaxes_the_atoms_that_moved_and_their_region_in_a_part():
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", ["domain.cells=[20, 10, 3]"])
    structure = build_structure(config.domain, 4.05, 6.5)
    occupancy = np.ones(structure.n_sites, bool)
    moved = np.zeros(structure.n_sites, bool)
    moved[np.flatnonzero((structure.kind == DESIGN) & (structure.lattice.index[:, 2] == 9))[:4]] = True
    engine = _Scripted(moved)
    polish = TailPolish(1e-3, LocalRelax(2, 3))
    response = np.ones((structure.n_sites, 3))
    warm = WarmStart(structure.positions_a.copy(), response, occupancy)
    start, results = polish_tail(engine, structure, occupancy, warm, polish)  # type: ignore[arg-type]
    loose, part = engine.calls
    # first the whole design to the loose tolerance, keeping no progress; then a plain part
    assert loose["ftol"] == 1e-3 and not loose["plain"] and loose["in_flight"] is None
    assert np.array_equal(loose["occupancy"], occupancy)
    # seeds: the atoms at either end of a bond that changed by more than 1 Å, the moved ones and
    # their neighbours (the lattice's bonds changed by 1.5 Å, as the scripted engine moved them)
    seeds = rearranged_sites(structure, occupancy, results[0].positions_a, structure.positions_a, 1.0)
    table = first_shell_table(structure.lattice.cells, structure.periodic)
    assert np.array_equal(seeds, grow(table, moved, 1) & occupancy)
    region, shell = region_around(structure, seeds, occupancy, polish.local)
    assert part["plain"] and part["ftol"] is None and np.array_equal(part["occupancy"], region | shell)
    assert (part["kind"][shell & (structure.kind == DESIGN)] == CLAMP).all()  # the shell is held
    assert [r.force_evaluations for r in results] == [11, 7]
    # the start of u = 0: the part's positions in the region, the loose ones elsewhere; the
    # previous response and occupancy kept for the displaced states and the records
    expected = structure.positions_a.copy()
    expected[moved] += [1.5, 0.0, 0.0]
    expected[region] += [0.0, 0.01, 0.0]
    assert np.allclose(start.positions_a, expected)
    assert start.response_a is response and start.previous_occupancy is occupancy

    nothing = _Scripted(np.zeros(structure.n_sites, bool))  # no bond changed by 1 Å: no part
    start, results = polish_tail(nothing, structure, occupancy, None, polish)  # type: ignore[arg-type]
    assert len(nothing.calls) == 1 and len(results) == 1 and start.response_a is None
    assert np.array_equal(start.positions_a, structure.positions_a)


@pytest.mark.lammps
def test_a_polished_tail_ends_in_the_same_minimum_and_counts_each_stage(lammps_ok, monkeypatch):
    # A bond change of 0.15 Å counts here, so that the relaxed surfaces (corners) make a part on a
    # design this small (what the polish saves where thin parts reconstruct: bench/warm_start.py)
    monkeypatch.setattr(local_relax_module, "MOVED_A", 0.15)
    polish, shell, plain, polished, after = _notch_without_and_with(["minimizer.polish_ftol_ev_per_a=1e-3"], "polish")
    assert polish == TailPolish(1e-3, LocalRelax(3, shell, 1.0))
    loose, part = polished.polish
    assert plain.polish == () and loose.n_atoms == after.sum() and part.converged
    assert 0 < part.n_atoms < after.sum() and loose.converged and loose.fmax_ev_per_a <= 1e-3
    assert polished.k_sym_ev_per_a2 == pytest.approx(plain.k_sym_ev_per_a2, rel=1e-4)
    assert polished.relaxed[0].energy_ev == pytest.approx(plain.relaxed[0].energy_ev, abs=1e-3)
    whole = sum(st.force_evaluations for st in polished.states)
    assert polished.force_evaluations == whole + loose.force_evaluations + round(
        part.force_evaluations * part.n_atoms / polished.relaxed[0].n_atoms)


def test_a_tolerance_for_one_call_is_set_inside_and_restored_whatever_happens():
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", SETS)
    engine = SimpleNamespace(settings=settings_from(config))
    strict = engine.settings
    with tolerance(engine, None):
        assert engine.settings is strict
    with pytest.raises(RuntimeError), tolerance(engine, 1e-3):
        assert engine.settings.ftol_ev_per_a == 1e-3
        assert dataclasses.replace(engine.settings, ftol_ev_per_a=strict.ftol_ev_per_a) == strict
        raise RuntimeError("a relaxation failed")
    assert engine.settings is strict
