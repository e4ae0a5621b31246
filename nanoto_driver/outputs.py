"""What a finished run leaves next to its run file: summary, plots, structure files.

Every product is written to ``<name>.partial`` and renamed, so a file that
exists is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .lammps_text import write_data_file
from .structure import CLAMP, LOAD, Structure


def atomic_write(path: Path, writer: Callable[[Path], object]) -> Path:
    """Run ``writer`` on ``path.partial`` and rename it to ``path``."""
    partial = path.with_name(path.name + ".partial")
    try:
        writer(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def occupancy_sha256(occupancy: np.ndarray) -> str:
    """Fingerprint of a design: sha256 of its occupancy as bytes of 0/1 in site order."""
    return hashlib.sha256(np.ascontiguousarray(occupancy, dtype=np.uint8).tobytes()).hexdigest()


def write_summary(path: Path, summary: dict[str, Any]) -> Path:
    return atomic_write(path, lambda p: p.write_text(json.dumps(summary, indent=1) + "\n"))


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_convergence(path: Path, iterations: dict[str, np.ndarray], title: str) -> Path:
    """K_sym and volume fraction versus iteration, on two y axes."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    k = iterations["k"]
    ax.plot(k, iterations["k_sym_ev_per_a2"], "o-", ms=3, color="C0", label="K_sym")
    ax.set_xlabel("iteration")
    ax.set_ylabel("K_sym (eV/Å²)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(k, iterations["volume_fraction"], "s-", ms=3, color="C1", label="volume fraction")
    ax2.set_ylabel("volume fraction of design sites", color="C1")
    ax2.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return path


def plot_design(path: Path, structure: Structure, occupancy: np.ndarray, positions_a: np.ndarray,
                title: str) -> Path:
    """Three orthogonal views of the atoms: design grey, clamp blue, load red."""
    plt = _figure()
    views = [(0, 1, "x", "y"), (0, 2, "x", "z"), (1, 2, "y", "z")]
    lo, hi = structure.lattice.box_a()
    span = hi - lo
    widths = [span[a] for a, _, _, _ in views]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), constrained_layout=True,
                             gridspec_kw={"width_ratios": widths})
    colors = np.where(structure.kind == CLAMP, "tab:blue", np.where(structure.kind == LOAD, "tab:red", "0.45"))
    size = max(1.0, 3000.0 / max(1, occupancy.sum()) ** 0.75)
    for ax, (a, b, na, nb) in zip(axes, views, strict=True):
        depth = 3 - a - b
        order = np.argsort(positions_a[occupancy, depth])  # nearer atoms drawn last
        pts = positions_a[occupancy][order]
        ax.scatter(pts[:, a], pts[:, b], s=size, c=colors[occupancy][order], linewidths=0, alpha=0.6)
        ax.set_xlim(lo[a] - 1, hi[a] + 1)
        ax.set_ylim(lo[b] - 1, hi[b] + 1)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{na} (Å)")
        ax.set_ylabel(f"{nb} (Å)")
        ax.set_title(f"{na}{nb} view (along {'xyz'[depth]})")
    fig.suptitle(f"{title}: {int(occupancy.sum())} atoms (blue clamp, red load)")
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return path


def write_structure_files(folder: Path, stem: str, structure: Structure, occupancy: np.ndarray,
                          positions_a: np.ndarray, alpha: np.ndarray) -> list[Path]:
    """The final design as a LAMMPS data file (ids = site + 1) and extended XYZ (ASE, OVITO)."""
    from ase import Atoms
    from ase.io import write

    data = atomic_write(folder / f"{stem}.data", lambda p: write_data_file(
        p, structure, occupancy, positions_a, title=f"nanoto {stem}", include_empty=False))
    lo, hi = structure.lattice.box_a()
    atoms = Atoms("Al" * int(occupancy.sum()), positions=positions_a[occupancy] - lo,
                  cell=np.diag(hi - lo), pbc=structure.periodic)
    atoms.new_array("site", np.flatnonzero(occupancy))
    atoms.new_array("kind", structure.kind[occupancy].astype(int))
    atoms.new_array("alpha", alpha[occupancy])
    xyz = atomic_write(folder / f"{stem}.extxyz", lambda p: write(str(p), atoms, format="extxyz"))
    return [data, xyz]
