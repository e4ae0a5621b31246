"""Crystallography-aligned multi-shell sensitivity filter (method.md §5).

Built once on the perfect-lattice site graph from the exact FCC shells, so the
kernel has full cubic symmetry and never cuts a shell in half:

    α~_i = [w_0 α_i + Σ_s w_s Σ_{j in shell s of i} α_j] / [w_0 + Σ_s w_s n_s(i)]

n_s(i) counts the shell-s sites that exist in the domain (periodic axes wrap,
free faces truncate), so a constant field stays constant at boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import csr_matrix

from .shells import neighbor_table, shell_radius

Scheme = Literal["hat", "uniform", "gaussian"]


def shell_weights(shells: int, scheme: Scheme = "hat", radius_a0: float = 1.3) -> np.ndarray:
    """Weights (w_0, w_1, ..., w_shells) of the self site and each shell.

    hat: w_s = radius - r_s (linear, zero at ``radius``); uniform: 1 everywhere;
    gaussian: exp(-r_s² / (2 σ²)) with σ = radius / 2. Radii r_s in units of a0.
    """
    r = np.array([0.0] + [shell_radius(s) for s in range(1, shells + 1)])
    if scheme == "hat":
        if shells and r[-1] >= radius_a0:
            raise ValueError(
                f"filter.radius_a0 = {radius_a0} does not reach shell {shells} (r = {r[-1]:.4f} a0): "
                "raise the radius or use fewer shells"
            )
        return radius_a0 - r
    if scheme == "uniform":
        return np.ones_like(r)
    if scheme == "gaussian":
        sigma = radius_a0 / 2.0
        return np.exp(-(r**2) / (2 * sigma**2))
    raise ValueError(f"unknown filter scheme '{scheme}' (valid: hat, uniform, gaussian)")


@dataclass(frozen=True, eq=False)
class ShellFilter:
    """The normalized sparse operator F (n_sites x n_sites, CSR): α~ = F @ α."""

    operator: csr_matrix
    weights: np.ndarray

    def __call__(self, alpha: np.ndarray) -> np.ndarray:
        """Filter a (n_sites,) field."""
        return np.asarray(self.operator @ alpha)


def build_filter(cells: tuple[int, int, int], periodic: tuple[bool, bool, bool], shells: int = 3,
                 scheme: Scheme = "hat", radius_a0: float = 1.3) -> ShellFilter:
    """Assemble F once for a block of cells; ``shells = 0`` gives the identity."""
    weights = shell_weights(shells, scheme, radius_a0)
    n = 4 * int(np.prod(cells))
    tables = [np.arange(n, dtype=np.int64)[:, None]]
    column_weights = [np.array([weights[0]])]
    for s in range(1, shells + 1):
        tables.append(neighbor_table(cells, periodic, s))
        column_weights.append(np.full(tables[-1].shape[1], weights[s]))
    table = np.concatenate(tables, axis=1)
    w = np.where(table >= 0, np.concatenate(column_weights)[None, :], 0.0)
    norm = w.sum(axis=1)
    valid = table >= 0
    # rows stay in order, so CSR comes straight from the table; a pair seen through
    # several periodic images appears several times in its row and adds up in products
    indptr = np.concatenate([[0], np.cumsum(valid.sum(axis=1))])
    data = (w / norm[:, None])[valid]
    operator = csr_matrix((data, table[valid], indptr), shape=(n, n))
    return ShellFilter(operator, weights)
