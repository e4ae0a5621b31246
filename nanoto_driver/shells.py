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
    cells: tuple[int, int, int], periodic: tuple[bool, bool, bool], shell: int = 1,
    with_vectors: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Directed site pairs of one shell on a block of cells.

    Neighbours wrap along periodic axes and are dropped past free faces.

    Returns
    -------
    src, dst : (P,) int64 site indices; every bond appears in both directions
    vec : (P, 3) float lattice vectors from src to dst in units of a0 (tell
        periodic images of the same pair apart), or None unless ``with_vectors``
    """
    site = np.arange(4 * int(np.prod(cells)), dtype=np.int64).reshape(4, *cells)
    srcs, dsts, vecs = [], [], []
    for b, b2, *delta in shell_offsets(shell):
        src, dst = site[b], site[b2]
        for axis, d in enumerate(delta):
            src, dst = _shift(src, dst, axis, int(d), periodic[axis])
        srcs.append(src.ravel())
        dsts.append(dst.ravel())
        if with_vectors:
            vec = np.array(delta, float) + FCC_BASIS[b2] - FCC_BASIS[b]
            vecs.append(np.broadcast_to(vec, (src.size, 3)))
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(vecs) if with_vectors else None


def _shift(src: np.ndarray, dst: np.ndarray, axis: int, d: int, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pair grid cell c of ``src`` with cell c + d of ``dst`` along ``axis`` (wrap or truncate)."""
    if d == 0:
        return src, dst
    if periodic:
        return src, np.roll(dst, -d, axis=axis)
    n = src.shape[axis]
    lo, hi = max(0, -d), min(n, n - d)
    take_src = [slice(None)] * 3
    take_dst = [slice(None)] * 3
    take_src[axis] = slice(lo, max(lo, hi))
    take_dst[axis] = slice(lo + d, max(lo, hi) + d)
    return src[tuple(take_src)], dst[tuple(take_dst)]


def neighbor_table(cells: tuple[int, int, int], periodic: tuple[bool, bool, bool],
                   shell: int) -> np.ndarray:
    """(n_sites, count) int64 table of shell neighbours per site, -1 where a free face cuts it off.

    Row order is site order and every row lists its neighbours in the same
    offset order, so the table converts to CSR without sorting.
    """
    n = 4 * int(np.prod(cells))
    offsets = shell_offsets(shell)
    count = int((offsets[:, 0] == 0).sum())
    table = np.full((4, *cells, count), -1, dtype=np.int64)
    site = np.arange(n, dtype=np.int64).reshape(4, *cells)
    slot = np.zeros(4, int)
    for b, b2, *delta in offsets:
        src = np.arange(int(np.prod(cells))).reshape(cells)  # cell index grid of basis b
        dst = site[b2]
        for axis, d in enumerate(delta):
            src, dst = _shift(src, dst, axis, int(d), periodic[axis])
        table[b].reshape(-1, count)[src.ravel(), slot[b]] = dst.ravel()
        slot[b] += 1
    return table.reshape(n, count)
