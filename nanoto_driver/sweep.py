"""Sweep definitions: a base run config plus grid and zip axes over any config key.

A sweep YAML (``workflows/sweeps/*.yaml``)::

    name: smoke                      # campaign name (also every design's run name)
    base: ../../tests/data/small_run.yaml   # a run config, relative to this file (optional)
    config: {optimizer: {max_iterations: 20}}   # overrides on top of base (optional)
    grid:                            # Cartesian product, first key varies slowest
      optimizer.volume_fraction: [0.5, 0.7]
    zip:                             # axes in lockstep (equal lengths), outer loop
      domain.cells: [[8, 4, 1], [10, 4, 1]]

Designs are enumerated zip row by zip row, and inside each row over the grid in
C order: the index of a design is stable for a given file. Every design is
validated as a full run config; its identity is the hash of its canonical
config, so two axes values that give the same config are refused as duplicates.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import RunConfig, build_config, config_hash, merge_trees, read_yaml_mapping, set_dotted
from .errors import ConfigError


class SweepConfig(BaseModel):
    """The sweep file, validated (unknown top-level keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="campaign name")
    base: str | None = Field(None, description="run config YAML the designs start from")
    config: dict[str, Any] = Field(default_factory=dict, description="overrides on top of base")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values (product)")
    zip: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values (lockstep)")
    base_dir: str = Field(".", description="set by the loader: folder of the sweep file")


@dataclass(frozen=True)
class Design:
    """One point of a sweep: its index, the axis values that made it, its validated config."""

    index: int
    point: dict[str, Any]
    config: RunConfig

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.point.items()) or "base"


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML; errors name the file and the key."""
    path = Path(path)
    tree = read_yaml_mapping(path, "sweep", "a mapping with name, base, config, grid, zip")
    try:
        return SweepConfig.model_validate(tree)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            valid = ", ".join(k for k in SweepConfig.model_fields if k != "base_dir")
            raise ConfigError(f"{path}: unknown key '{where}' (valid keys: {valid})") from None
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def base_tree(sweep: SweepConfig) -> dict[str, Any]:
    """The base run config as a nested dict (base file merged with ``config``)."""
    tree: dict[str, Any] = {}
    if sweep.base is not None:
        base_path = Path(sweep.base_dir) / sweep.base
        try:
            tree = yaml.safe_load(base_path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"sweep {sweep.name}: base config not found: {base_path}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{base_path}: expected a mapping of sections at the top level")
    tree = merge_trees(tree, sweep.config)
    tree.setdefault("name", sweep.name)
    return tree


def points(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Axis values of every design, in index order (zip rows outer, grid in C order)."""
    lengths = {len(v) for v in sweep.zip.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in sweep.zip.items())
        raise ConfigError(f"sweep {sweep.name}: zip axes must have equal lengths ({sizes})")
    both = set(sweep.zip) & set(sweep.grid)
    if both:
        raise ConfigError(f"sweep {sweep.name}: {', '.join(sorted(both))} is both a grid and a zip axis")
    empty = [k for k, v in {**sweep.grid, **sweep.zip}.items() if not v]
    if empty:
        raise ConfigError(f"sweep {sweep.name}: axis {empty[0]} has no values")
    zip_rows = [dict(zip(sweep.zip, row, strict=True)) for row in zip(*sweep.zip.values(), strict=True)] or [{}]
    grid_rows = [dict(zip(sweep.grid, row, strict=True)) for row in itertools.product(*sweep.grid.values())]
    return [{**z, **g} for z in zip_rows for g in grid_rows]


def expand(sweep: SweepConfig) -> list[Design]:
    """Every design of the sweep as a validated run config; refuses invalid and duplicate designs."""
    base = base_tree(sweep)
    designs: list[Design] = []
    seen: dict[str, int] = {}
    for index, point in enumerate(points(sweep)):
        axes: dict[str, Any] = {"base_dir": sweep.base_dir}
        for key, value in point.items():
            set_dotted(axes, key, value)
        tree = merge_trees(base, axes)
        design = Design(index, point, _validated(tree, sweep.name, index, point))
        digest = config_hash(design.config)
        if digest in seen:
            raise ConfigError(
                f"sweep {sweep.name}: designs {seen[digest]} and {index} ({design.label}) are the same run "
                "config (engine.* keys do not change a design); remove the duplicate axis values"
            )
        seen[digest] = index
        designs.append(design)
    return designs


def _validated(tree: dict[str, Any], name: str, index: int, point: dict[str, Any]) -> RunConfig:
    label = ", ".join(f"{k}={v}" for k, v in point.items()) or "base"
    try:
        return build_config(tree, f"sweep {name}, design {index} ({label})")
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a dotted key through a non-section value
        raise ConfigError(f"sweep {name}, design {index} ({label}): {err}") from None
