"""Exact FCC neighbour shells as integer offsets in (b, i, j, k) index space.

Shells are found once by enumerating doubled integer coordinates, so they carry
the full cubic symmetry and never depend on relaxed positions.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .lattice import FCC_BASIS

#: squared shell radii in units of (a0/2)^2: shells 1..6 at r/a0 = sqrt(n/4) for n = 2, 4, 6, 8, 10, 12
_SHELL_R2_HALF = (2, 4, 6, 8, 10, 12)


@cache
def shell_offsets(shell: int) -> np.ndarray:
    """Neighbour offsets of shell ``shell`` (1-based).

    Returns
    -------
    (M, 5) int array of rows (b, b2, di, dj, dk): site (b, i, j, k) has the
    neighbour (b2, i + di, j + dj, k + dk). Each b has the exact shell count.
    """
    if not 1 <= shell <= len(_SHELL_R2_HALF):
        raise ValueError(f"shell must be in 1..{len(_SHELL_R2_HALF)}, got {shell}")
    target = _SHELL_R2_HALF[shell - 1]
    basis2 = (2 * FCC_BASIS).astype(int)
    reach = range(-2, 3)
    rows = []
    for b in range(4):
        for b2 in range(4):
            for di in reach:
                for dj in reach:
                    for dk in reach:
                        d = 2 * np.array([di, dj, dk]) + basis2[b2] - basis2[b]
                        if int(d @ d) == target:
                            rows.append((b, b2, di, dj, dk))
    return np.array(rows, dtype=np.int64)


def shell_radius(shell: int) -> float:
    """Radius of shell ``shell`` in units of a0."""
    return float(np.sqrt(_SHELL_R2_HALF[shell - 1] / 4.0))


def neighbor_pairs(
    cells: tuple[int, int, int], periodic: tuple[bool, bool, bool], shell: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed site pairs of one shell on a block of cells.

    Neighbours wrap along periodic axes and are dropped past free faces.

    Returns
    -------
    src, dst : (P,) int64 site indices; every bond appears in both directions
    vec : (P, 3) float, lattice vector from src to dst in units of a0 (tells
        periodic images of the same pair apart)
    """
    grid = (4, *cells)
    n = int(np.prod(grid))
    idx = np.indices(grid).reshape(4, -1)
    offsets = shell_offsets(shell)
    srcs, dsts, vecs = [], [], []
    for b, b2, *delta in offsets:
        on_b = idx[0] == b
        ijk = idx[1:, on_b] + np.array(delta)[:, None]
        keep = np.ones(ijk.shape[1], bool)
        for axis in range(3):
            if periodic[axis]:
                ijk[axis] %= cells[axis]
            else:
                keep &= (ijk[axis] >= 0) & (ijk[axis] < cells[axis])
        src = np.flatnonzero(on_b)[keep]
        dst = np.ravel_multi_index((np.full(keep.sum(), b2), *ijk[:, keep]), grid)
        srcs.append(src)
        dsts.append(dst)
        vec = np.array(delta, float) + FCC_BASIS[b2] - FCC_BASIS[b]
        vecs.append(np.broadcast_to(vec, (src.size, 3)))
    src, dst = np.concatenate(srcs), np.concatenate(dsts)
    assert src.size == 0 or (src.max() < n and dst.max() < n)
    return src.astype(np.int64), dst.astype(np.int64), np.concatenate(vecs)
