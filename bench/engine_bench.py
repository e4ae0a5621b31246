"""Overhead of nanoto's in-process ``lammps`` engine over plain LAMMPS on one cold K_sym.

Engine: ``symmetric_curvature`` (states 0, +δ, -δ from lattice sites) through the
persistent engine of ``open_problem``, timed as a whole (atom loading, scatters,
gathers, logs, checks included; its one-time set-up falls in the first run).
Plain: a fresh LAMMPS instance reads the same structure (``setup_script`` with a
data file) and runs the same state scripts (displace + minimize + print), rendered
beforehand, as text; each later state starts, set untimed from Python, where the
engine starts it (the relaxed 0 state, or ``engine.extrapolation`` of it).
Both are normalised per atom and per force evaluation (from the LAMMPS logs).
Runs alternate engine-first / plain-first; figures are medians; rank 0's process CPU
time is shown beside wall time. Prints from rank 0 only; ranks come from the launcher:
``mpiexec -n 2 python bench/engine_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from nanoto_driver.config import RunConfig, build_config
from nanoto_driver.engine import extrapolation
from nanoto_driver.engine_lammps import settings_from
from nanoto_driver.evaluate import Problem, open_problem
from nanoto_driver.lammps_runtime import mpi_comm, new_instance
from nanoto_driver.lammps_text import parse_log, setup_script, state_script, write_data_file
from nanoto_driver.stiffness import STATES, symmetric_curvature

COMM = mpi_comm()
RANK = COMM.Get_rank() if COMM is not None else 0
RANKS = COMM.Get_size() if COMM is not None else 1
SIDES = ("engine", "plain")


@dataclass(frozen=True)
class Run:
    """One cold K_sym: wall and CPU time of the batch, wall time of its minimizations, counts."""

    wall_s: float
    cpu_s: float
    minimize_s: float
    force_evaluations: tuple[int, ...]
    n_atoms: int

    def us_per_atom_fe(self, seconds: float) -> float:
        """``seconds`` in microseconds per atom per force evaluation."""
        return 1e6 * seconds / (self.n_atoms * sum(self.force_evaluations))


def parse_args() -> argparse.Namespace:
    """--cells, --repeats, --ftol (MPI ranks: from mpiexec)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, nargs=3, default=[40, 25, 5], metavar=("NX", "NY", "NZ"),
                   help="cantilever cells (4*nx*ny*nz sites; default 40 25 5 = 20,000)")
    p.add_argument("--repeats", type=int, default=3, help="cold K_sym pairs (engine + plain), default 3")
    p.add_argument("--ftol", type=float, default=1e-4,
                   help="minimizer.ftol_ev_per_a, default 1e-4: nanoto's 1e-8 (a 2-norm over all atoms) is "
                   "below the line-search floor (~3e-4 eV/A) of 20,000 atoms and fails to converge")
    return p.parse_args()


def barrier_clock() -> np.ndarray:
    """(wall, process CPU) seconds after all ranks reached this point."""
    if COMM is not None:
        COMM.Barrier()
    return np.array([time.perf_counter(), time.process_time()])


def bench_config(cells: list[int], ftol: float) -> RunConfig:
    """The thickness-periodic cantilever with the default potential (Al_mm.eam.fs)."""
    return build_config({"name": "engine_bench", "minimizer": {"ftol_ev_per_a": ftol},
                         "domain": {"load_case": "cantilever", "cells": cells, "thickness": "periodic"}})


def run_engine(problem: Problem, occupancy: np.ndarray) -> Run:
    """One cold K_sym through the nanoto engine."""
    t0 = barrier_clock()
    result = symmetric_curvature(problem.engine, problem.structure, occupancy, problem.delta_a(),
                                 problem.config.minimizer.max_nonaffine_a)
    wall, cpu = barrier_clock() - t0
    return Run(wall, cpu, sum(s.wall_s for s in result.states),
               tuple(s.force_evaluations for s in result.states), result.relaxed[0].n_atoms)


def start_of(lmp: Any, xs: list[np.ndarray], guess: tuple[int, float] | None) -> Any:
    """Start of a later state as the engine makes it: the relaxed 0 state or its linear extrapolation."""
    x = xs[0]
    if guess is not None:
        lo, hi, _, _, _, periodic, _ = lmp.extract_box()
        d, lengths = xs[guess[0]] - x, np.subtract(hi, lo)
        x = x + guess[1] * (d - np.asarray(periodic) * lengths * np.round(d / lengths))  # minimum image
    return np.ctypeslib.as_ctypes(np.ascontiguousarray(x).ravel())


def run_plain(problem: Problem, data_file: str, log_file: str) -> Run:
    """The same three states as plain LAMMPS text on a fresh instance (set-up and restarts untimed)."""
    structure, settings = problem.structure, settings_from(problem.config)
    assert problem.potential is not None  # the lammps engine has one
    lmp = new_instance(COMM)
    lmp.commands_string(setup_script(structure, problem.potential, settings, data_file) + f"log {log_file}\n")
    states = [m * problem.delta_a() for m in STATES]
    timed, xs = np.zeros(2), list[np.ndarray]()
    for n, u in enumerate(states):
        guess = extrapolation(structure, states, n)
        if n > 0:  # ids are 1..N (full design), so scatter_atoms/gather_atoms order is by id
            lmp.scatter_atoms("x", 1, 3, start_of(lmp, xs, guess))
        script = state_script(structure, settings, f"s{n}", u, start_displaced=guess is not None)
        t0 = barrier_clock()
        lmp.commands_string(script)
        timed += barrier_clock() - t0
        xs.append(np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3).copy())
    lmp.close()
    reports = parse_log(Path(log_file).read_text()) if RANK == 0 else []
    fe = tuple(r.stats.force_evaluations for r in reports) or (1,)  # counts matter on rank 0 only
    return Run(timed[0], timed[1], timed[0], fe, reports[0].natoms if reports else 1)


