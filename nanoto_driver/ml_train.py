"""``nanoto train CONFIG``: the diffusion model trained on a Nano-TO dataset.

CONFIG (YAML; paths relative to its folder):

    dataset: ../../data/train_cantilever.h5   # nanoto dataset build output
    sweep: ../sweeps/train_cantilever.yaml    # its sweep: the base run config of every condition
    shape: null                               # grid shape key (4xNXxNYxNZ); null: the only one
    conditions: [target_volume_fraction, load_j0, load_j1, filter_shells]
    hold_out_volume_fractions: [0.3375, 0.4375]   # never trained on: for judging generalisation
    splits: [train]                           # dataset splits trained on
    out: ../../runs/ddpm_cantilever           # checkpoint folder
    device: auto                              # cpu | cuda | auto
    train: {n_steps: 20000, batch_size: 16, ...}   # nanoto_models.train.TrainConfig fields

Next to the checkpoint, ``nanoto_train.json`` keeps what sampling needs: the condition
encoding, the base run config, the grid shape, periodic axes and the dataset's sha256.
Training resumes with ``--resume`` (the checkpoint holds the RNG states: the result is
that of an uninterrupted run).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .config import read_yaml_mapping
from .errors import InputError

log = logging.getLogger("nanoto")
SIDECAR = "nanoto_train.json"


class TrainSpec(BaseModel):
    """The training config file (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    sweep: str
    shape: str | None = None
    conditions: list[str] = Field(default_factory=lambda: ["target_volume_fraction", "load_j0", "load_j1",
                                                           "filter_shells"])
    hold_out_volume_fractions: list[float] = Field(default_factory=list)
    splits: list[str] = Field(default_factory=lambda: ["train"])
    augment: list[Literal["y_glide"]] = Field(
        default_factory=list, description="symmetry images added to the training designs (y_glide: the "
        "y-mirror glide of periodic-thickness cantilevers, load patch mirrored; same K_sym)")
    out: str
    device: str = "auto"
    train: dict[str, Any] = Field(default_factory=dict)
    base_dir: str = "."

    def path(self, value: str) -> Path:
        return (Path(self.base_dir) / value).resolve()


def load_spec(path: str | Path) -> TrainSpec:
    from pydantic import ValidationError

    tree = read_yaml_mapping(Path(path), "training config", "a mapping with dataset, sweep, out, train")
    try:
        return TrainSpec.model_validate(tree)
    except ValidationError as err:
        first = err.errors()[0]
        raise InputError(f"{path}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def train_from_spec(spec: TrainSpec, resume: bool = False) -> dict[str, Any]:
    """Train as the spec says; return the sidecar (also written to OUT/nanoto_train.json)."""
    from nanoto_models.data import GridDataset
    from nanoto_models.train import train

    from .design_document import file_sha256
    from .ml_data import ConditionEncoding, glide_images, training_arrays
    from .sweep import base_tree, load_sweep

    dataset = spec.path(spec.dataset)
    arrays, rows, encoding = training_arrays(dataset, spec.shape, spec.conditions, spec.hold_out_volume_fractions,
                                             spec.splits)
    n_designs = len(rows)
    if "y_glide" in spec.augment:
        import numpy as np
        import pandas as pd

        images, image_rows = glide_images(arrays, rows)
        arrays = {name: np.concatenate([arrays[name], images[name]]) for name in arrays}
        rows = pd.concat([rows.assign(augmented=False), image_rows], ignore_index=True)
        encoding = ConditionEncoding.fit(rows, spec.conditions)  # mirrored patches may widen a range
    sweep_path = spec.path(spec.sweep)
    base = base_tree(load_sweep(sweep_path))
    thickness = str(rows["thickness"].iloc[0])
    load_case = str(rows["load_case"].iloc[0])
    periodic = [load_case == "bulk"] * 2 + [load_case == "bulk" or thickness == "periodic"]
    train_cfg = {**spec.train, "model": {"periodic": periodic, **spec.train.get("model", {})}}
    out = spec.path(spec.out)
    sidecar = {
        "format": "nanoto-train", "format_version": 1, "dataset": str(dataset), "dataset_sha256": file_sha256(dataset),
        "sweep": str(sweep_path), "base_run_config": base, "base_dir": str(sweep_path.parent),
        "shape": str(rows["shape"].iloc[0]), "n_designs": n_designs, "n_images": len(rows) - n_designs,
        "augment": spec.augment, "encoding": encoding.to_dict(),
        "hold_out_volume_fractions": spec.hold_out_volume_fractions, "splits": spec.splits,
        "design_ids": list(map(str, rows["design_id"][:n_designs])), "train": train_cfg,
    }
    log.info("train: %d designs of shape %s + %d symmetry images (%s held out), conditions %s, output %s",
             n_designs, sidecar["shape"], len(rows) - n_designs,
             spec.hold_out_volume_fractions or "none", spec.conditions, out)
    data = GridDataset(arrays["occupancy"], arrays["fixed_mask"], arrays["fixed_value"], encoding.encode(rows),
                       arrays["design_mask"])
    out.mkdir(parents=True, exist_ok=True)
    from .campaign import write_json

    write_json(out / SIDECAR, sidecar)
    try:
        result = train(data, train_cfg, out, resume=resume, device=spec.device)
    except FileExistsError as err:
        raise InputError(f"{err}") from None
    except ValueError as err:  # a bad train: section (nanoto_models validates it)
        raise InputError(f"training config: {err}") from None
    sidecar["step"] = int(result.step)
    return sidecar


def read_sidecar(checkpoint_dir: str | Path) -> dict[str, Any]:
    path = Path(checkpoint_dir) / SIDECAR
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a nanoto training folder ({err}); train with `nanoto train CONFIG`") from None
