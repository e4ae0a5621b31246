"""``nanoto sample CHECKPOINT --condition key=value ... -n N -o samples.h5``.

For every condition (the product of the ``--condition`` values) the trained model draws
N designs with the fixed sites in-painted; each is projected to the exact atom count of
its volume fraction (the design sites with the highest model output), then cleaned as
the optimizer cleans its designs (keep the load path, prune atoms with fewer than
``min_neighbors`` neighbours, refill to the exact count in the order of the model
output). samples.h5 (format ``nanoto-samples`` v1) holds one group per condition:
``/conditions/<i>`` with attrs ``condition_json``, ``config_json`` (the run config
``nanoto verify`` evaluates with), ``n_design_atoms``, and datasets ``occupancy``
(n, 4, nx, ny, nz) bool, ``x0`` (n, 4, nx, ny, nz) float32 raw model output and
``cleanup_ok`` (n,) bool (False: no load path survived the projection; kept as drawn),
``spring_k`` (n,) float64, the spring-network stiffness of each candidate (``ml_screen``).
With ``screen`` M > 1, M x N designs are drawn per condition and the N stiffest valid ones
by ``spring_k`` are kept (file attrs ``screen``; group attrs ``n_drawn``, ``n_valid_drawn``).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import GeometryError, InputError

log = logging.getLogger("nanoto")
FORMAT, FORMAT_VERSION = "nanoto-samples", 1


def project(x0: np.ndarray, grids: dict[str, np.ndarray], n_design: int, structure: Any,
            min_neighbors: int) -> tuple[np.ndarray, bool]:
    """One drawn design (4, nx, ny, nz) float -> occupancy (same shape) bool with exactly ``n_design``
    design atoms, fixed sites occupied, cleaned like an optimizer iterate. Returns (occupancy, cleanup_ok)."""
    from .cleanup import clean, first_shell_table
    from .structure import CLAMP, LOAD

    score = x0.reshape(-1).astype(np.float64)
    design = grids["design_mask"].reshape(-1)
    order = np.flatnonzero(design)[np.argsort(-score[design], kind="stable")]
    occ = ~design.copy()
    occ[order[:n_design]] = True
    table = first_shell_table(structure.lattice.cells, structure.periodic)
    try:
        occ = clean(table, occ, design, structure.kind == CLAMP, structure.kind == LOAD, score, n_design,
                    min_neighbors)
        return occ.reshape(x0.shape), True
    except GeometryError:
        return occ.reshape(x0.shape), False


def sample_to_file(checkpoint_dir: str | Path, conditions: list[dict[str, Any]], n: int, out: str | Path, *,
                   sampler: str = "ddim", steps: int = 50, guidance: float = 2.0, seed: int = 0,
                   device: str = "auto", screen: int = 1) -> Path:
    """Draw ``n`` candidates per condition (``screen`` x ``n`` kept down to the ``n`` stiffest
    valid ones by the spring network) and write samples.h5 (atomically)."""
    import h5py
    from nanoto_models.checkpoint import checkpoint_path, load_model
    from nanoto_models.sample import sample

    from .design_document import file_sha256
    from .load_cases import build_structure
    from .ml_data import ConditionEncoding, run_config_for, site_grids
    from .ml_screen import keep_stiffest, spring_stiffness
    from .ml_train import read_sidecar

    if screen < 1:
        raise InputError(f"--screen must be >= 1 (draws per kept candidate), got {screen}")

    side = read_sidecar(checkpoint_dir)
    encoding = ConditionEncoding(**side["encoding"])
    ckpt = checkpoint_path(checkpoint_dir)
    if not ckpt.is_file():
        raise InputError(f"{checkpoint_dir}: no checkpoint yet; train with `nanoto train CONFIG`")
    trained = load_model(ckpt, device=device)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(partial, "w") as f:
            f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, checkpoint=str(ckpt),
                           checkpoint_sha256=file_sha256(ckpt), training_step=trained.step, sampler=sampler,
                           n_steps=steps, guidance_scale=guidance, seed=seed, screen=screen,
                           nanoto_version=__version__,
                           created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
            for i, condition in enumerate(conditions):
                missing = [c for c in encoding.names if c not in condition]
                if missing:
                    raise InputError(f"condition {condition} lacks {missing}: give --condition for each of "
                                     f"{encoding.names}")
                config = run_config_for(side["base_run_config"], condition, side["base_dir"])
                grids = site_grids(config)
                shape = "x".join(map(str, grids["fixed_mask"].shape))
                if shape != side["shape"]:
                    raise InputError(f"condition {condition} gives grid {shape}, the model knows {side['shape']}")
                n_design = int(round(config.optimizer.volume_fraction * grids["design_mask"].sum()))
                cond = encoding.encode([condition])[0]
                log.info("sample: condition %d/%d %s: %d designs, %d design atoms each", i + 1, len(conditions),
                         condition, n * screen, n_design)
                # fixed sites are always occupied in these load cases: the mask is also their value
                x0 = sample(trained.model, sampler, steps, cond, grids["fixed_mask"], grids["fixed_mask"],
                            n=n * screen, guidance_scale=guidance, seed=seed + i, device=device,
                            schedule=trained.schedule).numpy()
                structure = build_structure(config.domain, 1.0)
                projected = [project(x, grids, n_design, structure, config.optimizer.min_neighbors) for x in x0]
                ok = np.array([p[1] for p in projected])
                spring_k = np.array([spring_stiffness(structure, p[0]) if p[1] else 0.0 for p in projected])
                valid = ok & (spring_k > 0)
                keep = keep_stiffest(spring_k, valid, n)
                group = f.create_group(f"conditions/{i}")
                group.attrs.update(condition_json=json.dumps(condition, sort_keys=True),
                                   config_json=json.dumps(config.model_dump(mode="json")), n_design_atoms=n_design,
                                   n_drawn=n * screen, n_valid_drawn=int(valid.sum()))
                group.create_dataset("occupancy", data=np.stack([projected[j][0] for j in keep]),
                                     compression="gzip")
                group.create_dataset("x0", data=x0[keep].astype(np.float32), compression="gzip")
                group.create_dataset("cleanup_ok", data=ok[keep])
                group.create_dataset("spring_k", data=spring_k[keep])
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
