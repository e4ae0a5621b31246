"""``nanoto campaign ...`` and ``nanoto dataset ...``: sweeps fanned out locally or on Slurm.

    nanoto campaign plan SWEEP -o CAMPAIGN
    nanoto campaign run CAMPAIGN --executor local [--workers N] [--ranks R]
    nanoto campaign submit CAMPAIGN --profile PROFILE.yaml [--throttle M] [--dry-run]
    nanoto campaign task CAMPAIGN INDEX          (one array element; idempotent)
    nanoto campaign status CAMPAIGN [--json]
    nanoto campaign resubmit CAMPAIGN --profile PROFILE.yaml   (failed and missing only)
    nanoto campaign export CAMPAIGN --fireworks wf.yaml [--ranks R]   (FireWorks; workflows extra)
    nanoto dataset build CAMPAIGN -o dataset.h5
    nanoto dataset summary dataset.h5
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import InputError

log = logging.getLogger("nanoto")


def cmd_plan(args: argparse.Namespace) -> int:
    from .campaign import plan
    from .potential import resolve_path
    from .sweep import load_sweep

    sweep = load_sweep(args.sweep)
    campaign = plan(sweep, Path(args.sweep), Path(args.output))
    unresolved = []
    for d in campaign.designs:
        config = campaign.config(d.index)
        try:
            resolve_path(config.potential.file, config.base_dir)
        except Exception:  # reported, not fatal: the task fails with the full message
            unresolved.append(f"{d.index} ({config.potential.file})")
    if unresolved:
        log.warning("potential file not found for designs %s: those tasks will fail", ", ".join(unresolved[:10]))
    print(f"campaign {campaign.name}: {len(campaign)} designs planned in {campaign.root}")
    print(f"next: nanoto campaign run {campaign.root} --executor local --workers 2   "
          f"(or: nanoto campaign submit {campaign.root} --profile PROFILE.yaml)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .campaign import open_campaign
    from .executor_local import run_local

    if args.executor != "local":
        print("nanoto: for Slurm use `nanoto campaign submit CAMPAIGN --profile PROFILE.yaml`", file=sys.stderr)
        return 2
    campaign = open_campaign(args.campaign)
    indices = args.index or None
    if args.skip_in:
        from .dataset import read_table

        have = set(read_table(args.skip_in)["design_id"])
        wanted = indices if indices is not None else range(len(campaign))
        indices = [i for i in wanted if campaign.design(i).id not in have]
        log.info("campaign %s: %d designs are in %s already", campaign.name, len(wanted) - len(indices),
                 args.skip_in)
    report = run_local(campaign, args.workers, args.ranks, indices=indices, share_descent=not args.independent)
    print(f"campaign {campaign.name}: {len(report.done)} done, {len(report.failed)} failed, "
          f"{report.skipped_done} were done already ({report.wall_s:.1f} s)")
    if report.failed:
        print(f"failed: {report.failed[:20]}; see `nanoto campaign status {campaign.root}`")
    return 1 if report.failed else 0


def cmd_task(args: argparse.Namespace) -> int:
    from .campaign import open_campaign
    from .task import run_task

    return run_task(open_campaign(args.campaign), args.index, share_descent=not args.independent)


def cmd_status(args: argparse.Namespace) -> int:
    from .campaign import open_campaign
    from .campaign_status import campaign_status, format_status, status_json

    campaign = open_campaign(args.campaign)
    statuses = campaign_status(campaign)
    print(json.dumps(status_json(campaign, statuses)) if args.json else format_status(campaign, statuses))
    return 0


def _submit(args: argparse.Namespace, indices: list[int]) -> int:
    from .campaign import open_campaign
    from .executor_slurm import load_profile, submit

    campaign = open_campaign(args.campaign)
    profile = load_profile(args.profile)
    if not indices:
        print(f"campaign {campaign.name}: nothing to submit")
        return 0
    results = submit(campaign, profile, Path(args.profile).name, indices, args.throttle, args.dry_run)
    for script, job in results:
        if args.dry_run:
            print(f"# ---- {script.path} (sbatch --parsable {script.path.name}) ----\n{script.text}")
        else:
            print(f"{script.kind} {script.path.name}: job {job}" + (f" ({len(script.indices)} designs)"
                                                                     if script.indices else ""))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from .campaign import open_campaign
    from .campaign_status import campaign_status

    statuses = campaign_status(open_campaign(args.campaign))
    indices = args.index or [s.index for s in statuses if s.state not in ("done", "running")]
    return _submit(args, indices)


def cmd_resubmit(args: argparse.Namespace) -> int:
    from .campaign import open_campaign
    from .campaign_status import campaign_status

    statuses = campaign_status(open_campaign(args.campaign))
    return _submit(args, [s.index for s in statuses if s.state in ("failed", "missing")])


def cmd_export(args: argparse.Namespace) -> int:
    try:
        from .fireworks_export import export_fireworks
    except ImportError as err:
        raise InputError(f"FireWorks is not installed ({err}): pip install 'nanoto[workflows]'") from None
    workflow = export_fireworks(args.campaign, args.fireworks, args.ranks)
    print(f"wrote {args.fireworks}: {len(workflow.fws) - 1} design Fireworks and the dataset collector; "
          f"next: lpad add {args.fireworks} && rlaunch rapidfire")
    return 0


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from .dataset import build_dataset

    report = build_dataset(args.campaign, args.output, previous=args.previous)
    print(f"{report.path}: {report.n_written} designs, {len(report.skipped)} skipped")
    for item in report.skipped[:20]:
        print(f"  skipped {item}")
    return 0


def cmd_dataset_summary(args: argparse.Namespace) -> int:
    from .dataset import summary_text

    print(summary_text(args.dataset))
    return 0


def _add_independent(p: argparse.ArgumentParser) -> None:
    p.add_argument("--independent", action="store_true",
                   help="run every design from its own start (default: a design seeds the ones of higher "
                        "target volume fraction with the descent they share; same results, fewer iterations)")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``campaign`` and ``dataset`` on the main parser's subcommands."""
    campaign = sub.add_parser("campaign", help="sweeps of designs: plan, run locally, submit to Slurm, status")
    csub = campaign.add_subparsers(dest="campaign_command", required=True)

    p = csub.add_parser("plan", help="expand a sweep YAML into a campaign folder (one folder per design)")
    p.add_argument("sweep", help="sweep YAML (see workflows/sweeps/)")
    p.add_argument("-o", "--output", required=True, help="campaign folder")
    p.set_defaults(func=cmd_plan)

    p = csub.add_parser("run", help="run every design not done yet on this machine")
    p.add_argument("campaign")
    p.add_argument("--executor", default="local", choices=["local"], help="local (Slurm: use submit)")
    p.add_argument("--workers", type=int, default=1, help="designs at a time (default 1)")
    p.add_argument("--ranks", type=int, default=1, help="MPI ranks per design (default 1)")
    p.add_argument("--index", type=int, action="append", help="only this design index (repeatable)")
    p.add_argument("--skip-in", metavar="DATASET.h5",
                   help="skip the designs this dataset already holds (a campaign carried on in pieces)")
    _add_independent(p)
    p.set_defaults(func=cmd_run)

    for name, func, text in (("submit", cmd_submit, "submit the designs not done as Slurm job arrays"),
                             ("resubmit", cmd_resubmit, "submit only the failed and missing designs again")):
        p = csub.add_parser(name, help=text)
        p.add_argument("campaign")
        p.add_argument("--profile", required=True, help="site profile YAML (workflows/slurm/profiles/)")
        p.add_argument("--throttle", type=int, help="at most M array elements running at once (%%M)")
        p.add_argument("--dry-run", action="store_true", help="print the sbatch scripts, submit nothing")
        if name == "submit":
            p.add_argument("--index", type=int, action="append", help="only this design index (repeatable)")
        p.set_defaults(func=func)

    p = csub.add_parser("task", help="run one design (what one array element runs; idempotent)")
    p.add_argument("campaign")
    p.add_argument("index", type=int)
    _add_independent(p)
    p.set_defaults(func=cmd_task)

    p = csub.add_parser("status", help="done / pending / running / failed / missing per design")
    p.add_argument("campaign")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = csub.add_parser("export", help="write the campaign as a FireWorks workflow (lpad add accepts it)")
    p.add_argument("campaign")
    p.add_argument("--fireworks", required=True, metavar="WF.yaml", help="workflow file to write (.yaml or .json)")
    p.add_argument("--ranks", type=int, default=1, help="MPI ranks per design (mpiexec -n R; default 1)")
    p.set_defaults(func=cmd_export)

    dataset = sub.add_parser("dataset", help="collect a campaign's designs into one HDF5 dataset")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True)
    p = dsub.add_parser("build", help="build dataset.h5 from the finished designs of a campaign")
    p.add_argument("campaign")
    p.add_argument("-o", "--output", required=True, help="dataset file (.h5)")
    p.add_argument("--previous", metavar="OLD.h5",
                   help="earlier dataset of this campaign: designs not finished here are taken from it")
    p.set_defaults(func=cmd_dataset_build)
    p = dsub.add_parser("summary", help="print a table of a dataset")
    p.add_argument("dataset")
    p.set_defaults(func=cmd_dataset_summary)
