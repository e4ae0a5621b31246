"""What LAMMPS' set-up costs a force evaluation: `run 0` against `run 1 pre no` (FORCE_AGAIN).

A coarse correction evaluates the forces four times at positions set from Python. The first
follows a `minimize` and keeps `run 0`, the full set-up (init, atom exchange and sort, ghost
atoms, neighbour-list build); the other three use ``engine_lammps.FORCE_AGAIN``, which only
forwards ghost positions unless an atom moved more than half the skin. This bench loads the
full cantilever of the scale cases (bench/scale.py), runs 5 CG iterations, then alternates the
two commands at positions moved by a small random step (0.01 Å rms, as a correction's probes
are), in alternating order, and prints the median seconds per evaluation of each, their
ratio, and how far their energies and forces differ (round-off: the set-up also sorts the
atoms in memory, which can change the order of the sums). A `minimize` of one iteration is
timed as well: the set-up each 8-iteration CG cycle of the two-level relaxation pays.

    python bench/set_up_cost.py --sites 1e4 1e5 --repeat 7
    mpiexec -n 2 python bench/set_up_cost.py --sites 1e5 6.5e5
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median
from typing import Any

import numpy as np
from scale import CASES, CONFIG  # bench/ is on the path of a bench script

from nanoto_driver.config import load_config
from nanoto_driver.engine_lammps import FORCE_AGAIN
from nanoto_driver.evaluate import open_problem

FULL = "run 0 post no"
ONE_CG_ITERATION = "minimize 0.0 0.0 1 10"


def timed(engine: Any, command: str, ids: np.ndarray, x: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(s, energy eV, forces (n, 3) eV/Å) of ``command`` with the atoms at ``x``."""
    engine._scatter_x(ids, x)
    t0 = time.perf_counter()
    engine._lmp.command(command)
    seconds = time.perf_counter() - t0
    return seconds, float(engine._lmp.get_thermo("pe")), engine._gather("f", 3, ids)


def measure(label: str, repeat: int) -> dict[str, Any]:
    problem = open_problem(load_config(CONFIG, [f"domain.cells={list(CASES[label])}"]))
    engine, s = problem.engine, problem.structure
    try:
        occ = np.ones(s.n_sites, bool)
        ids = engine.start_of_a_correction(s, occ)
        x = engine._gather("x", 3, ids)
        rng = np.random.default_rng(0)
        times: dict[str, list[float]] = {FULL: [], FORCE_AGAIN: [], ONE_CG_ITERATION: []}
        energy_rel, force_rel = [], []
        for r in range(repeat):
            at = x + rng.normal(0.0, 0.01, x.shape)
            order = (FULL, FORCE_AGAIN) if r % 2 == 0 else (FORCE_AGAIN, FULL)
            seen = {command: timed(engine, command, ids, at) for command in order}
            for command, (seconds, _, _) in seen.items():
                times[command].append(seconds)
            (_, e_full, f_full), (_, e_quick, f_quick) = seen[FULL], seen[FORCE_AGAIN]
            energy_rel.append(abs(e_quick - e_full) / abs(e_full))
            force_rel.append(float(np.abs(f_quick - f_full).max() / np.abs(f_full).max()))
            times[ONE_CG_ITERATION].append(timed(engine, ONE_CG_ITERATION, ids, at)[0])
    finally:
        engine.close()
    full, quick = median(times[FULL]), median(times[FORCE_AGAIN])
    return {"case": label, "atoms": int(occ.sum()), "ranks": engine.ranks, "repeat": repeat,
            "run0_s": full, "force_again_s": quick, "ratio": full / quick,
            "minimize_1_iteration_s": median(times[ONE_CG_ITERATION]),
            "max_energy_rel_diff": max(energy_rel), "max_force_diff_per_max_force": max(force_rel)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", nargs="+", default=["1e4", "1e5"], choices=sorted(CASES))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    rows = []
    for label in args.sites:
        row = measure(label, args.repeat)
        rows.append(row)
        if _rank() == 0:
            print(f"{label:>6} sites, {row['ranks']} rank(s), {row['atoms']:,} atoms: run 0 {row['run0_s']:.3f} s, "
                  f"run 1 pre no {row['force_again_s']:.3f} s ({row['ratio']:.2f}x), one-iteration minimize "
                  f"{row['minimize_1_iteration_s']:.3f} s; largest difference: energy {row['max_energy_rel_diff']:.1e} "
                  f"relative, forces {row['max_force_diff_per_max_force']:.1e} of the largest force"
                  f" (medians of {row['repeat']})", flush=True)
    if args.json and _rank() == 0:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def _rank() -> int:
    from nanoto_driver.lammps_runtime import mpi_comm

    comm = mpi_comm()
    return comm.Get_rank() if comm is not None else 0


if __name__ == "__main__":
    main()
