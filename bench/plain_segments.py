"""What cutting plain CG into `minimize` segments costs (engine_lammps.PLAIN_SEGMENT).

After the two-level relaxation gives up on its corrections, a state goes on with plain CG in
segments of PLAIN_SEGMENT iterations, so that its progress can be kept between them (a 68-min
u = 0 at 6.5e5 sites could not be resumed in the middle). Every segment restarts CG from
steepest descent. This bench relaxes the full block of a scale cantilever (bench/scale.py, the
batch of iteration 0: u = 0, +δ, −δ from the lattice) with plain CG in one `minimize` per state
(the baseline, `coarse_every: 0`) and in segments of each given length (the give-up path from
the first cycle: `coarse_every: 8` with MAX_FAILED_CORRECTIONS = 0), and prints per state the
CG iterations and force evaluations (counts: independent of machine load), K_sym against the
baseline, and the median wall time of ``--repeat`` runs.

    python bench/plain_segments.py --sites 1e4 --segments 1000 300 100 30 --repeat 3
    mpiexec -n 2 python bench/plain_segments.py --sites 1e5 --segments 1000 300 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median
from typing import Any

import numpy as np
from scale import ACCEPT_FMAX, CASES, CONFIG  # bench/ is on the path of a bench script

from nanoto_driver import engine_lammps
from nanoto_driver.config import load_config
from nanoto_driver.evaluate import open_problem
from nanoto_driver.stiffness import symmetric_curvature


def relax_block(label: str, segment: int | None) -> dict[str, Any]:
    """The full block's batch with plain CG in one minimize per state (``segment`` None) or in segments."""
    sets = [f"domain.cells={list(CASES[label])}", "minimizer.norm=max", "minimizer.ftol_ev_per_a=1e-5",
            f"minimizer.accept_fmax_ev_per_a={ACCEPT_FMAX[label]}",
            f"minimizer.coarse_every={0 if segment is None else 8}"]
    engine_lammps.MAX_FAILED_CORRECTIONS = 0  # no correction at all: plain CG in segments from the start
    if segment is not None:
        engine_lammps.PLAIN_SEGMENT = segment
    problem = open_problem(load_config(CONFIG, sets))
    try:
        occ = np.ones(problem.structure.n_sites, bool)
        t0 = time.perf_counter()
        result = symmetric_curvature(problem.engine, problem.structure, occ, problem.delta_a())
        wall = time.perf_counter() - t0
    finally:
        problem.engine.close()
    return {"k_sym": result.k_sym_ev_per_a2, "wall_s": wall,
            "iterations": [r.iterations for r in result.relaxed],
            "force_evaluations": [r.force_evaluations for r in result.relaxed],
            "converged": all(r.converged for r in result.relaxed), "rank": problem.engine.rank}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", choices=list(CASES), default="1e4")
    ap.add_argument("--segments", type=int, nargs="+", default=[1000, 300, 100, 30])
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant (the wall time is their median)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    rows, base = [], None
    for segment in [None, *a.segments]:
        runs = [relax_block(a.sites, segment) for _ in range(a.repeat)]
        row = {**runs[0], "segment": segment, "wall_s": median(r["wall_s"] for r in runs)}
        base = base or row
        row["k_sym_vs_one_minimize"] = row["k_sym"] / base["k_sym"] - 1
        rows.append(row)
        if row["rank"] == 0:
            name = "one minimize per state" if segment is None else f"segments of {segment}"
            total, base_total = sum(row["force_evaluations"]), sum(base["force_evaluations"])
            print(f"{a.sites} {name:>24}: CG {row['iterations']} FE {row['force_evaluations']} "
                  f"(total {total}, x{total / base_total:.2f}) "
                  f"K_sym {row['k_sym']:.6f} ({row['k_sym_vs_one_minimize']:+.1e}) converged {row['converged']} "
                  f"wall {row['wall_s']:.1f} s (median of {a.repeat})", flush=True)
    if a.json and rows[0]["rank"] == 0:
        with open(a.json, "w") as f:
            json.dump({"sites": a.sites, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
