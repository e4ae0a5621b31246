"""``nanoto`` command line: info, evaluate, run; campaign and dataset (cli_campaign); train, sample, verify (cli_ml).

Exit codes: 0 ok, 2 bad input, 3 engine failure. Errors are one line on stderr.
Under ``mpiexec -n R`` only rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import NanotoError


def _rank() -> int:
    """MPI rank, read from the launcher's environment so mpi4py need not be imported yet."""
    if "mpi4py" in sys.modules:
        from mpi4py import MPI

        return int(MPI.COMM_WORLD.Get_rank())
    from .lammps_runtime import launcher_rank

    return launcher_rank() or 0


def _say(text: str, stream: Any = None) -> None:
    if _rank() == 0:
        print(text, file=stream or sys.stdout, flush=True)


def _setup_logging(quiet: bool, level: int = 20) -> None:
    """Progress lines on stderr from rank 0; ``--quiet`` keeps only errors."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nanoto: %(message)s"))
    if _rank() != 0:  # rank 0 speaks for all ranks
        handler.setLevel(logging.CRITICAL + 1)
    else:
        handler.setLevel(logging.WARNING if quiet else level)
    logger = logging.getLogger("nanoto")
    logger.handlers[:] = [handler]
    logger.setLevel(min(level, logging.INFO))  # file handlers (run.log) want INFO
    logger.propagate = False


def cmd_info(args: argparse.Namespace) -> int:
    from .info import collect_info, format_info

    info = collect_info()
    _say(json.dumps(info, indent=1) if args.json else format_info(info))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import logging
    import time

    from .config import load_config
    from .design import initial_occupancy
    from .evaluate import evaluate, open_problem, summary

    log = logging.getLogger("nanoto")

    overrides = list(args.set or [])
    if args.engine:
        overrides.append(f"engine.name={args.engine}")
    config = load_config(args.config, overrides)
    _setup_logging(args.quiet, logging.DEBUG)  # one line per relaxed state
    t0 = time.perf_counter()
    problem = open_problem(config)
    try:
        occupancy = initial_occupancy(config.design, problem.structure, config.base_dir)
        log.info(f"evaluate {config.name}: {config.domain.load_case}, {int(occupancy.sum())} atoms, "
                 f"a0 = {problem.a0_a:.6f} Å, δ = {problem.delta_a():.4g} Å, engine {problem.engine.name}")
        result = evaluate(problem, occupancy)
        ranks = getattr(problem.engine, "ranks", 1)
        record = summary(problem, occupancy, result, time.perf_counter() - t0, ranks)
    finally:
        problem.engine.close()
    if args.json:
        _say(json.dumps(record))
    else:
        _say(format_summary(record))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .rundir import run_in_dir

    config = load_config(args.config, list(args.set or []))
    _setup_logging(args.quiet)
    summary = run_in_dir(config, args.output, resume=args.resume)
    if _rank() == 0:
        out = args.output
        state = "converged" if summary["converged"] else summary["status"]
        print(f"{config.name}: {state} after {summary['iterations']} iterations, K_sym = "
              f"{summary['k_sym_ev_per_a2']:.6g} eV/Å² at volume fraction {summary['volume_fraction']:.4f} "
              f"({summary['k_sym_ev_per_a2'] / summary['k_sym_initial_ev_per_a2']:.3f} of the full domain), "
              f"{summary['wall_s']:.0f} s", flush=True)
        print(f"plots: {out}/convergence.png {out}/design.png", flush=True)
        print(f"files: {out}/run.h5 {out}/summary.json {out}/final.data {out}/final.extxyz", flush=True)
    return 0


def format_summary(r: dict[str, Any]) -> str:
    lines = [
        f"{r['name']} ({r['load_case']}, engine {r['engine']}, {r['mpi_ranks']} MPI rank(s))",
        f"  atoms              {r['n_atoms']} of {r['n_sites']} sites",
        f"  delta              {r['delta_a']:.6g} Å",
        f"  K_sym              {r['k_sym_ev_per_a2']:.8g} eV/Å²   (objective)",
        f"  K_fwd              {r['k_fwd_ev_per_a2']:.8g} eV/Å²   (one-sided, biased by R0)",
        f"  K_force            {r['k_force_ev_per_a2']:.8g} eV/Å²   (reaction force check)",
        f"  sum alpha          {r['sum_alpha_ev_per_a2']:.8g} eV/Å²",
        f"  residual force R0  {r['residual_force_ev_per_a']:.6g} eV/Å",
    ]
    if "c11_gpa" in r:
        lines.append(f"  C11                {r['c11_gpa']:.6g} GPa")
    lines.append(f"  force evaluations  {r['force_evaluations']}   wall {r['wall_s']:.2f} s")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanoto", description="Nano-topology optimization with LAMMPS")
    parser.add_argument("--version", action="version", version=f"nanoto {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, engines, MPI and potentials found")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("evaluate", help="K_sym, K_fwd, K_force and per-atom α of one design")
    p.add_argument("config", help="run config YAML (see workflows/examples/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set load.strain=5e-4 (repeatable)")
    p.add_argument("--engine", help="engine name: lammps, lammps-exe or harmonic")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("run", help="optimize a design (BESO on lattice sites) into a run folder")
    p.add_argument("config", help="run config YAML (see workflows/examples/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("-o", "--output", required=True, help="run folder (run.h5, summary.json, plots)")
    p.add_argument("--resume", action="store_true", help="continue the run in the folder from its last iteration")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_run)
    from . import cli_campaign, cli_ml

    cli_campaign.add_commands(sub)
    cli_ml.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("campaign", "dataset", "train", "sample", "verify"):
        _setup_logging(quiet=False)
    try:
        return int(args.func(args))
    except NanotoError as err:
        _say(f"nanoto: error: {err}", sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        _say("nanoto: interrupted", sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
