"""The tail polish of u = 0 (local_relax.polish_tail) in rounds of tolerances: cheaper than the whole CG?

bench/tail_forces.py found the tail of a warm u = 0 at 10^5 sites on a few hundred atoms
around the reconstructed ones. Here, for design k of a run warm from design k-1 (local
relaxation of the changed sites first, as a run does):

    reference   u = 0 of the whole design to the config's tolerance, as a run relaxes it
    polished    for each of --tolerances in turn (eV/Å, the config's norm), the polish of
                local_relax.polish_tail: u = 0 of the whole design to it, then the atoms more
                than 1 Å from their lattice sites and those within --hops first-neighbour hops
                of them in a system of their own with a fixed shell (plain CG, the config's
                tolerance); then the whole design to the config's tolerance. With one
                tolerance this is what minimizer.polish_ftol_ev_per_a does in a run.

Prints force evaluations and wall time of each step (a part's force evaluations cost its
share of the atoms) and the end energies: both paths must end in the same minimum. Each
path builds the design's multigrid hierarchy once.

    mpiexec -n 2 python bench/polish_tail.py runs/scale_s17/1e5_2r/run.h5 --iteration 1 \\
        --tolerances 1e-3 --hops 3
"""

from __future__ import annotations

import argparse
import time

from warm_start import designs, rank_zero_prints, run_config  # bench/ is on the path of a bench script

from nanoto_driver.engine import RelaxResult, WarmStart
from nanoto_driver.evaluate import local_relax, open_problem
from nanoto_driver.local_relax import LocalRelax, TailPolish, polish_tail, relax_changes
from nanoto_driver.stiffness import symmetric_curvature


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run file (run.h5) made with the in-process LAMMPS engine")
    ap.add_argument("--iteration", type=int, default=1, help="design k (warm from design k-1)")
    ap.add_argument("--tolerances", type=float, nargs="+", default=[1e-3])
    ap.add_argument("--hops", type=int, default=3)
    args = ap.parse_args()
    config = run_config(args.run, [])
    occupancy, k = designs(args.run), args.iteration
    problem = open_problem(config)
    engine, s, mini = problem.engine, problem.structure, config.minimizer
    local = local_relax(problem)
    if local is None:
        raise SystemExit("the run has no local relaxation (minimizer.local_hops: 0)")
    occ = occupancy[k]

    rank_zero_prints(engine)

    def say(text: str) -> None:
        print(text, flush=True)

    def in_a_part(result: RelaxResult | None) -> str:
        return "nothing" if result is None else f"{result.force_evaluations} force evaluations in a part"

    try:
        prev = symmetric_curvature(engine, s, occupancy[k - 1], problem.delta_a(), mini.max_nonaffine_a,
                                   basin_restarts=mini.basin_restarts)
        t0 = time.perf_counter()
        warm, part = relax_changes(engine, s, occ, WarmStart(prev.relaxed[0].positions_a, prev.response_a,
                                                             occupancy[k - 1]), local)
        say(f"{args.run}: design {k}, {int(occ.sum()):,} atoms; the changed sites' part: "
            f"{in_a_part(part)} ({time.perf_counter() - t0:.1f} s), before either path")
        engine.forget_design()
        t0 = time.perf_counter()
        reference = engine.relax(s, occ, [0.0], warm)[0]
        ref_s = time.perf_counter() - t0
        say(f"reference: {reference.force_evaluations} force evaluations, {ref_s:.1f} s")
        start, total_s, total_fe = warm, 0.0, 0
        engine.forget_design()
        for tol in args.tolerances:
            t0 = time.perf_counter()
            start, (loose, *polished) = polish_tail(engine, s, occ, start, TailPolish(tol, LocalRelax(args.hops,
                                                                                                  local.shell_hops)))
            total_s, total_fe = total_s + time.perf_counter() - t0, total_fe + loose.force_evaluations
            say(f"to {tol:g} eV/Å: {loose.force_evaluations} force evaluations, {loose.wall_s:.1f} s; "
                f"polish {in_a_part(polished[0] if polished else None)}, "
                f"{polished[0].wall_s if polished else 0.0:.1f} s")
        t0 = time.perf_counter()
        final = engine.relax(s, occ, [0.0], start)[0]
        total_s, total_fe = total_s + time.perf_counter() - t0, total_fe + final.force_evaluations
        say(f"finish: {final.force_evaluations} force evaluations, {time.perf_counter() - t0:.1f} s")
        say(f"polished path: {total_fe} force evaluations of the whole design, {total_s:.1f} s, against "
            f"{reference.force_evaluations} and {ref_s:.1f} s; end energies differ by "
            f"{final.engine_energy_ev - reference.engine_energy_ev:+.1e} eV")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
