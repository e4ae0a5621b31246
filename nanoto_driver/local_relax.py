"""Relax the neighbourhood of a BESO step's changes before the whole design (minimizer.local_hops).

A warm start puts every atom that stays where the previous design relaxed it, and an added
atom on its lattice site. What is left to relax at u = 0 sits next to the sites that changed:
new surfaces, and thin parts that rearrange there. Relaxing it with the whole design makes
every atom wait for the slowest of those local rearrangements (at 6.5 x 10^5 sites one thin
part fell 31 Å and took 11,179 force evaluations of the whole design). Here the atoms within
``hops`` first-neighbour hops of a changed site (the region) are relaxed first, in a system of
their own: the region plus a shell of atoms around it held fixed where the warm start put
them, thick enough (two potential cutoffs) that every force on a region atom is the force it
has in the whole design. The whole design then relaxes from there, as before.

Plain CG relaxes the region: the spring network of the two-level relaxation (coarse.py) models
long waves of the whole design, which a region with a fixed shell does not have (measured on
design 1 of the 10^5-site cantilever: 2,028 force evaluations of the region in cycles against
615 with plain CG).

The tail polish (``polish_tail``, minimizer.polish_ftol_ev_per_a) is the same sub-system seeded
differently. A warm u = 0 at 10^5 sites spends about half its force evaluations on a tail whose
residual sits on a few hundred atoms around the ones that rearranged (bench/tail_forces.py: 60-84 %
of |f|^2 on ~190 of 102,501 atoms). So the whole design relaxes to a loose tolerance first; then
the atoms with a first-neighbour bond changed by more than MOVED_A from the lattice (a local
measure: the bending of the whole beam moves atoms but changes bonds little), and ``hops``
around them, relax in a system of their own (each of its force evaluations costs its share of
the atoms); then the whole design finishes from there.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np

from .bond_changes import rearranged_sites
from .cleanup import first_shell_table
from .engine import Engine, RelaxResult, WarmStart
from .structure import CLAMP, DESIGN, Structure

log = logging.getLogger("nanoto")
#: an atom one of whose first-neighbour bond vectors changed this much from the lattice has rearranged
#: (Å; a bond is 2.86 Å in Al; the bending of the whole beam changes each bond little)
MOVED_A = 1.0


@dataclass(frozen=True)
class LocalRelax:
    """``hops``: first-neighbour hops from a changed site that the region reaches; ``shell_hops``:
    hops of fixed atoms around it (``shell_hops_for``); ``max_share``: the largest share of the
    design's atoms the region and shell may hold (above it the whole design relaxes alone)."""

    hops: int
    shell_hops: int
    max_share: float = 1.0


def shell_hops_for(cutoff_a: float, a0_a: float) -> int:
    """Hops that reach at least two cutoffs in every direction (the EAM force on an atom depends on
    the densities at its neighbours, which depend on theirs). n first-neighbour hops reach at
    least n a0 / 2 (along a cube axis, the shortest way)."""
    return math.ceil(2 * (2 * cutoff_a) / a0_a)


def grow(table: np.ndarray, mask: np.ndarray, hops: int) -> np.ndarray:
    """(n_sites,) bool: sites within ``hops`` first-neighbour hops of ``mask`` on the lattice
    (padded table, cleanup.first_shell_table)."""
    for _ in range(hops):
        mask = mask | np.append(mask, False)[table].any(axis=1)
    return mask


def region_around(structure: Structure, seeds: np.ndarray, occupancy: np.ndarray,
                  local: LocalRelax) -> tuple[np.ndarray, np.ndarray]:
    """(region, shell), each (n_sites,) bool: the design atoms of ``occupancy`` within
    ``local.hops`` hops of a ``seeds`` site ((n_sites,) bool), and the other atoms within
    ``local.shell_hops`` hops of the region."""
    table = first_shell_table(structure.lattice.cells, structure.periodic)
    region = grow(table, seeds, local.hops) & occupancy & (structure.kind == DESIGN)
    shell = grow(table, region, local.shell_hops) & occupancy & ~region
    return region, shell


