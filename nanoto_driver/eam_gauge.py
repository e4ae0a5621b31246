"""A gauge-shifted copy of a one-element EAM table: the same forces, total energy near zero.

Why. LAMMPS adds the per-atom energies of EAM aluminium (embedding F(ρ) ≈ -5.4 eV, pair part
≈ +2.0 eV) into one double per rank. The round-off of that sum grows as N^1.5: about 3e-9 eV
at 10^5 atoms and 4e-8 eV at 6.5 x 10^5 (a sequential float64 sum of N values near -3.4 eV).
CG's line search compares energies and gives up below 1e-8 eV (LAMMPS' EMACH): relaxations
of large designs end on "linesearch alpha is zero" at a largest force that grows with size
(1e-4 eV/Å at 10^5 sites, 1.3e-3 at 6.5 x 10^5), not at the force tolerance.

What. For one element, EAM's energy is invariant under

    F(ρ) -> F(ρ) + k ρ + c,        φ(r) -> φ(r) - 2 k f(r)

(f: the density function): each atom's energy moves by c, every force and every energy
difference between configurations of the same atoms stays (exactly in real arithmetic).
k and c are chosen to put both parts of a bulk FCC atom's energy at zero, so the sums LAMMPS
forms are of the size of the surface energy, not of the cohesive energy. The engine then
subtracts c per atom from every energy it reports.

Supported: setfl (``eam/alloy``) and Finnis-Sinclair (``eam/fs``) files with one element.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import PotentialError
from .potential import Potential

HEADER_LINES = 6  # 3 comments, "1 El", "Nrho drho Nr dr cutoff", "Z mass a lattice"
#: FCC neighbour shells within the cutoffs of aluminium EAM files: (distance / a, count)
FCC_SHELLS = ((np.sqrt(0.5), 12), (1.0, 6), (np.sqrt(1.5), 24), (np.sqrt(2.0), 12), (np.sqrt(2.5), 24),
              (np.sqrt(3.0), 8), (np.sqrt(3.5), 48), (2.0, 6))


def read_tables(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, float, float]:
    """The header lines and the tables of a one-element setfl / FS file.

    Returns (header, F (Nrho,) eV, f (Nr,) density, rφ (Nr,) eV Å, drho, dr).
    """
    lines = path.read_text().splitlines()
    try:
        nrho_s, drho_s, nr_s, dr_s = lines[4].split()[:4]
        nrho, nr, drho, dr = int(nrho_s), int(nr_s), float(drho_s), float(dr_s)
        values = np.array(" ".join(lines[HEADER_LINES:]).split(), dtype=float)
    except (IndexError, ValueError) as err:
        raise PotentialError(f"{path} is not a readable setfl / Finnis-Sinclair file ({err})") from None
    if values.size != nrho + 2 * nr:
        raise PotentialError(f"{path.name}: {values.size} table values, expected {nrho + 2 * nr} "
                             f"(Nrho {nrho} + 2 x Nr {nr}); the file is truncated or not one-element")
    return lines[:HEADER_LINES], values[:nrho], values[nrho:nrho + nr], values[nrho + nr:], drho, dr


def bulk_gauge(embedding: np.ndarray, density: np.ndarray, r_phi: np.ndarray, drho: float, dr: float,
               a_lattice: float) -> tuple[float, float]:
    """(k eV per density unit, c eV) that put F and the pair half of a bulk FCC atom at zero."""
    r_grid = np.arange(density.size) * dr
    rho = pair = 0.0
    for shell, count in FCC_SHELLS:
        r = shell * a_lattice
        if r < r_grid[-1]:
            rho += count * np.interp(r, r_grid, density)
            pair += 0.5 * count * np.interp(r, r_grid, r_phi) / r
    k = pair / rho
    c = -(np.interp(rho, np.arange(embedding.size) * drho, embedding) + k * rho)
    return float(k), float(c)


def write_gauged(potential: Potential, out: Path) -> float:
    """Write the gauge-shifted copy of ``potential`` to ``out``; return c (eV per atom): LAMMPS'
    energy of any configuration of N atoms with the copy is the original's plus N c.

    k and c come from the FCC lattice constant in the file's element line; any k and c give
    the same forces, these only make the sums small."""
    if potential.pair_style not in ("eam/alloy", "eam/fs"):
        raise PotentialError(f"minimizer.energy_gauge needs an eam/alloy or eam/fs file, not "
                             f"{potential.pair_style} ({potential.path.name}); set it to false")
    if len(potential.elements) != 1:
        raise PotentialError(f"{potential.path.name} has {len(potential.elements)} elements; "
                             "minimizer.energy_gauge needs a one-element eam/alloy or eam/fs file")
    header, embedding, density, r_phi, drho, dr = read_tables(potential.path)
    try:
        a_lattice = float(header[5].split()[2])
    except (IndexError, ValueError):
        a_lattice = 4.05  # aluminium; the gauge only has to be about right
    k, c = bulk_gauge(embedding, density, r_phi, drho, dr, a_lattice)
    rho_grid = np.arange(embedding.size) * drho
    r_grid = np.arange(density.size) * dr
    body = np.concatenate([embedding + k * rho_grid + c, density, r_phi - 2.0 * k * r_grid * density])
    rows = (" ".join(f"{v:.16e}" for v in body[i:i + 5]) for i in range(0, body.size, 5))
    header = [*header[:2], f"gauge-shifted by nanoto: F + {k!r} rho + {c!r}, phi - 2 {k!r} f", *header[3:]]
    out.write_text("\n".join([*header, *rows]) + "\n")
    return c
