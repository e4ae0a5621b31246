"""Spring-network solve of the coarse correction: precision, prolongator and iteration cap, on a real design.

Builds ``coarse.SpringPreconditioner`` for one design of a run file (spring network, floppy
atoms, multigrid hierarchy) in float64 and float32 with ``coarse.PROLONGATOR``, and in float32
with the Jacobi-smoothed prolongator used before the fifteenth session (pyamg's default), and
times the set-up and the capped direction d ≈ K_s^-1 g (median of --repeat) for 1-3
preconditioned CG iterations.
Quality is the share of the exact solve's energy gain on the network that d reaches with
the exact step along it, (g·d)² / (d·K_s d) / (g·K_s^-1 g) (1 for the exact solve): the
number that decides how much a correction removes. g is a long-wave force field along the
beam plus per-atom noise (what CG leaves behind after a few iterations).

    python bench/spring_solve.py runs/scale/1e5_1r/run.h5 --iteration 1
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median

import h5py
import numpy as np


def main() -> None:
    import pyamg

    from nanoto_driver import coarse
    from nanoto_driver.coarse import SOLVE_TOLERANCE, SpringPreconditioner
    from nanoto_driver.config import build_config
    from nanoto_driver.load_cases import build_structure

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run file (run.h5)")
    ap.add_argument("--iteration", type=int, default=-1, help="which design (default: the last)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with h5py.File(args.run, "r") as f:
        occ = f["iterations/occupancy"][args.iteration].astype(bool)
        config = build_config(json.loads(f.attrs["config_full_json"]), args.run)
        a0 = float(f["lattice"].attrs["a0_a"])
    structure = build_structure(config.domain, a0)
    x = structure.positions_a
    rng = np.random.default_rng(0)
    forces = (np.sin(2 * np.pi * x[:, :1] / np.ptp(x[:, 0])) * np.array([[0.3, 1.0, 0.1]])
              + 0.05 * rng.standard_normal(x.shape))
    reference = None
    print(f"{'precision':>9} {'prolongator':>11} {'set-up s':>9} {'iterations':>10} {'solve s':>8} {'gain/exact':>10}")
    for dtype, prolongator in ((np.float64, coarse.PROLONGATOR), (np.float32, coarse.PROLONGATOR),
                               (np.float32, coarse.JACOBI_PROLONGATOR)):
        t0 = time.perf_counter()
        pre = SpringPreconditioner(structure, occ, dtype, prolongator)  # network, floppy atoms, hierarchy
        setup = time.perf_counter() - t0
        if reference is None:  # K_s of the free atoms and the exact response, in float64
            k, g = pre.solver.levels[0].A, forces.reshape(-1)[pre.free]
            best = g @ pyamg.smoothed_aggregation_solver(k, symmetry="symmetric").solve(
                g, tol=1e-8, accel="cg", maxiter=500)
            reference = (k, g, best)
            print(f"{pre.free.size // 3:,} free atoms, {k.nnz:,} non-zeros, solve tolerance {SOLVE_TOLERANCE}")
        k, g, best = reference
        for its in (1, 2, 3):
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                d = pre.direction(forces, its).reshape(-1)[pre.free]
                times.append(time.perf_counter() - t0)
            gain = (g @ d) ** 2 / (d @ (k @ d)) / best
            print(f"{np.dtype(dtype).name:>9} {prolongator[0]:>11} {setup:>9.2f} {its:>10} {median(times):>8.3f} "
                  f"{gain:>10.4f}")


if __name__ == "__main__":
    main()
