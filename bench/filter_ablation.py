"""Filter ablation: the same optimization with 0, 1 and 3 neighbour shells in the filter.

Runs (or resumes) ``nanoto run`` for each shell count into runs/ablation/shells<N>,
then reports the final K_sym and the fraction of atoms with fewer than 4 occupied
first-shell neighbours (a measure of dangling, surface-dominated atoms), and draws
the three final designs side by side. A run that stops on an error (an unstable
design) is reported with its last complete iteration and the error.

    python bench/filter_ablation.py [--config workflows/examples/optimize_cantilever.yaml] [--ranks 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from nanoto_driver.cleanup import occupied_neighbors, padded_table
from nanoto_driver.shells import neighbor_table

SHELLS = (0, 1, 3)


def run(config: str, shells: int, out: Path, ranks: int) -> int:
    cmd = [sys.executable, "-m", "nanoto_driver", "run", config, "-o", str(out), "--resume", "--quiet",
           "--set", f"filter.shells={shells}"]
    if ranks > 1:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(ranks), *cmd]
    return subprocess.run(cmd).returncode


def metrics(out: Path) -> dict:
    """Figures of the last complete iteration, read from the run file."""
    with h5py.File(out / "run.h5") as f:
        occ = f["final/occupancy"][:].astype(bool)
        cells = tuple(int(c) for c in f["lattice"].attrs["cells"])
        periodic = tuple(bool(p) for p in f["lattice"].attrs["periodic"])
        positions = f["final/positions_a"][:]
        record = {"k_sym_ev_per_a2": float(f["final"].attrs["k_sym_ev_per_a2"]),
                  "volume_fraction": float(f["final"].attrs["volume_fraction"]),
                  "iterations": int(f["iterations/k"].shape[0]), "status": str(f.attrs["status"]),
                  "error": str(f.attrs["error"])}
    table = padded_table(neighbor_table(cells, periodic, 1))
    coordination = occupied_neighbors(table, occ)[occ]
    return {**record, "fraction_below_4_neighbours": float(np.mean(coordination < 4)),
            "mean_coordination": float(coordination.mean()), "occupancy": occ, "positions": positions}


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.2), constrained_layout=True)
    for ax, (shells, m) in zip(axes, results.items(), strict=True):
        pts = m["positions"][m["occupancy"]]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, c="0.3", alpha=0.4, linewidths=0)
        ax.set_aspect("equal")
        state = "" if m["status"] == "converged" else f" ({m['status']} at V = {m['volume_fraction']:.2f})"
        ax.set_title(f"{shells} shells{state}: K_sym {m['k_sym_ev_per_a2']:.4f} eV/Å², "
                     f"{100 * m['fraction_below_4_neighbours']:.1f} % with < 4 neighbours", fontsize=9)
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="workflows/examples/optimize_cantilever.yaml")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--figure", default="docs/figures/filter_ablation.png")
    args = parser.parse_args()
    results = {}
    for shells in SHELLS:
        out = Path(args.out) / f"shells{shells}"
        run(args.config, shells, out, args.ranks)
        results[shells] = metrics(out)
    print(f"{'shells':>6} {'K_sym (eV/Å²)':>14} {'V':>6} {'< 4 neighbours':>15} {'mean coord.':>12} "
          f"{'iterations':>11}  status")
    for shells, m in results.items():
        print(f"{shells:>6} {m['k_sym_ev_per_a2']:>14.6g} {m['volume_fraction']:>6.3f} "
              f"{100 * m['fraction_below_4_neighbours']:>14.2f}% {m['mean_coordination']:>12.2f} "
              f"{m['iterations']:>11}  {m['status']} {m['error']}")
    figure(results, Path(args.figure))
    table = {s: {k: v for k, v in m.items() if k not in ("occupancy", "positions")} for s, m in results.items()}
    Path(args.figure).with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
    print(json.dumps(table))


if __name__ == "__main__":
    main()
