"""BESO update on lattice sites (method.md §6): pure functions, arrays in and out.

Counts are exact integers; ranking is by the filtered, history-averaged
sensitivity, ties broken by site index so the update is deterministic.
"""

from __future__ import annotations

import numpy as np

#: sensitivities are compared after rounding to this fraction of the largest |α|:
#: mirror-image sites then tie exactly (and fall back to site order) instead of
#: being ordered by round-off that differs between serial and MPI runs.
RANK_RESOLUTION = 1e-9


def target_count(volume_fraction: float, n_design_sites: int) -> int:
    """N* = round(V* N_design): the design-atom count a run converges at."""
    return int(round(volume_fraction * n_design_sites))


def next_count(n_current: int, n_target: int, evolution_rate: float) -> int:
    """N_{k+1} = max(N*, round(N_k (1 - ER)))."""
    return max(n_target, int(round(n_current * (1.0 - evolution_rate))))


def rank_order(alpha: np.ndarray, sites: np.ndarray) -> np.ndarray:
    """``sites`` sorted by descending ``alpha`` (quantized), ties by ascending site index."""
    values = alpha[sites]
    scale = float(np.abs(values).max()) if values.size else 0.0
    if scale > 0:
        values = np.round(values / (scale * RANK_RESOLUTION))
    order = np.lexsort((sites, -values))
    return sites[order]


def beso_step(alpha: np.ndarray, occupancy: np.ndarray, design: np.ndarray, n_next: int,
              addition_ratio: float) -> np.ndarray:
    """Occupy the best ``n_next`` design sites, admitting at most ``addition_ratio * n_next`` additions.

    Parameters
    ----------
    alpha : (n_sites,) ranking field (filtered, averaged sensitivity)
    occupancy : (n_sites,) bool, current design
    design : (n_sites,) bool, the design sites (clamp and load sites are never touched)
    n_next : number of design atoms after the step

    Returns
    -------
    (n_sites,) bool, the new occupancy with exactly ``n_next`` design atoms.
    """
    sites = np.flatnonzero(design)
    if not 0 <= n_next <= sites.size:
        raise ValueError(f"cannot occupy {n_next} of {sites.size} design sites")
    ranked = rank_order(alpha, sites)
    top = ranked[:n_next]
    added = top[~occupancy[top]]
    max_added = int(addition_ratio * n_next)
    if added.size > max_added:
        current = ranked[occupancy[ranked]]
        top = np.concatenate([added[:max_added], current[: n_next - max_added]])
    out = occupancy & ~design
    out[top] = True
    return out
