"""Text LAMMPS reads and writes for nanoto: input scripts, data files, logs.

Shared by both LAMMPS engines so that they run the very same commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
import numpy as np

from .potential import Potential
from .structure import Structure

N_TYPES = 4  # 1 design, 2 clamp, 3 load, 4 empty site
EMPTY_TYPE = 4


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    from nanoto_lammps_inputs import TEMPLATE_DIR

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **values: object) -> str:
    """Render ``lammps_inputs/<template>`` with strict undefined variables."""
    return _environment().get_template(template).render(**values)


def _fmt(x: float) -> str:
    return repr(float(x))


#: LAMMPS' own min_modify dmax (Å): rendered only when another value is asked for, so that the
#: inputs of every run made before minimizer.dmax_a existed stay as they were
LAMMPS_DMAX_A = 0.1


@dataclass(frozen=True)
class ScriptSettings:
    """Engine-independent knobs of the rendered input."""

    min_style: str = "cg"
    ftol_ev_per_a: float = 1.0e-8
    maxiter: int = 100000
    maxeval: int = 1000000
    accelerator: str = "none"
    accept_fmax_ev_per_a: float = 1.0e-4
    norm: str = "two"  # min_modify norm: the force norm ftol bounds
    empty_sites: str = "delete"  # "delete": no atom at an empty site; "type": a type-4 atom that interacts with nothing
    dmax_a: float = LAMMPS_DMAX_A  # min_modify dmax: largest move of an atom in a line search's first trial step


def setup_script(structure: Structure, potential: Potential, settings: ScriptSettings,
                 data_file: str | None = None) -> str:
    """The set-up block: box (from ``data_file`` or an empty box), potential, groups, fixes."""
    lo, hi = structure.lattice.box_a()
    axis = "xyz"[structure.load_axis]
    others = [c for c in "xyz" if c != axis]
    return render(
        "setup.lmp.j2",
        boundary=structure.boundary(),
        accelerator=settings.accelerator,
        data_file=data_file,
        box_lo=[_fmt(v) for v in lo],
        box_hi=[_fmt(v) for v in hi],
        pair_style=potential.pair_style,
        pair_coeff=potential.pair_coeff(N_TYPES),
        n_types=N_TYPES,
        load_mode=structure.load_mode,
        direction=[_fmt(v) for v in structure.load_direction],
        axis=axis,
        area_expr=f"l{others[0]}*l{others[1]}",
        min_style=settings.min_style,
        norm=settings.norm,
        dmax=_fmt(settings.dmax_a) if settings.dmax_a != LAMMPS_DMAX_A else None,
        empty_sites=settings.empty_sites,
    )


def state_script(structure: Structure, settings: ScriptSettings, label: str, u_a: float,
                 dump_file: str | None = None, restore_label: str | None = None,
                 extrapolate: tuple[str, float] | None = None, start_displaced: bool = False,
                 from_response: bool = False) -> str:
    """One prescribed state: reset the box, restore the relaxed positions of state
    ``restore_label`` (from its dump), apply u, minimize, report, dump.

    ``extrapolate = (label, ratio)`` starts instead from x0 + ratio (x_label - x0), the
    linear response of an earlier state scaled to this u; ``from_response`` starts from
    x0 + u * v, the previous design's response stored as per-atom velocities;
    ``start_displaced`` says the positions already carry the prescribed displacement
    (set from Python).
    """
    return render(
        "state.lmp.j2",
        box_reset=box_reset_command(structure),
        label=label,
        u=_fmt(u_a),
        load_mode=structure.load_mode,
        move=[_fmt(u_a * d) for d in structure.load_direction],
        axis="xyz"[structure.load_axis],
        ftol=_fmt(settings.ftol_ev_per_a),
        maxiter=settings.maxiter,
        maxeval=settings.maxeval,
        dump_file=dump_file,
        restore_file=f"state_{restore_label}.dump" if restore_label else None,
        restore_label=restore_label,
        extrapolate_from=extrapolate[0] if extrapolate else None,
        ratio=_fmt(extrapolate[1]) if extrapolate else None,
        from_response=from_response,
        start_displaced=start_displaced or extrapolate is not None or from_response,
    )


def split_at_minimize(script: str) -> tuple[str, str]:
    """A state script cut around its ``minimize`` command: (before, after), the command left out,
    for an engine that minimizes in cycles itself."""
    lines = script.splitlines()
    at = [n for n, line in enumerate(lines) if line.startswith("minimize ")]
    if len(at) != 1:
        raise ValueError(f"a state script has one minimize command, this one {len(at)}")
    return "\n".join(lines[: at[0]]) + "\n", "\n".join(lines[at[0] + 1:]) + "\n"


def box_reset_command(structure: Structure) -> str | None:
    """Command that puts a box-loaded structure back into its reference box (None otherwise)."""
    if structure.load_mode != "box":
        return None
    lo, hi = structure.lattice.box_a()
    a = structure.load_axis
    return f"change_box      all {'xyz'[a]} final {_fmt(lo[a])} {_fmt(hi[a])} remap units box"


def atom_types(structure: Structure, occupancy: np.ndarray) -> np.ndarray:
    """(n_sites,) LAMMPS type per site: kind + 1, or EMPTY_TYPE where no atom sits."""
    return np.where(occupancy, structure.kind.astype(np.int64) + 1, EMPTY_TYPE)


def write_data_file(path: Path, structure: Structure, occupancy: np.ndarray,
                    positions_a: np.ndarray, title: str = "nanoto design", include_empty: bool = True,
                    velocities: np.ndarray | None = None) -> None:
    """Write every site as an atom (id = site + 1); empty sites get type 4 (or are left out).

    Positions are written with 17 significant digits, so they read back bit for bit.
    ``velocities`` (n_sites, 3), if given, fill the Velocities section: nanoto stores the
    previous design's response to the load there (minimization ignores velocities).
    """
    lo, hi = structure.lattice.box_a()
    types = atom_types(structure, occupancy)
    sites = np.arange(structure.n_sites) if include_empty else np.flatnonzero(occupancy)
    lines = [f"# {title}: types 1 design, 2 clamp, 3 load, 4 empty site", "",
             f"{sites.size} atoms", f"{N_TYPES} atom types", ""]
    lines += [f"{_fmt(lo[a])} {_fmt(hi[a])} {c}lo {c}hi" for a, c in enumerate("xyz")]
    lines += ["", "Atoms # atomic", ""]
    body = "\n".join(
        f"{s + 1} {types[s]} {_fmt(x)} {_fmt(y)} {_fmt(z)}"
        for s, (x, y, z) in zip(sites, positions_a[sites], strict=True)
    )
    text = "\n".join(lines) + "\n" + body + "\n"
    if velocities is not None:
        text += "\nVelocities\n\n" + "\n".join(
            f"{s + 1} {_fmt(vx)} {_fmt(vy)} {_fmt(vz)}"
            for s, (vx, vy, vz) in zip(sites, velocities[sites], strict=True)) + "\n"
    path.write_text(text)


@dataclass(frozen=True)
class MinStats:
    """What a LAMMPS log says about one minimization."""

    stop_reason: str
    iterations: int
    force_evaluations: int
    loop_s: float = float("nan")  # LAMMPS' "Loop time" of the minimization (s): time inside LAMMPS


@dataclass(frozen=True)
class StateReport:
    """The NANOTO_RESULT line of one state plus its minimization stats."""

    label: str
    u_a: float
    pe_ev: float
    fnorm_ev_per_a: float
    fmax_ev_per_a: float
    reaction_ev_per_a: float
    natoms: int
    stats: MinStats


_STATS = re.compile(
    r"Stopping criterion = (?P<reason>[^\n]+?)\s*\n.*?"
    r"Iterations, force evaluations = (?P<it>\d+) (?P<ev>\d+)",
    re.S,
)
_LOOP = re.compile(r"Loop time of (?P<s>\S+) on [^\n]*\n(?:(?!Loop time).)*?Stopping criterion", re.S)
_RESULT = re.compile(r"^NANOTO_RESULT (.*)$", re.M)


def parse_log(text: str) -> list[StateReport]:
    """Pair the minimization blocks of a LAMMPS log with the NANOTO_RESULT line after them.

    A state relaxed in cycles (``minimizer.coarse_every``) has several minimizations before
    its result line: their iterations, force evaluations and loop times are summed and the
    last one's stopping criterion is the state's.
    """
    loops = {m.end(): float(m["s"]) for m in _LOOP.finditer(text)}  # keyed where "Stopping criterion" ends
    blocks = [(m.start(), MinStats(m["reason"], int(m["it"]), int(m["ev"]),
                                   loops.get(m.start() + len("Stopping criterion"), float("nan"))))
              for m in _STATS.finditer(text)]
    reports, first = [], 0
    for m in _RESULT.finditer(text):
        mine = [b for at, b in blocks[first:] if at < m.start()]
        first += len(mine)
        if not mine:
            raise ValueError("log has a result line without a minimization before it")
        r = dict(kv.split("=", 1) for kv in m.group(1).split())
        stats = MinStats(mine[-1].stop_reason, sum(b.iterations for b in mine),
                         sum(b.force_evaluations for b in mine), sum(b.loop_s for b in mine))
        reports.append(StateReport(r["label"], float(r["u"]), float(r["pe"]), float(r["fnorm"]), float(r["fmax"]),
                                   float(r["reaction"]), int(float(r["natoms"])), stats))
    if first != len(blocks):
        raise ValueError(f"log has {len(blocks)} minimizations but only {first} before a result line")
    return reports
