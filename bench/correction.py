"""The coarse correction's step: the line step along d against the two-vector step over span{d, g}.

For designs k of a finished run, design k-1 is relaxed first (0, +δ, -δ, default step) to
give the warm start a run would use; then design k is relaxed warm from it twice, with
the correction's step over one vector (d = K_s^-1 f, the exact line step) and over two
(d and g = f - s H d, the default ``engine_lammps.CORRECTION_VECTORS``), set through the
engine's ``correction_vectors``. Both start from the same positions. Prints force
evaluations per state, wall time, time in the multigrid solves, and K_sym of each with
their relative difference. Force evaluations are counts (one run suffices); the wall
time depends on the load of the machine.

    python bench/correction.py runs/scale_c3/1e5_1r/run.h5 --iterations 1 2 \
        --set minimizer.coarse_every=8 --set minimizer.accept_fmax_ev_per_a=1e-3
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from warm_start import design_pairs, run_config  # bench/ is on the path of a bench script

from nanoto_driver import engine_lammps, runfile
from nanoto_driver.engine import WarmStart
from nanoto_driver.evaluate import open_problem
from nanoto_driver.stiffness import StiffnessResult, symmetric_curvature

VARIANTS = {"line": 1, "two-vector": 2}


def relax(problem: Any, occupancy: Any, warm: WarmStart | None = None) -> StiffnessResult:
    s, mini = problem.structure, problem.config.minimizer
    return symmetric_curvature(problem.engine, s, occupancy, problem.delta_a(), mini.max_nonaffine_a, warm,
                               basin_restarts=mini.basin_restarts)


def measure(problem: Any, occ_prev: Any, occ: Any) -> dict[str, dict[str, Any]]:
    """Design ``occ`` relaxed warm from ``occ_prev`` with each variant of the step."""
    prev = relax(problem, occ_prev)
    warm = WarmStart(prev.relaxed[0].positions_a, prev.response_a)
    rows = {}
    for name, vectors in VARIANTS.items():
        problem.engine.correction_vectors = vectors
        t0 = time.perf_counter()
        r = relax(problem, occ, warm)
        rows[name] = {"force_evaluations": [st.force_evaluations for st in r.states],
                      "total": r.force_evaluations, "wall_s": time.perf_counter() - t0,
                      "solve_s": r.solve_s, "k_sym": r.k_sym_ev_per_a2, "basin_restarts": r.basin_restarts}
    problem.engine.correction_vectors = engine_lammps.CORRECTION_VECTORS
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run file (run.h5) made with the in-process LAMMPS engine")
    ap.add_argument("--iterations", type=int, nargs="+", default=[1])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the run's config (e.g. minimizer.coarse_every=8)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    config = run_config(args.run, args.set)
    if not config.minimizer.coarse_every:
        raise SystemExit("the run has no coarse correction: add --set minimizer.coarse_every=8")
    occupancy = runfile.read_iterations(args.run)["occupancy"].astype(bool)
    problem = open_problem(config)
    print(f"{args.run}: {config.name}, {problem.structure.n_sites} sites")
    print(f"{'k':>3} {'step':>10} {'FE (0, +δ, -δ)':>18} {'total':>6} {'wall s':>7} {'solve s':>7} {'K_sym':>10}")
    rows = []
    try:
        for k, previous, design in design_pairs(occupancy, args.iterations):
            r = measure(problem, previous, design)
            for name, row in r.items():
                print(f"{k:>3} {name:>10} {str(row['force_evaluations']):>18} {row['total']:>6} "
                      f"{row['wall_s']:>7.1f} {row['solve_s']:>7.1f} {row['k_sym']:>10.6f}")
            line, two = r["line"], r["two-vector"]
            print(f"    line / two-vector: force evaluations {line['total'] / two['total']:.2f}x, wall "
                  f"{line['wall_s'] / two['wall_s']:.2f}x, K_sym differs by "
                  f"{abs(line['k_sym'] - two['k_sym']) / two['k_sym']:.1e}")
            rows.append({"k": k, **r})
    finally:
        problem.engine.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
