"""Variants of the two-level relaxation's correction on the same designs, from the same warm start.

For designs k of a run, design k-1 is relaxed first (0, +δ, -δ, the run's config) to give
the warm start a run would use; then design k is relaxed warm from it once per variant:

    two-vector  the default: the step over span{d, g}, d = K_s^-1 f, g = f - s H d, no atom
                moved farther than coarse.MAX_MOVE_A, no bond changed by more than
                coarse.MAX_BOND_CHANGE_A
    line        the exact line step along d alone (engine.correction_vectors = 1)
    unbounded   two-vector without the bond bound (the code before 2026-12-06)
    plain       no correction: LAMMPS' CG alone (coarse_every 0), the reference minimum
    every-N     two-vector with a correction every N CG iterations instead of the config's
                ``minimizer.coarse_every`` (e.g. every-32)
    solve-N     two-vector with N preconditioned CG iterations per multigrid solve instead of
                coarse.SOLVE_ITERATIONS (e.g. solve-1: one V-cycle)
    secant-N    two-vector plus the last N steps between the state's corrections, with their
                products from the force differences (minimizer.secant_pairs N)
    jacobi-N    two-vector with the multigrid of before the fifteenth session: a Jacobi-smoothed
                prolongator instead of coarse.PROLONGATOR, N solve iterations (jacobi-3 was it)
    lattice     two-vector with the network on the lattice's bonds (coarse.NETWORK, the code before
                the sixteenth session)
    positions   two-vector with the network on the bonds where the batch starts (the default since)

Prints, per variant, force evaluations per state, wall time, time in the multigrid solves,
K_sym, the energy of each state against the first variant's, and how many atoms ended more
than 1 Å from where u = 0 started (atoms that hopped: a reconstruction). Force evaluations
and energies are counts and numbers (one run suffices); the wall time depends on the load
of the machine. Every variant builds the design's multigrid hierarchy again, as a run does
once per design, so that its wall and solve times include the set-up. The warm start is
the one a run makes (previous occupancy included), so ``minimizer.local_hops`` applies. k may
be the run's last iteration + 1: the design its state group holds next (a run stopped after
its BESO step).

    python bench/correction.py runs/ab1e5/run.h5 --iterations 1 --variants plain unbounded two-vector \
        --json docs/figures/correction_bound_1e5.json
    python bench/correction.py runs/scale_c3/1e5_1r/run.h5 --iterations 2 --variants line two-vector
    mpiexec -n 2 python bench/correction.py runs/scale_s17/1e5_2r/run.h5 --iterations 1 2 \
        --variants two-vector every-32
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import numpy as np
from warm_start import design_pairs, designs, rank_zero_prints, run_config  # bench/ is on the path of a bench script

from nanoto_driver import coarse
from nanoto_driver.engine import WarmStart
from nanoto_driver.evaluate import local_relax, open_problem
from nanoto_driver.stiffness import StiffnessResult, symmetric_curvature

HOPPED_A = 1.0  # an atom farther than this from where u = 0 started has left its site's basin


@contextmanager
def _attribute(obj: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


def variant(name: str, engine: Any) -> Any:
    """The context in which ``engine`` relaxes as variant ``name``."""
    if name == "line":
        return _attribute(engine, "correction_vectors", 1)
    if name == "unbounded":
        return _attribute(coarse, "MAX_BOND_CHANGE_A", np.inf)
    if name == "plain":
        return _attribute(engine, "coarse_every", 0)
    if name.startswith("every-"):
        return _attribute(engine, "coarse_every", int(name.removeprefix("every-")))
    if name.startswith("secant-"):
        return _attribute(engine, "secant_pairs", int(name.removeprefix("secant-")))
    if name.startswith("jacobi-"):
        stack = ExitStack()
        stack.enter_context(_attribute(coarse, "PROLONGATOR", coarse.JACOBI_PROLONGATOR))
        stack.enter_context(_attribute(coarse, "SOLVE_ITERATIONS", int(name.removeprefix("jacobi-"))))
        return stack
    if name in ("lattice", "positions"):
        return _attribute(coarse, "NETWORK", name)
    if name.startswith("solve-"):
        return _attribute(coarse, "SOLVE_ITERATIONS", int(name.removeprefix("solve-")))
    return nullcontext()  # two-vector: as configured


VARIANTS = ("two-vector", "line", "unbounded", "plain", "lattice", "positions")


def variant_name(text: str) -> str:
    """argparse type of --variants: one of VARIANTS, or every-N, solve-N, secant-N, jacobi-N (N > 0)."""
    prefix, _, n = text.partition("-")
    if text in VARIANTS or (prefix in ("every", "solve", "secant", "jacobi") and n.isdigit() and int(n) > 0):
        return text
    raise argparse.ArgumentTypeError(f"'{text}' is none of {', '.join(VARIANTS)}, every-N, solve-N, secant-N, jacobi-N "
                                     "(N > 0)")


def relax(problem: Any, occupancy: Any, warm: WarmStart | None = None) -> StiffnessResult:
    s, mini = problem.structure, problem.config.minimizer
    return symmetric_curvature(problem.engine, s, occupancy, problem.delta_a(), mini.max_nonaffine_a, warm,
                               basin_restarts=mini.basin_restarts, local=None if warm is None else local_relax(problem))


def measure(problem: Any, occ_prev: Any, occ: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """Design ``occ`` relaxed warm from ``occ_prev`` with each variant."""
    prev = relax(problem, occ_prev)
    warm = WarmStart(prev.relaxed[0].positions_a, prev.response_a, occ_prev)
    rows = {}
    for name in names:
        problem.engine.forget_design()  # each variant pays the multigrid set-up, as a run does once per design
        with variant(name, problem.engine):
            t0 = time.perf_counter()
            r = relax(problem, occ, warm)
        moved = np.linalg.norm(r.relaxed[0].positions_a[occ] - warm.positions_a[occ], axis=1)
        rows[name] = {"force_evaluations": [st.force_evaluations for st in r.states],
                      "total": r.force_evaluations, "wall_s": time.perf_counter() - t0,
                      "solve_s": r.solve_s, "k_sym": r.k_sym_ev_per_a2, "basin_restarts": r.basin_restarts,
                      "energies_ev": [st.engine_energy_ev for st in r.relaxed],
                      "hopped_atoms": int((moved > HOPPED_A).sum())}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run file (run.h5) made with the in-process LAMMPS engine")
    ap.add_argument("--iterations", type=int, nargs="+", default=[1])
    ap.add_argument("--variants", nargs="+", type=variant_name, default=["plain", "unbounded", "two-vector"],
                    help=f"{', '.join(VARIANTS)}, every-N (a correction every N CG iterations), solve-N "
                         "(N multigrid iterations per solve), secant-N (N secant pairs) or jacobi-N "
                         "(the Jacobi-smoothed prolongator of before, N solve iterations)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the run's config (e.g. minimizer.coarse_every=8)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    config = run_config(args.run, args.set)
    if not config.minimizer.coarse_every:
        raise SystemExit("the run has no coarse correction: add --set minimizer.coarse_every=8")
    occupancy = designs(args.run)
    problem = open_problem(config)
    if not rank_zero_prints(problem.engine):
        args.json = None
    print(f"{args.run}: {config.name}, {problem.structure.n_sites} sites")
    print(f"{'k':>3} {'variant':>10} {'FE (0, +δ, -δ)':>18} {'total':>6} {'wall s':>7} {'solve s':>7} "
          f"{'K_sym':>10} {'dK/K':>8} {'E - E_first (eV) at 0, +δ, -δ':>34} {'hopped':>6}")
    rows = []
    try:
        for k, previous, design in design_pairs(occupancy, args.iterations):
            r = measure(problem, previous, design, args.variants)
            first = r[args.variants[0]]
            for name, row in r.items():
                de = ", ".join(f"{e - e0:+.1e}" for e, e0 in zip(row["energies_ev"], first["energies_ev"], strict=True))
                print(f"{k:>3} {name:>10} {str(row['force_evaluations']):>18} {row['total']:>6} "
                      f"{row['wall_s']:>7.1f} {row['solve_s']:>7.1f} {row['k_sym']:>10.6f} "
                      f"{(row['k_sym'] - first['k_sym']) / first['k_sym']:>8.1e} {de:>34} {row['hopped_atoms']:>6}")
            rows.append({"k": k, **r})
    finally:
        problem.engine.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