def changed_region(structure: Structure, previous: np.ndarray, occupancy: np.ndarray,
                   local: LocalRelax) -> tuple[np.ndarray, np.ndarray]:
    """``region_around`` the sites whose occupancy differs from ``previous``."""
    return region_around(structure, previous != occupancy, occupancy, local)


def relax_region(engine: Engine, structure: Structure, occupancy: np.ndarray, warm: WarmStart,
                 seeds: np.ndarray, local: LocalRelax, what: str) -> tuple[WarmStart, RelaxResult | None]:
    """``warm`` with the region around ``seeds`` relaxed at u = 0 (shell fixed where ``warm`` puts
    it), and that relaxation's result; None when the region is empty or, with an info line naming
    ``what`` it is around, holds with its shell more than ``local.max_share`` of the atoms."""
    region, shell = region_around(structure, seeds, occupancy, local)
    if not region.any():
        return warm, None
    share = np.count_nonzero(region | shell) / np.count_nonzero(occupancy)
    if share > local.max_share:
        # a part this large costs about what it saves in the whole design (10^4 sites: 35-45 %)
        log.info("no local relaxation: the region around %s and its shell hold %.0f %% of the atoms "
                 "(minimizer.local_max_share %.0f %%)", what, 100 * share, 100 * local.max_share)
        return warm, None
    kind = structure.kind.copy()
    kind[shell & (kind == DESIGN)] = CLAMP  # held where the warm start put them, as clamp atoms are
    part = dataclasses.replace(structure, kind=kind)
    result = engine.relax(part, region | shell, [0.0], warm, plain=True)[0]
    positions = warm.positions_a.copy()
    positions[region] = result.positions_a[region]
    return dataclasses.replace(warm, positions_a=positions), result


def relax_changes(engine: Engine, structure: Structure, occupancy: np.ndarray, warm: WarmStart,
                  local: LocalRelax) -> tuple[WarmStart, RelaxResult | None]:
    """``warm`` with the region around the changes since ``warm.previous_occupancy`` relaxed at
    u = 0 (shell fixed), and that relaxation's result (None when nothing changed)."""
    if warm.previous_occupancy is None:
        return warm, None
    return relax_region(engine, structure, occupancy, warm, warm.previous_occupancy != occupancy, local,
                        "the changed sites")


@dataclass(frozen=True)
class TailPolish:
    """``ftol_ev_per_a``: the loose tolerance (the config's force norm) the whole design reaches
    first; ``local``: the region around the moved atoms (hops), its fixed shell and share limit."""

    ftol_ev_per_a: float
    local: LocalRelax


def polish_tail(engine: Engine, structure: Structure, occupancy: np.ndarray, warm: WarmStart | None,
                polish: TailPolish) -> tuple[WarmStart, tuple[RelaxResult, ...]]:
    """The u = 0 start with its tail polished: the whole design relaxed to ``polish.ftol_ev_per_a``,
    then the atoms with a first-neighbour bond changed by more than MOVED_A from the lattice and the
    region around them relaxed in a sub-system to the full tolerance (``relax_region``). Returns the start for the full
    relaxation of u = 0 (the previous response of ``warm`` kept) and the results in order: the
    loose whole design, then the part when there was one.

    The loose stage keeps no progress inside it (no in-flight store): a stop there loses it, and
    a resumed iteration does it again the same way."""
    loose = engine.relax(structure, occupancy, [0.0], warm, ftol_ev_per_a=polish.ftol_ev_per_a)[0]
    start = WarmStart(loose.positions_a) if warm is None else dataclasses.replace(warm, positions_a=loose.positions_a)
    moved = rearranged_sites(structure, occupancy, loose.positions_a, structure.positions_a, MOVED_A)
    start, part = relax_region(engine, structure, occupancy, start, moved, polish.local,
                               f"the {np.count_nonzero(moved)} atoms with a bond changed by more than "
                               f"{MOVED_A:g} Å")
    return start, (loose,) if part is None else (loose, part)
