"""The CLI on real LAMMPS: JSON fields, info, and one-line errors with exit codes 2 / 3."""

import json
import os
from pathlib import Path

import pytest

from nanoto_driver.engine_lammps import lammps_error
from nanoto_driver.errors import DisplacementError, EngineError, RelaxationError

from .conftest import EXAMPLES, run_cli

pytestmark = pytest.mark.lammps
JSON_KEYS = {"k_sym_ev_per_a2", "k_fwd_ev_per_a2", "k_force_ev_per_a2", "sum_alpha_ev_per_a2",
             "n_atoms", "delta_a", "force_evaluations", "mpi_ranks", "wall_s"}


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _tmp_leftovers() -> set[str]:
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return {p.name for p in tmp.glob("nanoto-*")}


def test_readme_main_job_prints_every_json_key(lammps_ok, tmp_path):
    proc = run_cli("evaluate", str(EXAMPLES / "cantilever_periodic.yaml"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert JSON_KEYS <= set(record)
    assert record["k_sym_ev_per_a2"] > 0 and record["force_evaluations"] > 0
    assert _listing(tmp_path) == set()  # evaluate writes nothing in the working folder


def test_human_readable_output(lammps_ok):
    proc = run_cli("evaluate", str(EXAMPLES / "pillar.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "K_sym" in proc.stdout and "K_fwd" in proc.stdout and "residual force" in proc.stdout


def test_info_reports_lammps_mpi_and_potentials(lammps_ok):
    proc = run_cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["lammps"]["mpi_support"] is True
    assert "eam/fs" in info["lammps"]["eam_styles"]
    assert "Al_mm.eam.fs" in info["aluminium_potentials"]
    assert set(info["engines"]) == {"lammps", "lammps-exe", "harmonic"}
    assert run_cli("info").returncode == 0


BAD_INPUT = [
    (["potential.file=missing.eam.alloy"], 2, "potential file 'missing.eam.alloy' not found"),
    (["potential.element=Cu"], 2, "element 'Cu' is not in Al_mm.eam.fs"),
    (["domain.clamp_cell=2"], 2, "unknown key 'domain.clamp_cell'"),
    (["domain.cells=[2, 4, 2]"], 2, "no design region"),
    (["design.remove_cells=[[5, 6, 0, 6, 0, 2]]"], 2, "no load path"),
    (["domain.clamp_cells=1"], 2, "thinner than the potential cutoff"),
    (["minimizer.maxiter=5"], 3, "stopped on 'max iterations'"),
]


@pytest.mark.parametrize("sets,code,message", BAD_INPUT)
def test_bad_input_one_line_error(lammps_ok, tmp_path, sets, code, message):
    before = _tmp_leftovers()
    args = ["evaluate", str(EXAMPLES / "cantilever_periodic.yaml")]
    for s in sets:
        args += ["--set", s]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("nanoto: error:")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert _listing(tmp_path) == set() and _tmp_leftovers() <= before


def test_displacement_that_tears_the_structure(lammps_ok, tmp_path):
    proc = run_cli("evaluate", str(EXAMPLES / "pillar.yaml"), "--set", "load.delta_a=15", cwd=tmp_path)
    assert proc.returncode == 2
    assert "tore or collapsed" in proc.stderr and "reduce load.strain" in proc.stderr


def test_unreadable_potential(lammps_ok, tmp_path):
    pot = tmp_path / "broken.eam.fs"
    pot.write_text("not a potential\n")
    proc = run_cli("evaluate", str(EXAMPLES / "pillar.yaml"), "--set", f"potential.file={pot}")
    assert proc.returncode == 2 and "not a readable eam/fs file" in proc.stderr


def test_missing_lammps_executable_is_an_engine_error(lammps_ok, tmp_path):
    proc = run_cli("evaluate", str(EXAMPLES / "pillar.yaml"), "--engine", "lammps-exe",
                   "--set", "engine.lmp_command=/nonexistent/lmp", cwd=tmp_path)
    assert proc.returncode == 3 and "LAMMPS executable not found" in proc.stderr


def test_lammps_exe_work_dir_keeps_runnable_files(lammps_ok, tmp_path):
    work = tmp_path / "lmp"
    proc = run_cli("evaluate", str(EXAMPLES / "pillar.yaml"), "--engine", "lammps-exe",
                   "--set", f"engine.work_dir={work}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {"design.data", "run.lmp", "log.lammps", "state_s0.dump"} <= _listing(work)


def test_lost_atoms_message_maps_to_displacement_error():
    err = lammps_error(Exception("ERROR: Lost atoms: original 640 current 639"), 3.0)
    assert isinstance(err, DisplacementError) and "reduce load.strain" in str(err)
    assert isinstance(lammps_error(Exception("ERROR: something else"), 0.0), EngineError)
    unloaded = lammps_error(Exception("ERROR: Lost atoms: original 640 current 639"), 0.0)  # no load to reduce
    assert isinstance(unloaded, RelaxationError) and unloaded.exit_code == 3 and "coarse_every: 0" in str(unloaded)
