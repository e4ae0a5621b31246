"""The gauge-shifted EAM copy (minimizer.energy_gauge): same physics, a smaller energy sum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nanoto_driver.eam_gauge import read_tables, write_gauged
from nanoto_driver.errors import PotentialError
from nanoto_driver.potential import Potential, load_potential

from .conftest import ROOT, evaluate_json, run_cli

DEMO = ROOT / "workflows" / "examples" / "optimize_cantilever.yaml"


def _lammps_block(potential: Path, cells: int, hole: bool):
    """A LAMMPS instance holding an FCC block (cells^3, periodic), randomly displaced by up to
    0.05 Å, with a spherical hole and a free top layer when ``hole``; after ``run 0``."""
    from nanoto_driver.lammps_runtime import import_lammps

    lmp = import_lammps().lammps(cmdargs=["-log", "none", "-screen", "none"])
    holes = (f"region hole sphere {cells / 2} {cells / 2} {cells / 2} 3\ndelete_atoms region hole\n"
             f"region top block INF INF INF INF {cells - 2} INF\ndelete_atoms region top\n") if hole else ""
    lmp.commands_string(f"""units metal
atom_modify map array
lattice fcc 4.05
region box block 0 {cells} 0 {cells} 0 {cells}
create_box 1 box
create_atoms 1 box
{holes}displace_atoms all random 0.05 0.05 0.05 7
mass 1 26.98
pair_style eam/fs
pair_coeff * * {potential} Al
compute pe_atom all pe/atom
thermo_style custom step pe
run 0""")
    return lmp


def _energy_and_forces(potential: Path) -> tuple[float, int, np.ndarray, np.ndarray]:
    lmp = _lammps_block(potential, 10, hole=True)
    try:
        forces = np.ctypeslib.as_array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3).copy()
        per_atom = np.ctypeslib.as_array(lmp.gather("c_pe_atom", 1, 1)).copy()
        return float(lmp.get_thermo("pe")), int(lmp.get_natoms()), forces, per_atom
    finally:
        lmp.close()


def _energy_noise(potential: Path, cells: int) -> float:
    """Standard deviation (eV) of LAMMPS' total energy about a quadratic fit along a random
    direction, over 12 moves of up to 1e-6 Å per component: the round-off of the sum."""
    lmp = _lammps_block(potential, cells, hole=False)
    try:
        x0 = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3).copy()
        direction = np.random.default_rng(1).standard_normal(x0.shape)
        steps, energies = np.linspace(0.0, 1e-6, 12), []
        for t in steps:
            lmp.scatter_atoms("x", 1, 3, np.ctypeslib.as_ctypes((x0 + t * direction).ravel()))
            lmp.command("run 0")
            energies.append(float(lmp.get_thermo("pe")))
    finally:
        lmp.close()
    e = np.array(energies)
    return float(np.std(e - np.polyval(np.polyfit(steps, e, 2), steps)))


@pytest.mark.lammps
def test_the_gauged_copy_gives_the_same_forces_and_the_energy_plus_c_per_atom(lammps_ok, tmp_path):
    potential = load_potential("Al_mm.eam.fs", "Al")
    c = write_gauged(potential, tmp_path / "gauged.eam.fs")
    e0, n, f0, a0 = _energy_and_forces(potential.path)
    e1, _, f1, a1 = _energy_and_forces(tmp_path / "gauged.eam.fs")
    assert 2.0 < c < 5.0  # about minus the cohesive energy (3.4 eV): a bulk atom's energy near zero
    assert abs(e1 - n * c - e0) < 1e-8  # measured 3e-10 eV on -9,005 eV
    assert abs(e1) < 0.05 * abs(e0)  # what LAMMPS sums is small (397.9 against -9,005 eV)
    assert np.abs(f1 - f0).max() < 1e-9  # measured 3e-11 eV/Å, forces up to 1.8 eV/Å
    assert np.abs(a1 - c - a0).max() < 1e-9


@pytest.mark.lammps
def test_the_gauge_cuts_the_round_off_of_the_energy_sum(lammps_ok, tmp_path):
    # 16^3 cells: 16,384 atoms. The noise grows as atoms^1.5; with the original tables it stops CG's
    # line search (which gives up below 1e-8 eV) above the force tolerance from ~10^5 atoms on.
    potential = load_potential("Al_mm.eam.fs", "Al")
    write_gauged(potential, tmp_path / "gauged.eam.fs")
    original, gauged = _energy_noise(potential.path, 16), _energy_noise(tmp_path / "gauged.eam.fs", 16)
    assert gauged < original / 30, (original, gauged)  # measured 363x at 48,668 atoms


@pytest.mark.lammps
@pytest.mark.parametrize("empty_sites", ["delete", "type"])
def test_a_gauged_evaluation_gives_the_same_stiffness_and_energies(lammps_ok, empty_sites):
    # a hole of 2 x 2 x 3 cells: with empty_sites type its 48 sites are atoms in no pair, whose
    # energy F(0) + c the engine takes off like every other atom's c
    sets = ["domain.cells=[12, 6, 3]", "design.remove_cells=[[5, 7, 2, 4, 0, 3]]", f"engine.empty_sites={empty_sites}"]
    plain, gauged = evaluate_json(DEMO, *sets), evaluate_json(DEMO, *sets, "minimizer.energy_gauge=true")
    assert gauged["k_sym_ev_per_a2"] == pytest.approx(plain["k_sym_ev_per_a2"], rel=1e-8)  # measured 1.8e-10
    for a, b in zip(plain["states"], gauged["states"], strict=True):
        assert b["engine_energy_ev"] == pytest.approx(a["engine_energy_ev"], abs=1e-6)
        assert b["energy_ev"] == pytest.approx(a["energy_ev"], abs=1e-6)
    assert gauged["potential_sha256"] == plain["potential_sha256"]  # provenance names the real file


@pytest.mark.lammps
def test_read_tables_refuses_a_truncated_file(lammps_ok, tmp_path):
    source = load_potential("Al_mm.eam.fs", "Al").path
    cut = tmp_path / "cut.eam.fs"
    cut.write_text("\n".join(source.read_text().splitlines()[:-10]) + "\n")
    with pytest.raises(PotentialError, match="table values, expected"):
        read_tables(cut)


def test_the_gauge_is_refused_for_a_file_of_two_elements(tmp_path):
    two = Potential(tmp_path / "AlNi.eam.alloy", "eam/alloy", "Al", ("Al", "Ni"), 6.0, "0")
    with pytest.raises(PotentialError, match="has 2 elements"):
        write_gauged(two, tmp_path / "gauged.eam.alloy")
    assert not (tmp_path / "gauged.eam.alloy").exists()


def test_the_gauge_is_refused_for_a_funcfl_file_and_the_executable_engine(tmp_path):
    funcfl = tmp_path / "Al.eam"
    funcfl.write_text("comment\n13 26.98 4.05 fcc\n2 0.1 2 0.1 5.0\n0 0\n0 0\n0 0\n")
    proc = run_cli("evaluate", str(DEMO), "--set", f"potential.file={funcfl}", "--set",
                   "minimizer.energy_gauge=true")
    assert proc.returncode == 2 and "energy_gauge needs an eam/alloy or eam/fs file" in proc.stderr, proc.stderr
    proc = run_cli("evaluate", str(DEMO), "--set", "engine.name=lammps-exe", "--set", "minimizer.energy_gauge=true")
    assert proc.returncode == 2 and "energy_gauge needs the in-process engine" in proc.stderr, proc.stderr

