"""A campaign as a FireWorks Workflow: one Firework per design plus the dataset collector.

Optional: needs the ``workflows`` extra; nothing else in nanoto imports this module.

    nanoto campaign export runs/smoke --fireworks wf.yaml [--ranks 2]
    lpad add wf.yaml
    rlaunch rapidfire            # or qlaunch: each Firework is one design

Each design Firework runs ``nanoto campaign task CAMPAIGN INDEX`` in a child process,
the same idempotent task as a Slurm array element: a design done already does no work,
a design begun resumes from its last complete iteration. A design that fails raises with
its own error (task.json: message and run.log tail), so FireWorks marks it FIZZLED with
that message; ``lpad rerun_fws -i ID`` reruns only that design (and the collector after
it). The collector (``_allow_fizzled_parents``: it runs after any outcome, like Slurm's
afterany) builds CAMPAIGN/dataset.h5 from whatever finished.

The Firetasks are found by name (``{{nanoto_driver.fireworks_export.NanotoDesignTask}}``),
so nanoto must be installed where the rockets launch, and CAMPAIGN must be on a file
system the workers see (the path written is absolute).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fireworks import Firework, FWAction, Workflow
from fireworks.core.firework import FiretaskBase
from fireworks.utilities.fw_utilities import explicit_serialize

from .campaign import Campaign, open_campaign


@explicit_serialize
class NanotoDesignTask(FiretaskBase):
    """Run design ``index`` of ``campaign`` (``ranks`` MPI ranks); store its DesignDocument."""

    required_params = ["campaign", "index"]
    optional_params = ["ranks"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from .design_document import design_document
        from .executor_local import run_one

        campaign = open_campaign(self["campaign"])
        run_one(campaign, int(self["index"]), int(self.get("ranks", 1)))
        return FWAction(stored_data={"design": design_document(campaign.design(int(self["index"])).path)
                                     .model_dump(mode="json")})


@explicit_serialize
class NanotoDatasetTask(FiretaskBase):
    """Build the dataset of every finished design of ``campaign`` into ``output``."""

    required_params = ["campaign", "output"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        from .dataset import build_dataset

        report = build_dataset(self["campaign"], self["output"])
        return FWAction(stored_data={"dataset": str(report.path), "n_written": report.n_written,
                                     "skipped": [f"{s.index} {s.category}: {s.reason}"
                                                 for s in report.skipped]})


def campaign_workflow(campaign: Campaign, ranks: int = 1, dataset: str | Path | None = None) -> Workflow:
    """The Workflow of every design of ``campaign`` (done ones included: their task does no work)."""
    root = str(campaign.root.resolve())
    designs = [Firework([NanotoDesignTask(campaign=root, index=d.index, ranks=ranks)],
                        name=f"nanoto {campaign.name} {d.index}",
                        spec={"nanoto_design_id": d.id, "nanoto_label": d.label})
               for d in campaign.designs]
    output = str(Path(dataset).resolve()) if dataset else str(Path(root) / "dataset.h5")
    collector = Firework([NanotoDatasetTask(campaign=root, output=output)], parents=designs,
                         name=f"nanoto {campaign.name} dataset", spec={"_allow_fizzled_parents": True})
    return Workflow([*designs, collector], name=f"nanoto campaign {campaign.name}",
                    metadata={"nanoto_campaign": root})


def export_fireworks(campaign_root: str | Path, out: str | Path, ranks: int = 1) -> Workflow:
    """Write the campaign's Workflow to ``out`` (.yaml or .json, as ``lpad add`` reads it)."""
    from .campaign import write_json

    workflow = campaign_workflow(open_campaign(campaign_root), ranks)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if out.suffix in (".json",):
        write_json(out, workflow.to_dict())
    else:
        workflow.to_file(str(partial), f_format="yaml")
        partial.replace(out)
    return workflow
