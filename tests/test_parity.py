"""Same K_sym from serial and MPI runs, and from the in-process and executable engines."""

import pytest

from .conftest import EXAMPLES, evaluate_json

pytestmark = [pytest.mark.lammps, pytest.mark.mpi]
REL = 1e-9


def _close(a: dict, b: dict) -> None:
    assert a["n_atoms"] == b["n_atoms"]
    assert abs(a["k_sym_ev_per_a2"] - b["k_sym_ev_per_a2"]) <= REL * abs(a["k_sym_ev_per_a2"])


@pytest.fixture(scope="module")
def serial(lammps_ok):
    return {name: evaluate_json(EXAMPLES / f"{name}.yaml") for name in ("cantilever_finite", "pillar")}


@pytest.mark.parametrize("name", ["cantilever_finite", "pillar"])
def test_mpiexec_two_ranks_equals_serial(serial, name):
    two = evaluate_json(EXAMPLES / f"{name}.yaml", ranks=2)
    assert two["mpi_ranks"] == 2 and serial[name]["mpi_ranks"] == 1
    _close(serial[name], two)


@pytest.mark.parametrize("name", ["cantilever_finite", "pillar"])
def test_lammps_exe_equals_in_process(serial, name):
    exe = evaluate_json(EXAMPLES / f"{name}.yaml", engine="lammps-exe")
    assert exe["engine"] == "lammps-exe"
    _close(serial[name], exe)


def test_lammps_exe_on_two_ranks(serial):
    exe2 = evaluate_json(EXAMPLES / "pillar.yaml", "engine.ranks=2", engine="lammps-exe")
    assert exe2["mpi_ranks"] == 2
    _close(serial["pillar"], exe2)


def test_periodic_thickness_parity(lammps_ok):
    cfg = EXAMPLES / "cantilever_periodic.yaml"
    a, b = evaluate_json(cfg), evaluate_json(cfg, engine="lammps-exe")
    _close(a, b)
    c = evaluate_json(cfg, ranks=2)
    _close(a, c)


def test_warm_start_parity_and_accuracy(lammps_ok):
    """Warm starts (previous positions and response) change the path, not the answer; both engines agree."""
    import numpy as np

    from nanoto_driver.config import load_config
    from nanoto_driver.design import initial_occupancy
    from nanoto_driver.engine import WarmStart
    from nanoto_driver.evaluate import evaluate, open_problem

    results = {}
    for engine in ("lammps", "lammps-exe"):
        problem = open_problem(load_config(EXAMPLES / "cantilever_finite.yaml", [f"engine.name={engine}"]))
        full = initial_occupancy(problem.config.design, problem.structure)
        holed = full.copy()
        holed[np.flatnonzero(problem.structure.kind == 0)[::9]] = False
        previous = evaluate(problem, full)
        warm = WarmStart(previous.relaxed[0].positions_a, previous.response_a)
        results[engine] = (evaluate(problem, holed), evaluate(problem, holed, warm=warm))
        problem.engine.close()
    cold, warm = results["lammps"]
    assert abs(warm.k_sym_ev_per_a2 - cold.k_sym_ev_per_a2) <= 1e-6 * cold.k_sym_ev_per_a2
    assert warm.force_evaluations < cold.force_evaluations
    exe_warm = results["lammps-exe"][1]
    assert abs(exe_warm.k_sym_ev_per_a2 - warm.k_sym_ev_per_a2) <= REL * warm.k_sym_ev_per_a2
