"""Where the residual forces of a two-level relaxation sit, correction by correction.

Relaxes design k-1 of a run (0, +δ, -δ, the run's config) for the warm start a run would use,
then design k warm from it (local relaxation included, as configured), and every --every-th
coarse correction of its states reads the forces f and positions x of all atoms and prints:

    |f|², max |f|     the residual (eV²/Å², eV/Å)
    moved             share of |f|² on atoms more than --moved-a from their lattice site (the
                      reconstructed ones; at u = 0 elastic displacements are far smaller)
    near              share on atoms within --radius-a of a moved atom (moved ones included)
    surface           share on atoms with fewer than 12 first neighbours on the lattice
    floppy            share on atoms the spring network leaves out (coarse.floppy_sites)
    long-wave         |mean of f over 15 Å spheres|² / mean |f|², at 2,000 sampled atoms: about
                      1e-3 for forces uncorrelated beyond a few atoms, 1 for a long wave

A tail that the coarse correction should remove has a large long-wave share; one it cannot
has its forces on a few atoms. Uses the 'lammps' engine with minimizer.coarse_every > 0.

    mpiexec -n 2 python bench/tail_forces.py runs/scale_s17/1e5_2r/run.h5 --iteration 1 \\
        --json docs/figures/tail_forces_1e5_s17.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from warm_start import designs, rank_zero_prints, run_config  # bench/ is on the path of a bench script

from nanoto_driver import engine_lammps
from nanoto_driver.cleanup import first_shell_table, occupied_neighbors
from nanoto_driver.coarse import floppy_sites
from nanoto_driver.engine import WarmStart
from nanoto_driver.evaluate import local_relax, open_problem
from nanoto_driver.stiffness import symmetric_curvature

SMOOTHING_A = 15.0  # radius of the spheres the long-wave share averages over (Å)
SAMPLE = 2000  # atoms at which it is sampled


def force_shares(x: np.ndarray, f: np.ndarray, lattice: np.ndarray, groups: dict[str, np.ndarray],
                 moved_a: float, radius_a: float) -> dict[str, Any]:
    """The figures of one snapshot: x, f, lattice (n, 3) in Å, eV/Å, Å; groups name (n,) bool masks."""
    from scipy.spatial import cKDTree

    f2 = (f ** 2).sum(axis=1)
    tree = cKDTree(x)
    moved = np.linalg.norm(x - lattice, axis=1) > moved_a
    near = np.zeros(len(x), bool)
    for neighbours in tree.query_ball_point(x[moved], radius_a) if moved.any() else ():
        near[neighbours] = True
    pick = np.random.default_rng(0).choice(len(x), size=min(SAMPLE, len(x)), replace=False)
    smooth = np.array([f[nb].mean(axis=0) for nb in tree.query_ball_point(x[pick], SMOOTHING_A)])
    total = float(f2.sum())
    return {"f2": total, "fmax": float(np.sqrt(f2.max())), "moved_atoms": int(moved.sum()),
            "near_atoms": int(near.sum()), "moved": float(f2[moved].sum()) / total,
            "near": float(f2[near].sum()) / total,
            **{name: float(f2[mask].sum()) / total for name, mask in groups.items()},
            "long_wave": float((smooth ** 2).sum() / f2[pick].sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a run file (run.h5) made with the in-process LAMMPS engine")
    ap.add_argument("--iteration", type=int, default=1, help="design k (warm from design k-1)")
    ap.add_argument("--every", type=int, default=5, help="read the forces every N-th correction")
    ap.add_argument("--moved-a", type=float, default=1.0)
    ap.add_argument("--radius-a", type=float, default=6.0)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    config = run_config(args.run, [])
    if not config.minimizer.coarse_every:
        raise SystemExit("the run has no coarse correction (minimizer.coarse_every: 0)")
    occupancy = designs(args.run)
    k = args.iteration
    problem = open_problem(config)
    engine, s, mini = problem.engine, problem.structure, config.minimizer
    rank_zero_prints(engine)  # ranks other than 0 print nothing from here on
    occ = occupancy[k]
    ids = np.flatnonzero(occ) + 1
    coordination = occupied_neighbors(first_shell_table(s.lattice.cells, s.periodic), occ)[occ]
    groups = {"surface": coordination < 12, "floppy": floppy_sites(s, occ)[occ]}
    rows: list[dict[str, Any]] = []
    seen = {"corrections": 0, "active": False}  # corrections of design k so far; off during design k-1
    correct = engine_lammps.LammpsEngine._coarse_correction

    def observed(self: Any, *a: Any, **kw: Any) -> Any:  # reads the state before every N-th correction
        seen["corrections"] += 1
        if seen["active"] and seen["corrections"] % args.every == 0:
            x, f = self._gather("x", 3, ids), self._gather("f", 3, ids)  # collective: every rank
            energy = float(self._lmp.get_thermo("pe"))
            if self.rank == 0:
                rows.append({"correction": seen["corrections"], "energy_ev": energy,
                             **force_shares(x, f, s.positions_a[occ], groups, args.moved_a, args.radius_a)})
                r = rows[-1]
                print(f"{r['correction']:>5} {r['energy_ev']:>16.7f} {r['f2']:>9.1e} {r['fmax']:>9.1e} "
                      f"{r['moved']:>6.2f} {r['near']:>6.2f} {r['surface']:>7.2f} {r['floppy']:>6.3f} "
                      f"{r['long_wave']:>9.3f} {r['moved_atoms']:>6} {r['near_atoms']:>6}", flush=True)
        return correct(self, *a, **kw)

    engine_lammps.LammpsEngine._coarse_correction = observed  # type: ignore[method-assign]
    try:
        delta = problem.delta_a()
        prev = symmetric_curvature(engine, s, occupancy[k - 1], delta, mini.max_nonaffine_a,
                                   basin_restarts=mini.basin_restarts)
        warm = WarmStart(prev.relaxed[0].positions_a, prev.response_a, occupancy[k - 1])
        seen["corrections"], seen["active"] = 0, True
        print(f"{args.run}: design {k}, {len(ids):,} atoms; energy is LAMMPS' pe (gauge included); "
              f"shares of |f|^2")
        print(f"{'corr':>5} {'energy (eV)':>16} {'|f|^2':>9} {'max|f|':>9} {'moved':>6} {'near':>6} "
              f"{'surface':>7} {'floppy':>6} {'long-wave':>9} {'moved#':>6} {'near#':>6}")
        result = symmetric_curvature(engine, s, occ, delta, mini.max_nonaffine_a, warm,
                                     basin_restarts=mini.basin_restarts, local=local_relax(problem))
        print("force evaluations per state:", [st.force_evaluations for st in result.states],
              "" if result.local is None else f"after a local part of {result.local.n_atoms:,} atoms in "
              f"{result.local.force_evaluations} of its own force evaluations")
    finally:
        engine_lammps.LammpsEngine._coarse_correction = correct  # type: ignore[method-assign]
        engine.close()
    if args.json and engine.rank == 0:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
