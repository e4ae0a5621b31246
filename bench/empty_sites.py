"""Empty sites deleted from LAMMPS or kept as type-4 atoms in no pair: which is faster.

The design is large and realistic: a converged Nano-TO design of the committed training
set (data/train_cantilever.h5, 20 x 12 x 1 cells, the whole end loaded, volume fraction
0.5) stretched nearest-cell onto the demo cantilever at CELLS (default 132 x 66 x 3,
104,544 sites, about half of them empty). Per mode and repeat, in a fresh in-process
engine (1 rank):

- load: putting the design into LAMMPS (create its atoms, or every site with empty ones
  as type 4) for a first design and for a second one that differs in 1 % of the design
  sites (what an optimization iteration does);
- minimization: STEPS CG iterations at u = 0 with a force tolerance out of reach, so both
  modes do the same number of force evaluations; seconds per force evaluation from
  LAMMPS' own loop time.

Modes alternate (delete, type, type, delete, ...) so drift of the machine hits both.
Prints medians, the ratio type / delete, and checks that both modes end with the same
energy (they should: the same atoms interact).

    python bench/empty_sites.py                       # 1e5 sites, 3 repeats, ~5 min
    python bench/empty_sites.py --cells 44 22 3 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import median

import h5py
import numpy as np

from nanoto_driver.config import load_config
from nanoto_driver.evaluate import open_problem
from nanoto_driver.structure import DESIGN

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "workflows" / "examples" / "optimize_cantilever.yaml"
DATASET = ROOT / "data" / "train_cantilever.h5"


def source_design(path: Path, volume_fraction: float) -> np.ndarray:
    """(4, nx, ny, 1) bool: the whole-end design of the dataset closest to ``volume_fraction``."""
    with h5py.File(path, "r") as f:
        (group,) = f["shapes"].values()
        table = group["table"]
        whole_end = (table["load_j0"][:] == 0) & (table["load_j1"][:] == table["ny"][:])
        vf = table["target_volume_fraction"][:]
        ok = whole_end & table["converged"][:].astype(bool)
        pick = int(np.flatnonzero(ok)[np.argmin(np.abs(vf[ok] - volume_fraction))])
        return group["occupancy"][pick].astype(bool)


def stretched(source: np.ndarray, grid_shape: tuple[int, int, int, int]) -> np.ndarray:
    """Nearest-cell map of a (4, sx, sy, sz) design onto ``grid_shape`` (4, nx, ny, nz); flat bool."""
    _, nx, ny, nz = grid_shape
    i = np.arange(nx) * source.shape[1] // nx
    j = np.arange(ny) * source.shape[2] // ny
    k = np.arange(nz) * source.shape[3] // nz
    return source[:, i][:, :, j][:, :, :, k].reshape(-1)


def one_mode(mode: str, cells: tuple[int, int, int], steps: int, source: np.ndarray) -> dict[str, float]:
    config = load_config(CONFIG, [f"domain.cells=[{cells[0]}, {cells[1]}, {cells[2]}]",
                                  f"engine.empty_sites={mode}", f"minimizer.maxiter={steps}",
                                  "minimizer.ftol_ev_per_a=1e-30"])
    problem = open_problem(config)
    s = problem.structure
    occ = stretched(source, s.lattice.grid_shape) | (s.kind != DESIGN)
    rng = np.random.default_rng(0)
    occ2 = occ.copy()
    flip = rng.choice(np.flatnonzero(s.kind == DESIGN), size=int(0.01 * (s.kind == DESIGN).sum()), replace=False)
    occ2[flip] = ~occ2[flip]
    try:
        out: dict[str, float] = {"sites": s.n_sites, "atoms": int(occ.sum())}
        for label, design in (("first", occ), ("second", occ2)):
            t0 = time.perf_counter()
            (r,) = problem.engine.relax(s, design, [0.0])
            wall = time.perf_counter() - t0
            out[f"{label}_load_s"] = wall - r.loop_s  # everything outside LAMMPS' minimizer loop
            out[f"{label}_s_per_eval"] = r.loop_s / r.force_evaluations
            out[f"{label}_evals"] = r.force_evaluations
            out[f"{label}_energy_ev"] = r.engine_energy_ev
        return out
    finally:
        problem.engine.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, nargs=3, default=(132, 66, 3))
    ap.add_argument("--steps", type=int, default=100, help="CG iterations per minimization (default 100)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--volume-fraction", type=float, default=0.5)
    ap.add_argument("--json", type=Path, help="write the medians here")
    args = ap.parse_args(argv)
    source = source_design(DATASET, args.volume_fraction)
    runs: dict[str, list[dict[str, float]]] = {"delete": [], "type": []}
    for r in range(args.repeat):
        for mode in (("delete", "type") if r % 2 == 0 else ("type", "delete")):
            runs[mode].append(one_mode(mode, tuple(args.cells), args.steps, source))
            last = runs[mode][-1]
            print(f"repeat {r + 1} {mode:6s}: {last['second_s_per_eval'] * 1e3:.2f} ms/eval, "
                  f"load {last['first_load_s']:.2f} s then {last['second_load_s']:.2f} s", flush=True)
    keys = [k for k in runs["delete"][0] if k.endswith(("_s", "_s_per_eval"))]
    med = {mode: {k: median(x[k] for x in rows) for k in keys} for mode, rows in runs.items()}
    first = runs["delete"][0]
    print(f"\n{first['sites']:,} sites, {first['atoms']:,} atoms, {args.steps} CG iterations, "
          f"median of {args.repeat}")
    print(f"{'':28s}{'delete':>12s}{'type':>12s}{'type/delete':>13s}")
    for k in keys:
        scale, unit = (1e3, "ms") if k.endswith("eval") else (1.0, "s")
        d, t = med["delete"][k], med["type"][k]
        print(f"{k + ' (' + unit + ')':28s}{d * scale:12.3f}{t * scale:12.3f}{t / d:13.2f}")
    worst = max(abs(a[f"{lab}_energy_ev"] - b[f"{lab}_energy_ev"]) / abs(a[f"{lab}_energy_ev"])
                for a, b in zip(runs["delete"], runs["type"], strict=True) for lab in ("first", "second"))
    print(f"largest relative energy difference between the modes: {worst:.1e}")
    if args.json:
        args.json.write_text(json.dumps({"cells": args.cells, "steps": args.steps, "repeat": args.repeat,
                                         "sites": first["sites"], "atoms": first["atoms"],
                                         "median": med, "energy_rel_diff": worst}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