def benchmark(config: RunConfig, repeats: int) -> dict[str, list[Run]]:
    """Alternate engine-first and plain-first cold K_sym runs; the runs of each side."""
    problem = open_problem(config)
    occupancy = np.ones(problem.structure.n_sites, bool)
    tmp = tempfile.mkdtemp(prefix="nanoto-bench-") if RANK == 0 else None  # rank 0's folder, known to all
    tmp = str(COMM.bcast(tmp, root=0) if COMM is not None else tmp)
    data_file = f"{tmp}/cantilever.data"
    if RANK == 0:
        write_data_file(Path(data_file), problem.structure, occupancy, problem.structure.positions_a)
    runs: dict[str, list[Run]] = {"engine": [], "plain": []}
    try:
        for r in range(repeats):
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                run = (run_engine(problem, occupancy) if side == "engine"
                       else run_plain(problem, data_file, f"{tmp}/plain_{r}.log"))
                runs[side].append(run)
                if RANK == 0:
                    print(f"  repeat {r + 1} {side:6s} {run.wall_s:8.2f} s  fe {run.force_evaluations}"
                          f"  {run.us_per_atom_fe(run.wall_s):.3f} us/atom/fe", flush=True)
    finally:
        problem.engine.close()
        if RANK == 0:
            shutil.rmtree(tmp, ignore_errors=True)
    return runs


def summarise(config: RunConfig, repeats: int, runs: dict[str, list[Run]]) -> dict:
    """Medians over the repeats, per side, and the engine/plain ratios."""
    out: dict = {"cells": list(config.domain.cells), "n_atoms": runs["engine"][0].n_atoms,
                 "mpi_ranks": RANKS, "repeats": repeats, "ftol_ev_per_a": config.minimizer.ftol_ev_per_a}
    for side, rs in runs.items():
        for what, key in (("wall_s", "us_per_atom_fe"), ("minimize_s", "minimize_us_per_atom_fe"),
                          ("cpu_s", "cpu_us_per_atom_fe")):
            out[f"{side}_{key}"] = median(r.us_per_atom_fe(getattr(r, what)) for r in rs)
        out[f"{side}_fe_per_state"] = [median(r.force_evaluations[i] for r in rs) for i in range(len(STATES))]
        out[f"{side}_fe_total"] = median(sum(r.force_evaluations) for r in rs)
        out[f"{side}_k_sym_wall_s"] = median(r.wall_s for r in rs)
    out["ratio_engine_over_plain"] = out["engine_us_per_atom_fe"] / out["plain_us_per_atom_fe"]
    out["ratio_cpu_engine_over_plain"] = out["engine_cpu_us_per_atom_fe"] / out["plain_cpu_us_per_atom_fe"]
    pairs = zip(runs["engine"], runs["plain"], strict=True)
    out["ratio_paired"] = median(e.us_per_atom_fe(e.wall_s) / p.us_per_atom_fe(p.wall_s) for e, p in pairs)
    return out


ROWS = (("force evals 0/+d/-d", "fe_per_state", lambda v: "/".join(f"{x:g}" for x in v)),
        ("force evals, K_sym", "fe_total", "{:g}".format), ("wall per K_sym (s)", "k_sym_wall_s", "{:.2f}".format),
        ("us/atom/force eval", "us_per_atom_fe", "{:.3f}".format),
        ("  minimizations only", "minimize_us_per_atom_fe", "{:.3f}".format),
        ("  CPU time", "cpu_us_per_atom_fe", "{:.3f}".format))


def print_table(s: dict) -> None:
    """Readable table, then the JSON line."""
    print(f"\ncantilever {'x'.join(map(str, s['cells']))} cells, {s['n_atoms']} atoms, {s['mpi_ranks']} "
          f"MPI rank(s), ftol {s['ftol_ev_per_a']:g} eV/A, medians of {s['repeats']} cold K_sym each")
    print(f"{'':24s}" + "".join(f"{side:>16s}" for side in SIDES))
    for label, key, fmt in ROWS:
        print(f"{label:24s}" + "".join(f"{fmt(s[f'{side}_{key}']):>16s}" for side in SIDES))
    print(f"ratio engine/plain: {s['ratio_engine_over_plain']:.3f} wall, {s['ratio_cpu_engine_over_plain']:.3f} CPU, "
          f"{s['ratio_paired']:.3f} median of per-repeat wall ratios (target <= 1.05)")
    print(json.dumps(s))


def main() -> None:
    args = parse_args()
    config = bench_config(args.cells, args.ftol)
    runs = benchmark(config, args.repeats)
    if RANK == 0:
        print_table(summarise(config, args.repeats, runs))


if __name__ == "__main__":
    main()
