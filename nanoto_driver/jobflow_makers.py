"""jobflow Makers (atomate2 style) for Nano-TO: one design, or a sweep plus its dataset.

Optional: needs the ``workflows`` extra (``pip install 'nanoto[workflows]'``); nothing
else in nanoto imports this module.

    from jobflow import run_locally
    from nanoto_driver.jobflow_makers import NanotoDesignMaker, NanotoSweepMaker

    job = NanotoDesignMaker(config={"domain": {"cells": [8, 4, 1]}}).make()
    flow = NanotoSweepMaker(ranks=2).make("workflows/sweeps/smoke.yaml", "runs/smoke")
    run_locally(flow, create_folders=True)

Each job runs its design in a child process (``[mpiexec -n R] python -m nanoto_driver
...``), so LAMMPS and MPI never live inside the jobflow worker, and returns a
``DesignDocument`` (summary, run file path and sha256, provenance). Jobs resume: a
design already finished in its folder is read back, not run again. The sweep flow is the
campaign layer driven by jobflow: ``make`` plans the campaign folder (idempotent), each
job is ``nanoto campaign task CAMPAIGN INDEX``, the collector builds the dataset from
whatever finished (it runs even when designs failed, like Slurm's afterany).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jobflow import Flow, Job, JobConfig, Maker, OnMissing, job

from .config import build_config
from .design_document import DesignDocument, design_document, file_sha256
from .errors import InputError

RUN_LOG = "nanoto_job.log"


def _run_command(config_file: Path, run_dir: Path, ranks: int, mpiexec: str) -> list[str]:
    from .executor_local import find_mpiexec

    cmd = [sys.executable, "-m", "nanoto_driver", "run", str(config_file), "-o", str(run_dir), "--resume", "--quiet"]
    return [find_mpiexec(mpiexec), "-n", str(ranks), *cmd] if ranks > 1 else cmd


@job(output_schema=DesignDocument)
def run_design(config: dict[str, Any], run_dir: str | None = None, ranks: int = 1,
               mpiexec: str = "mpiexec") -> DesignDocument:
    """Optimize one design in ``run_dir`` (default: the job's working folder); resume if begun."""
    folder = Path(run_dir).resolve() if run_dir else Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    tree = dict(config)
    base_dir = tree.pop("base_dir", ".")
    config_file = folder / "config.yaml"
    config_file.write_text(yaml.safe_dump(tree, sort_keys=False))
    # base_dir after the file's own folder: relative potential paths keep meaning what the maker meant
    cmd = [*_run_command(config_file, folder, ranks, mpiexec), "--set", f"base_dir={base_dir}"]
    with open(folder / RUN_LOG, "ab") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        lines = (folder / RUN_LOG).read_text(errors="replace").strip().splitlines()
        raise RuntimeError(f"nanoto run failed with exit code {code} in {folder}: {lines[-1] if lines else ''}")
    return design_document(folder)


@dataclass
class NanotoDesignMaker(Maker):
    """One Nano-TO design. ``config`` is a run config tree (the YAML's sections; defaults fill the rest).

    Fields: ``config``; ``ranks`` MPI ranks (``mpiexec -n ranks``); ``mpiexec`` its name or path.
    ``make(run_dir=None)``: the folder the run writes (default: the job's working folder).
    """

    name: str = "nanoto design"
    config: dict[str, Any] = field(default_factory=dict)
    ranks: int = 1
    mpiexec: str = "mpiexec"

    def make(self, run_dir: str | None = None) -> Job:
        config = build_config({"base_dir": ".", **self.config}, f"{self.name} config")  # bad keys fail here
        tree = config.model_dump(mode="json")
        tree["base_dir"] = str(Path(tree["base_dir"]).resolve())
        made = run_design(tree, run_dir, self.ranks, self.mpiexec)
        made.name = self.name
        return made


@job(output_schema=DesignDocument)
def run_campaign_design(campaign: str, index: int, ranks: int = 1) -> DesignDocument:
    """``nanoto campaign task CAMPAIGN INDEX`` in a child process; the design's document."""
    from .campaign import open_campaign
    from .executor_local import run_one

    opened = open_campaign(campaign)
    run_one(opened, index, ranks)
    return design_document(opened.design(index).path)


@job
def build_campaign_dataset(campaign: str, output: str, designs: list[Any] | None = None) -> dict[str, Any]:
    """Build the dataset of every finished design (``designs`` only orders this job after them)."""
    from .dataset import build_dataset

    report = build_dataset(campaign, output)
    return {"path": str(Path(output).resolve()), "sha256": file_sha256(Path(output)),
            "n_planned": report.n_planned, "n_written": report.n_written,
            "skipped": [dataclasses.asdict(s) for s in report.skipped]}


@dataclass
class NanotoSweepMaker(Maker):
    """A sweep as a jobflow Flow: one job per design plus a collector that builds the dataset."""

    name: str = "nanoto sweep"
    ranks: int = 1

    def make(self, sweep: str | Path, campaign: str | Path, dataset: str | Path | None = None) -> Flow:
        """Plan ``campaign`` from the ``sweep`` YAML (idempotent) and return its flow.

        ``dataset`` defaults to CAMPAIGN/dataset.h5. The flow's output is the collector's report.
        """
        from .campaign import plan
        from .sweep import load_sweep

        sweep = Path(sweep)
        if not sweep.is_file():
            raise InputError(f"sweep file not found: {sweep}")
        planned = plan(load_sweep(sweep), sweep, Path(campaign))
        root = str(planned.root.resolve())
        jobs = []
        for d in planned.designs:
            one = run_campaign_design(root, d.index, self.ranks)
            one.name = f"nanoto {planned.name} {d.index}"
            jobs.append(one)
        out = str(Path(dataset).resolve()) if dataset else str(Path(root) / "dataset.h5")
        collect = build_campaign_dataset(root, out, [j.output for j in jobs])
        collect.name = f"nanoto {planned.name} dataset"
        # afterany: a failed design leaves None in ``designs`` instead of blocking the collector
        collect.config = JobConfig(on_missing_references=OnMissing.NONE)
        return Flow([*jobs, collect], output=collect.output, name=f"{self.name} {planned.name}")
