"""A campaign: a folder holding one design folder per sweep point (a signac data space).

    CAMPAIGN/campaign.json            the plan: sweep, base folder, engine, designs in index order
    CAMPAIGN/signac.rc, .signac/      the signac project (job id = md5 of the canonical config)
    CAMPAIGN/workspace/<id>/          one design: signac_statepoint.json (its canonical config),
                                      task.json (task state), task.log, and the run folder files
                                      of ``nanoto run`` (run.h5, summary.json, plots, ...)
    CAMPAIGN/slurm/                   rendered sbatch scripts, submissions.json, job output

A design is identified by its canonical config (``config.canonical_json``); signac
hashes it into the folder name, so planning the same sweep twice finds the same
folders. ``summary.json`` is a design's product: it exists only for a finished run.
signac is imported here only, so ``import nanoto_driver`` stays light.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .config import RunConfig, build_config, canonical_json
from .errors import InputError
from .sweep import Design, SweepConfig, expand

FORMAT = "nanoto-campaign"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CampaignDesign:
    """A planned design: index in the campaign, signac id, folder, axis values."""

    index: int
    id: str
    path: Path
    point: dict[str, Any]

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def run_path(self) -> Path:
        return self.path / "run.h5"

    @property
    def task_path(self) -> Path:
        return self.path / "task.json"

    @property
    def done(self) -> bool:
        return self.summary_path.is_file()

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.point.items()) or "base"


class Campaign:
    """An opened campaign folder (read the plan once; design configs on demand)."""

    def __init__(self, root: Path, plan: dict[str, Any]) -> None:
        self.root = root
        self.plan = plan
        self.name: str = plan["name"]
        self.designs = [
            CampaignDesign(d["index"], d["id"], root / "workspace" / d["id"], d["point"]) for d in plan["designs"]
        ]

    def __len__(self) -> int:
        return len(self.designs)

    def design(self, index: int) -> CampaignDesign:
        if not 0 <= index < len(self.designs):
            raise InputError(f"{self.root}: no design {index} (the campaign has indices 0-{len(self.designs) - 1})")
        return self.designs[index]

    def config(self, index: int) -> RunConfig:
        """The full run config of a design (statepoint + the plan's base folder and engine)."""
        design = self.design(index)
        statepoint = json.loads((design.path / "signac_statepoint.json").read_text())
        tree = {**statepoint, "base_dir": self.plan["base_dir"], "engine": self.plan["engine"]}
        return build_config(tree, f"{self.root} design {index}")

    @property
    def slurm_dir(self) -> Path:
        return self.root / "slurm"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (``.partial`` then rename): a file that exists is complete."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(partial, path)


def _plan_record(sweep: SweepConfig, sweep_path: Path, designs: list[Design], ids: list[str]) -> dict[str, Any]:
    engine = designs[0].config.engine.model_dump(mode="json") if designs else {}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": sweep.name,
        "sweep_file": str(sweep_path.resolve()), "sweep": sweep.model_dump(mode="json"),
        "base_dir": sweep.base_dir, "engine": engine, "nanoto_version": __version__, "created_utc": _now(),
        "designs": [{"index": d.index, "id": i, "point": d.point} for d, i in zip(designs, ids, strict=True)],
    }


def plan(sweep: SweepConfig, sweep_path: Path, root: Path) -> Campaign:
    """Create (or find, unchanged) the campaign folder of ``sweep``: one signac job per design."""
    import signac

    designs = expand(sweep)
    if not designs:
        raise InputError(f"sweep {sweep.name} has no designs")
    plan_file = root / "campaign.json"
    existing = json.loads(plan_file.read_text()) if plan_file.is_file() else None
    if root.exists() and existing is None and any(root.iterdir()):
        raise InputError(f"{root} exists and is not a campaign folder; choose another -o")
    project = signac.init_project(str(root))
    ids = []
    for design in designs:
        job = project.open_job(json.loads(canonical_json(design.config)))
        job.init()
        ids.append(job.id)
    record = _plan_record(sweep, sweep_path, designs, ids)
    if existing is not None:
        if [d["id"] for d in existing["designs"]] != ids:
            raise InputError(f"{root} holds a plan of another sweep (its designs differ); plan into a new folder")
        return Campaign(root, existing)
    write_json(plan_file, record)
    return Campaign(root, record)


def open_campaign(root: str | Path) -> Campaign:
    """Open a planned campaign folder; a clear error if it is not one."""
    root = Path(root)
    plan_file = root / "campaign.json"
    if not plan_file.is_file():
        raise InputError(f"{root} is not a campaign (no campaign.json); create it with `nanoto campaign plan`")
    try:
        record = json.loads(plan_file.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{plan_file} is corrupt ({err}); plan the sweep again into a new folder") from None
    if record.get("format") != FORMAT or record.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{plan_file}: not a {FORMAT} v{FORMAT_VERSION} plan")
    return Campaign(root, record)
