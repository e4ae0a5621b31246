"""Lattice symmetries of a design domain: site permutations that map a design onto an
equivalent one (same energy, same K_sym, possibly another load patch).

The one used for augmentation: the mirror y -> -y through the middle of the domain. On
its own it is not a symmetry of an FCC block (it maps an atomic (010) layer onto the
interlayer position of the other layer type), but followed by a shift of a0/2 along a
periodic z it is (a glide): the two (010) layer types differ exactly by that shift. A
cantilever loaded along -y then maps onto the same cantilever loaded along +y on the
mirrored patch, and K_sym, the symmetric curvature, is the same for ±u.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .lattice import FCC_BASIS, FccLattice


def image_sites(lattice: FccLattice, mirror_axis: int, shift_a0: tuple[float, float, float],
                periodic: tuple[bool, bool, bool]) -> np.ndarray:
    """Site index of the image of every site under mirror-then-shift: (n_sites,) int.

    ``mirror_axis`` coordinates p become (n - 1/2) - p (the sites span 0 .. n - 1/2 in a0);
    then ``shift_a0`` is added and periodic axes wrap. Raises ValueError if some image is
    not a lattice site of the block: then the operation is not a symmetry of it.
    """
    n = np.asarray(lattice.cells, float)
    idx = lattice.index
    p = idx[:, 1:] + FCC_BASIS[idx[:, 0]]
    p[:, mirror_axis] = n[mirror_axis] - 0.5 - p[:, mirror_axis]
    p = p + np.asarray(shift_a0, float)
    for axis in range(3):
        if periodic[axis]:
            p[:, axis] = np.mod(p[:, axis], n[axis])
    cell = np.floor(p + 1e-9).astype(np.int64)
    frac = p - cell
    match = np.all(np.abs(frac[:, None, :] - FCC_BASIS[None, :, :]) < 1e-9, axis=2)  # (n_sites, 4)
    inside = np.all((cell >= 0) & (cell < np.asarray(lattice.cells)), axis=1)
    if not (match.sum(axis=1) == 1).all() or not inside.all():
        raise ValueError("not a symmetry of this lattice block: some images are not lattice sites")
    b = match.argmax(axis=1)
    image = np.ravel_multi_index((b, cell[:, 0], cell[:, 1], cell[:, 2]), lattice.grid_shape)
    if np.unique(image).size != image.size:
        raise ValueError("not a symmetry of this lattice block: two sites map onto one")
    return image


def y_glide(lattice: FccLattice, periodic: tuple[bool, bool, bool]) -> np.ndarray:
    """The y-mirror glide of a block periodic in z: (n_sites,) image site of every site."""
    if not periodic[2]:
        raise ValueError("the y-mirror glide needs a periodic z axis (thickness: periodic)")
    return image_sites(lattice, 1, (0.0, 0.0, 0.5), periodic)


def mirrored_span(span: tuple[Any, Any], ny: int) -> tuple[Any, Any]:
    """The load patch [j0, j1) seen in the mirror: [ny - j1, ny - j0) (ints, or arrays of them)."""
    j0, j1 = span
    return ny - j1, ny - j0


def apply(image: np.ndarray, per_site: np.ndarray) -> np.ndarray:
    """A per-site array (n_sites, ...) of the mirrored design: out[image[s]] = per_site[s]."""
    out = np.empty_like(per_site)
    out[image] = per_site
    return out
