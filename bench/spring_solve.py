"""Spring-network solve of the coarse correction: precision and iteration cap, on a real design.

Builds the multigrid hierarchy of ``coarse.SpringPreconditioner`` for one design of a run file
(its free atoms, both spring shells) in float64 and float32, and times the set-up and the
capped solve d ≈ K_s^-1 g (median of --repeat solves) for 1-3 preconditioned CG iterations.
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
    from scipy.sparse import diags

    from nanoto_driver import coarse
    from nanoto_driver.config import build_config
    from nanoto_driver.load_cases import build_structure
    from nanoto_driver.structure import DESIGN

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
    free_site = occ & (structure.kind == DESIGN) & ~coarse.floppy_sites(structure, occ)
    free = np.flatnonzero(np.repeat(free_site, 3))
    k64 = coarse.spring_matrix(structure, occ)[free][:, free]
    k64 = (k64 + diags(np.full(free.size, 1e-6))).tocsr()
    modes = coarse.translation_modes(int(free_site.sum()))
    rng = np.random.default_rng(0)
    x = structure.positions_a[free_site]
    g = (np.sin(2 * np.pi * x[:, :1] / np.ptp(x[:, 0])) * np.array([[0.3, 1.0, 0.1]])
         + 0.05 * rng.standard_normal(x.shape)).reshape(-1)
    exact = pyamg.smoothed_aggregation_solver(k64, B=modes, symmetry="symmetric").solve(
        g, tol=1e-8, accel="cg", maxiter=500)
    best = g @ exact
    print(f"{int(free_site.sum()):,} free atoms, {k64.nnz:,} non-zeros")
    print(f"{'precision':>9} {'set-up s':>9} {'iterations':>10} {'solve s':>8} {'gain/exact':>10}")
    for dtype in (np.float64, np.float32):
        k = k64.astype(dtype)
        np.random.seed(0)
        t0 = time.perf_counter()
        ml = pyamg.smoothed_aggregation_solver(k, B=modes.astype(dtype), symmetry="symmetric",
                                               max_coarse=500, coarse_solver="splu")
        setup = time.perf_counter() - t0
        for its in (1, 2, 3):
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                d = ml.solve(g.astype(dtype), tol=coarse.SOLVE_TOLERANCE, accel="cg", maxiter=its)
                times.append(time.perf_counter() - t0)
            d = d.astype(float)
            gain = (g @ d) ** 2 / (d @ (k64 @ d)) / best
            print(f"{np.dtype(dtype).name:>9} {setup:>9.2f} {its:>10} {median(times):>8.3f} {gain:>10.4f}")


if __name__ == "__main__":
    main()
