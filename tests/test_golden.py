"""Golden files pin every text the engines generate: the data file and the input scripts.

Regenerate after an intended change with ``NANOTO_UPDATE_GOLDEN=1 pytest tests/test_golden.py``
and review the diff.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from nanoto_driver.config import DesignConfig, DomainConfig, build_config
from nanoto_driver.design import initial_occupancy
from nanoto_driver.engine_lammps_exe import LammpsExeEngine
from nanoto_driver.lammps_text import ScriptSettings, render, setup_script, write_data_file
from nanoto_driver.load_cases import build_structure
from nanoto_driver.potential import Potential

GOLDEN = Path(__file__).parent / "data" / "golden"
A0 = 4.05  # a fixed number for reproducible text; real runs take a0 from the potential
POT = Potential(Path("Al_mm.eam.fs"), "eam/fs", "Al", ("Al",), 6.5, "0" * 64)


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NANOTO_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with NANOTO_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed; review and regenerate if intended"


def _exe_engine(monkeypatch) -> LammpsExeEngine:
    monkeypatch.setattr("nanoto_driver.engine_lammps_exe.lmp_executable", lambda _: "lmp")
    return LammpsExeEngine(build_config({}), POT)


def test_data_file(tmp_path):
    s = build_structure(DomainConfig(load_case="cantilever", cells=(4, 2, 1), clamp_cells=1), A0)
    occ = initial_occupancy(DesignConfig(remove_cells=[(1, 2, 0, 1, 0, 1)]), s)
    write_data_file(tmp_path / "design.data", s, occ, s.positions_a)
    _check("cantilever_4x2x1.data", (tmp_path / "design.data").read_text())


@pytest.mark.parametrize("case", ["cantilever", "pillar", "bulk"])
def test_run_script(monkeypatch, case):
    cells = {"cantilever": (4, 2, 1), "pillar": (1, 1, 4), "bulk": (2, 2, 2)}[case]
    s = build_structure(DomainConfig(load_case=case, cells=cells, clamp_cells=1), A0)
    _check(f"run_{case}.lmp", _exe_engine(monkeypatch).input_script(s, [0.0, 0.01, -0.01]))


def test_in_process_setup_and_accelerator():
    s = build_structure(DomainConfig(load_case="pillar", cells=(1, 1, 4), clamp_cells=1), A0)
    text = setup_script(s, POT, ScriptSettings(accelerator="opt"))
    _check("setup_pillar_opt.lmp", text)


def test_setup_with_empty_sites_kept_as_type_4():
    s = build_structure(DomainConfig(load_case="cantilever", cells=(4, 2, 1), clamp_cells=1), A0)
    _check("setup_cantilever_type.lmp", setup_script(s, POT, ScriptSettings(empty_sites="type"),
                                                     data_file="design.data"))


def test_lattice_constant_script():
    text = render("lattice_constant.lmp.j2", element="Al", potential_file=POT.path, a_start=4.05,
                  pair_style=POT.pair_style, pair_coeff=POT.pair_coeff(1))
    _check("lattice_constant.lmp", text)


def test_data_file_reads_back_bit_for_bit(tmp_path):
    """The file holds positions to the last bit; ASE reads the same atoms, types and positions."""
    from ase.io import read

    s = build_structure(DomainConfig(load_case="pillar", cells=(2, 2, 4), clamp_cells=1), A0)
    rng = np.random.default_rng(1)
    pos = s.positions_a + rng.normal(scale=0.01, size=s.positions_a.shape)
    occ = np.ones(s.n_sites, bool)
    write_data_file(tmp_path / "d.data", s, occ, pos)
    atoms = read(tmp_path / "d.data", format="lammps-data", atom_style="atomic", units="metal",
                 sort_by_id=True, Z_of_type={1: 13, 2: 13, 3: 13, 4: 13})
    rows = (tmp_path / "d.data").read_text().split("Atoms # atomic")[1].split()
    table = np.array(rows, float).reshape(-1, 5)
    np.testing.assert_array_equal(table[:, 2:], pos)  # repr() round-trips exactly
    np.testing.assert_allclose(atoms.get_positions(), pos, rtol=0, atol=1e-12)  # ASE's own maths
    np.testing.assert_array_equal(atoms.arrays["type"], s.kind + 1)


def test_run_script_and_data_file_with_response(monkeypatch, tmp_path):
    """The previous response travels as the Velocities section and starts the +δ state."""
    s = build_structure(DomainConfig(load_case="cantilever", cells=(4, 2, 1), clamp_cells=1), A0)
    occ = np.ones(s.n_sites, bool)
    response = np.tile([0.0, -0.5, 0.0], (s.n_sites, 1))
    write_data_file(tmp_path / "design.data", s, occ, s.positions_a, velocities=response)
    _check("cantilever_4x2x1_response.data", (tmp_path / "design.data").read_text())
    _check("run_cantilever_response.lmp", _exe_engine(monkeypatch).input_script(s, [0.0, 0.01, -0.01], True))


def test_setup_with_the_max_force_norm():
    s = build_structure(DomainConfig(load_case="pillar", cells=(1, 1, 4), clamp_cells=1), A0)
    text = setup_script(s, POT, ScriptSettings(norm="max"))
    assert text.count("min_modify      norm max\n") == 1
    assert text.replace("min_modify      norm max\n", "") == setup_script(s, POT, ScriptSettings())


def test_setup_with_a_larger_line_search_step():
    s = build_structure(DomainConfig(load_case="pillar", cells=(1, 1, 4), clamp_cells=1), A0)
    text = setup_script(s, POT, ScriptSettings(dmax_a=0.5))
    assert text.count("min_modify      dmax 0.5\n") == 1
    assert text.replace("min_modify      dmax 0.5\n", "") == setup_script(s, POT, ScriptSettings())
    assert "dmax" not in setup_script(s, POT, ScriptSettings(dmax_a=0.1))  # LAMMPS' default: the golden files hold
