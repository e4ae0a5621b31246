"""``engine.empty_sites``: deleted atoms and type-4 atoms in no pair are the same physics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nanoto_driver.config import load_config
from nanoto_driver.design import initial_occupancy
from nanoto_driver.evaluate import open_problem
from nanoto_driver.stiffness import symmetric_curvature

from .conftest import EXAMPLES, ROOT, run_cli

pytestmark = pytest.mark.lammps


def _holed(problem) -> np.ndarray:
    """The example cantilever with a hole through its thickness: (n_sites,) bool."""
    occ = initial_occupancy(problem.config.design, problem.structure)
    idx = problem.structure.lattice.index
    occ[(idx[:, 1] >= 4) & (idx[:, 1] < 8) & (idx[:, 2] >= 2) & (idx[:, 2] < 4)] = False
    return occ


def _curvature(engine: str, empty_sites: str):
    config = load_config(EXAMPLES / "cantilever_periodic.yaml", [f"engine.name={engine}",
                                                                 f"engine.empty_sites={empty_sites}"])
    problem = open_problem(config)
    try:
        occ = _holed(problem)
        first = symmetric_curvature(problem.engine, problem.structure, occ, 0.05)
        # a second design in the same engine: types change in place (type) or atoms are recreated (delete)
        occ2 = occ.copy()
        occ2[np.flatnonzero(occ)[:40]] = False
        second = symmetric_curvature(problem.engine, problem.structure, occ2, 0.05)
        return (occ, first), (occ2, second)
    finally:
        problem.engine.close()


@pytest.mark.parametrize("engine", ["lammps", "lammps-exe"])
def test_type_and_delete_relax_to_the_same_states(lammps_ok, engine):
    """In process the two modes are bit for bit equal (the same atoms in the same order
    interact). ``lammps-exe`` reads a data file with every site in it and deletes or keeps
    the empty ones, which reorders the atoms: CG then stops a few 1e-10 Å elsewhere."""
    exact = engine == "lammps"
    # lammps-exe tolerances: 10-100x the differences measured (alpha 1e-5 of its max,
    # site energies 6e-11 eV, positions 8e-10 Å, one force evaluation in 330)
    k_rel, alpha_rel, e_rel, site_ev, pos_a, evals = (
        (0, 0, 0, 0, 0, 0) if exact else (1e-9, 1e-4, 1e-12, 1e-9, 1e-8, 0.02))
    deleted = _curvature(engine, "delete")
    typed = _curvature(engine, "type")
    for (occ, d), (_, t) in zip(deleted, typed, strict=True):
        assert t.k_sym_ev_per_a2 == pytest.approx(d.k_sym_ev_per_a2, rel=k_rel, abs=0)
        np.testing.assert_allclose(t.alpha, d.alpha, rtol=0, atol=alpha_rel * np.abs(d.alpha).max())
        for rt, rd in zip(t.relaxed, d.relaxed, strict=True):
            assert rt.n_atoms == rd.n_atoms == int(occ.sum())
            assert rt.engine_energy_ev == pytest.approx(rd.engine_energy_ev, rel=e_rel, abs=0)
            np.testing.assert_allclose(rt.site_energies_ev, rd.site_energies_ev, rtol=0, atol=site_ev)
            np.testing.assert_allclose(rt.positions_a[occ], rd.positions_a[occ], rtol=0, atol=pos_a)
            assert abs(rt.force_evaluations - rd.force_evaluations) <= evals * rd.force_evaluations


def test_a_run_with_type_sites_ends_in_the_design_of_a_run_with_deleted_sites(lammps_ok, tmp_path):
    config = ROOT / "tests" / "data" / "small_run.yaml"
    summaries = []
    for mode in ("delete", "type"):
        out = tmp_path / mode
        proc = run_cli("run", str(config), "-o", str(out), "--set", f"engine.empty_sites={mode}")
        assert proc.returncode == 0, proc.stderr
        summaries.append(json.loads((out / "summary.json").read_text()))
    deleted, typed = summaries
    assert typed["iterations"] == deleted["iterations"] > 3
    assert typed["final_occupancy_sha256"] == deleted["final_occupancy_sha256"]
    assert typed["k_sym_ev_per_a2"] == pytest.approx(deleted["k_sym_ev_per_a2"], rel=1e-9)
