"""Where a u = 0 relaxation moved atoms far: the parts of a design that reconstructed.

A run file keeps the warm start of the iteration it is in (``state/positions_a``, the relaxed
u = 0 of the design before) and, once finished, the relaxed u = 0 of its last design
(``final/positions_a``). A copy of the run file taken during iteration k and the finished run
(max_iterations k + 1) therefore give both ends of iteration k's u = 0. This prints the
clusters (first-shell bonds on the lattice) of atoms that moved more than ``--far`` Å, with
their size, largest move, coordination in the design and bonds to the rest of the design,
and draws design k - 1, design k, and the moves in the x-y plane around the largest cluster.

    python bench/reconstruction_map.py runs/it2_65/run.h5 runs/scale_s13/6.5e5_2r/run.h5 \\
        --png docs/figures/reconstruction_6.5e5_it2.png
"""

from __future__ import annotations

import argparse

import h5py
import numpy as np

from nanoto_driver.cleanup import cluster_labels, occupied_neighbors, padded_table
from nanoto_driver.lattice import FccLattice
from nanoto_driver.shells import neighbor_table


def moves(start: h5py.File, end: h5py.File) -> tuple[FccLattice, np.ndarray, np.ndarray, np.ndarray, int]:
    """(lattice, occupancy of design k, moves (n_sites,) Å, positions after (n_sites, 3) Å, k)."""
    k = int(start["state"].attrs["k"])
    occ = start["state/occupancy"][:]
    if not np.array_equal(end["final/occupancy"][:], occ):
        raise SystemExit("the finished run's last design is not the design of the copy's state group: "
                         "take the copy during the run's last iteration")
    attrs = start["lattice"].attrs
    lattice = FccLattice(tuple(int(c) for c in attrs["cells"]), float(attrs["a0_a"]))
    x0, x1 = start["state/positions_a"][:], end["final/positions_a"][:]
    d = x1 - x0
    box = np.asarray(lattice.cells) * lattice.a0_a
    periodic = attrs["periodic"].astype(bool)
    d[:, periodic] -= box[periodic] * np.round(d[:, periodic] / box[periodic])  # nearest image
    m = np.where(occ, np.linalg.norm(d, axis=1), 0.0)
    return lattice, occ, m, x1, k


def describe(table: np.ndarray, occ: np.ndarray, m: np.ndarray, far: float, top: int) -> np.ndarray:
    """Print the clusters of atoms that moved more than ``far`` Å; returns the largest's mask."""
    coordination = occupied_neighbors(table, occ)
    moved = m > far
    labels = cluster_labels(table, moved)
    names, sizes = np.unique(labels[moved], return_counts=True)
    print(f"{occ.sum()} atoms; moved > 1 Å: {(m > 1).sum()}, > {far:g} Å: {moved.sum()}, > 20 Å: {(m > 20).sum()}")
    largest = np.zeros_like(moved)
    for rank, name in enumerate(names[np.argsort(-sizes)][:top]):
        part = moved & (labels == name)
        ties = np.append(occ & ~part, False)[table] & part[:, None]
        print(f"  {part.sum():5d} atoms, largest move {m[part].max():5.1f} Å, coordination median "
              f"{np.median(coordination[part]):.0f} (min {coordination[part].min()}), "
              f"{ties.sum()} bonds to the rest from {ties.any(axis=1).sum()} atoms")
        if rank == 0:
            largest = part
    return largest


def draw(path: str, lattice: FccLattice, before: np.ndarray, occ: np.ndarray, m: np.ndarray,
         x1: np.ndarray, part: np.ndarray, k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = lattice.positions_a
    centre = r[part].mean(axis=0)
    near = np.all(np.abs(r[:, :2] - centre[:2]) < [160.0, 90.0], axis=1)
    layer = lattice.index[:, 3] == lattice.cells[2] // 2  # one cell of the thickness, for a clear picture
    fig, ax = plt.subplots(1, 3, figsize=(18, 4.2), sharex=True, sharey=True, layout="constrained")
    for a, design, title in ((ax[0], before, f"design {k - 1}"), (ax[1], occ, f"design {k}")):
        s = near & design & layer
        a.scatter(r[s, 0], r[s, 1], s=0.5, c="k")
        a.set_title(title)
    s = near & occ & layer
    ax[2].scatter(r[s, 0], r[s, 1], s=0.5, c="0.8")
    shown = ax[2].scatter(x1[s, 0], x1[s, 1], s=0.5, c=m[s], cmap="viridis")
    fig.colorbar(shown, ax=ax[2], label="move at u = 0 (Å)", shrink=0.8)
    ax[2].set_title(f"design {k}: sites (grey), relaxed at u = 0 (colour)")
    for a in ax:
        a.set_aspect("equal")
        a.set_xlabel("x (Å)")
    ax[0].set_ylabel("y (Å)")
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("copy", help="a copy of the run file taken during the last iteration")
    ap.add_argument("finished", help="the finished run file")
    ap.add_argument("--far", type=float, default=5.0, help="moves beyond this count (Å)")
    ap.add_argument("--top", type=int, default=6, help="clusters to list")
    ap.add_argument("--png", help="draw the largest cluster's neighbourhood here")
    a = ap.parse_args()
    with h5py.File(a.copy, "r") as start, h5py.File(a.finished, "r") as end:
        lattice, occ, m, x1, k = moves(start, end)
        before = start["iterations/occupancy"][k - 1]
        periodic = tuple(bool(p) for p in start["lattice"].attrs["periodic"])
    table = padded_table(neighbor_table(lattice.cells, periodic, 1))
    part = describe(table, occ, m, a.far, a.top)
    if a.png:
        draw(a.png, lattice, before, occ, m, x1, part, k)


if __name__ == "__main__":
    main()
