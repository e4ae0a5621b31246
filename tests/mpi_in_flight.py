"""Run under ``mpiexec -n 2`` by tests/test_in_flight.py: K_sym of the test design relaxed in
cycles, keeping its progress after every cycle.

    python mpi_in_flight.py MODE FOLDER STATE

MODE ``whole`` relaxes in one go; ``kill`` stops every rank (exit 9) right after the first
progress of state STATE was kept; ``resume`` goes on from what the folder holds. Rank 0 prints
{"k_sym", "iterations" (each state's count), "energies", "ranks", "resumed_after" (the
CG iterations a resumed state had before the stop), "ran" (CG iterations each state ran in
this process)} as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nanoto_driver import engine_lammps
from nanoto_driver.config import load_config
from nanoto_driver.design import initial_occupancy
from nanoto_driver.evaluate import open_problem
from nanoto_driver.state_checkpoint import PARTIAL, StateCheckpoint
from nanoto_driver.stiffness import symmetric_curvature

HERE = Path(__file__).resolve().parent
SETS = ["domain.cells=[24, 12, 3]", "minimizer.norm=max", "minimizer.ftol_ev_per_a=1e-5", "minimizer.coarse_every=8"]


class CountingCG:
    """A LAMMPS handle that counts the CG iterations of its ``minimize`` commands."""

    def __init__(self, lmp) -> None:
        self._lmp, self.iterations = lmp, 0

    def __getattr__(self, name):
        return getattr(self._lmp, name)

    def command(self, text: str) -> None:
        start = int(self._lmp.extract_global("ntimestep"))
        self._lmp.command(text)
        if text.startswith("minimize"):
            self.iterations += int(self._lmp.extract_global("ntimestep")) - start


def count_cg_iterations(ran: list[int]):
    """A replacement of LammpsEngine._minimize_in_cycles that appends each state's CG iterations to ``ran``."""
    cycles = engine_lammps.LammpsEngine._minimize_in_cycles

    def counted(engine, *args):
        handle = engine._lmp
        engine._lmp = counter = CountingCG(handle)
        try:
            return cycles(engine, *args)
        finally:
            engine._lmp = handle
            ran.append(counter.iterations)

    return counted


class Killed(BaseException):
    """Stands for a kill between two CG cycles."""


class KilledAfterFirst(StateCheckpoint):
    """Every rank stops right after the first progress of state ``state`` was kept."""

    state = 0

    def keep_in_flight(self, u_a, progress) -> None:
        super().keep_in_flight(u_a, progress)
        if len(self._done) == self.state:
            raise Killed


class Resumed(StateCheckpoint):
    """Notes after how many CG iterations the resumed state went on."""

    after = None

    def in_flight(self, u_a):
        found = super().in_flight(u_a)
        if found is not None:
            self.after = found.iterations
        return found


def main(mode: str, folder: Path, state: int) -> int:
    from mpi4py import MPI  # here, not at the top: test_in_flight.py imports this module without MPI

    engine_lammps.IN_FLIGHT_EVERY_S = 0.0  # keep after every cycle
    ran: list[int] = []  # CG iterations each state ran in this process
    engine_lammps.LammpsEngine._minimize_in_cycles = count_cg_iterations(ran)  # type: ignore[method-assign]
    comm = MPI.COMM_WORLD
    kind = {"whole": StateCheckpoint, "kill": KilledAfterFirst, "resume": Resumed}[mode]
    KilledAfterFirst.state = state
    checkpoint = kind(folder / PARTIAL, comm.bcast, comm.Get_rank())
    config = load_config(HERE.parent / "workflows" / "examples" / "optimize_cantilever.yaml", SETS)
    problem = open_problem(config)
    try:
        occ = initial_occupancy(config.design, problem.structure)
        done = checkpoint.resume(0, occ)
        result = symmetric_curvature(problem.engine, problem.structure, occ, problem.delta_a(), done=done,
                                     on_state=checkpoint.save, in_flight=checkpoint)
    except Killed:
        return 9
    finally:
        problem.engine.close()
    if comm.Get_rank() == 0:
        print(json.dumps({"k_sym": result.k_sym_ev_per_a2, "iterations": [r.iterations for r in result.relaxed],
                          "energies": [r.energy_ev for r in result.relaxed], "ranks": comm.Get_size(),
                          "resumed_after": getattr(checkpoint, "after", None), "ran": ran}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
