"""From a Nano-TO dataset to model tensors, and from a condition back to a run config.

The diffusion model sees a design as occupancy on the (4, nx, ny, nz) sublattice grid
and a condition vector. Conditions are dataset table columns (docs/dataset.md) scaled
to [-1, 1] by the range of the training designs (``ConditionEncoding``). A condition
maps back to run-config keys (``CONDITION_KEYS``), so a sampled candidate gets the run
config that a Nano-TO run of the same condition would have: its fixed sites, its
volume fraction, and the LAMMPS set-up ``nanoto verify`` evaluates it with.

No torch here: arrays are numpy; ``nanoto_models`` turns them into tensors.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig, build_config, merge_trees, set_dotted
from .errors import InputError

# dataset column -> the run-config key it came from (load_j0 and load_j1 together set domain.load_span)
CONDITION_KEYS = {
    "target_volume_fraction": "optimizer.volume_fraction",
    "filter_shells": "filter.shells",
    "filter_radius_a0": "filter.radius_a0",
    "load_j0": "domain.load_span",
    "load_j1": "domain.load_span",
}
ALIASES = {"vf": "target_volume_fraction", "volume_fraction": "target_volume_fraction", "shells": "filter_shells"}


@dataclass
class ConditionEncoding:
    """Condition columns and their [lo, hi] range in the training set; encode maps to [-1, 1]."""

    names: list[str]
    lo: list[float]
    hi: list[float]

    @classmethod
    def fit(cls, table: Any, names: list[str]) -> ConditionEncoding:
        """The range of each column over ``table`` (a pandas DataFrame of training rows)."""
        unknown = [n for n in names if n not in CONDITION_KEYS]
        if unknown:
            raise InputError(f"unknown condition column(s) {unknown}; valid: {sorted(CONDITION_KEYS)}")
        return cls(list(names), [float(table[n].min()) for n in names], [float(table[n].max()) for n in names])

    def encode(self, rows: Any) -> np.ndarray:
        """(n, n_cond) float32 in [-1, 1] (outside for values beyond the training range) from rows
        (a DataFrame or a list of dicts with the condition columns)."""
        values = np.array([[float(r[n]) for n in self.names] for r in _records(rows)], dtype=np.float64)
        lo, hi = np.array(self.lo), np.array(self.hi)
        span = np.where(hi > lo, hi - lo, 1.0)  # a constant column encodes as -1
        return (2.0 * (values - lo) / span - 1.0).astype(np.float32).reshape(len(values), len(self.names))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _records(rows: Any) -> list[dict[str, Any]]:
    return rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)


def canonical_condition(given: dict[str, Any]) -> dict[str, Any]:
    """Resolve aliases (vf, shells) and check the names."""
    out = {}
    for key, value in given.items():
        name = ALIASES.get(key, key)
        if name not in CONDITION_KEYS:
            raise InputError(f"unknown condition '{key}'; valid: {sorted(CONDITION_KEYS)} (aliases {sorted(ALIASES)})")
        out[name] = value
    return out


def condition_grid(pairs: list[str]) -> list[dict[str, Any]]:
    """``key=v1,v2`` strings -> the product of the values, as condition dicts (numbers parsed).

    ``load_span=j0:j1,...`` gives load_j0 and load_j1 together (one axis of load patches).
    """
    axes: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not text:
            raise InputError(f"--condition expects key=value[,value...], got '{pair}'")
        key = key.strip()
        axes[key] = [_span(v) if key == "load_span" else _number(v) for v in text.split(",")]
    out = []
    for combo in itertools.product(*axes.values()):
        condition = dict(zip(axes, combo, strict=True))
        if "load_span" in condition:
            condition["load_j0"], condition["load_j1"] = condition.pop("load_span")
        out.append(canonical_condition(condition))
    return out


def _span(text: str) -> tuple[int, int]:
    j0, sep, j1 = text.partition(":")
    try:
        span = (int(j0), int(j1))
    except ValueError:
        span = (0, -1)
    if not sep or not 0 <= span[0] < span[1]:
        raise InputError(f"load_span expects j0:j1 with 0 <= j0 < j1 (y cells of the loaded patch), got '{text}'")
    return span


def _number(text: str) -> float | int | str:
    try:
        value = float(text)
    except ValueError:
        return text.strip()
    return int(value) if value.is_integer() and "." not in text else value


def run_config_for(base_tree: dict[str, Any], condition: dict[str, Any], base_dir: str = ".") -> RunConfig:
    """The run config of a Nano-TO run of ``condition`` (the training sweep's base plus the condition)."""
    tree = merge_trees(base_tree, {})
    for name, value in condition.items():
        if name in ("load_j0", "load_j1"):
            continue
        set_dotted(tree, CONDITION_KEYS[name], value)
    if "load_j0" in condition or "load_j1" in condition:
        ny = int(tree.get("domain", {}).get("cells", (12, 6, 2))[1])
        span = (int(condition.get("load_j0", 0)), int(condition.get("load_j1", ny)))
        set_dotted(tree, "domain.load_span", None if span == (0, ny) else list(span))
    tree.setdefault("base_dir", base_dir)
    return build_config(tree, f"condition {condition}")


def site_grids(config: RunConfig) -> dict[str, np.ndarray]:
    """fixed_mask and design_mask, each (4, nx, ny, nz) bool, of a run config's load case."""
    from .load_cases import build_structure
    from .structure import DESIGN

    structure = build_structure(config.domain, 1.0)  # which sites are fixed does not depend on a0
    kind = structure.kind.reshape(structure.lattice.grid_shape)
    return {"fixed_mask": kind != DESIGN, "design_mask": kind == DESIGN}


def training_arrays(dataset: str | Path, shape: str | None, conditions: list[str],
                    hold_out: list[float], splits: list[str]) -> tuple[dict[str, np.ndarray], Any, ConditionEncoding]:
    """The designs to train on: arrays (N, 4, nx, ny, nz), their table rows, the condition encoding.

    Rows of one grid shape (``shape`` key like '4x20x12x1', or the only one), of the given
    splits, whose target volume fraction is not held out (compared to 1e-9).
    """
    import h5py

    from .dataset import read_table

    table = read_table(dataset)
    shapes = sorted(set(table["shape"]))
    if shape is None:
        if len(shapes) != 1:
            raise InputError(f"{dataset} holds grid shapes {shapes}: choose one with `shape:`")
        shape = shapes[0]
    if shape not in shapes:
        raise InputError(f"{dataset} has no designs of grid shape {shape} (it has {shapes})")
    rows = table[table["shape"] == shape]
    held = np.isclose(rows["target_volume_fraction"].to_numpy()[:, None], np.array(hold_out, float)[None, :],
                      atol=1e-9, rtol=0).any(axis=1) if hold_out else np.zeros(len(rows), bool)
    keep = rows["split"].isin(splits).to_numpy() & ~held
    if not keep.any():
        raise InputError(f"{dataset}: no design of shape {shape} in splits {splits} outside the held-out "
                         f"volume fractions {hold_out}")
    with h5py.File(dataset, "r") as f:
        group = f[f"shapes/{shape}"]
        order = {str(d): i for i, d in enumerate(group["table/design_id"].asstr()[()])}
        index = np.array([order[d] for d in rows["design_id"][keep]])
        sort = np.argsort(index)  # h5py reads need increasing indices
        arrays = {name: group[name][index[sort]][np.argsort(sort)] for name in
                  ("occupancy", "fixed_mask", "fixed_value", "design_mask")}
    train_rows = rows[keep].reset_index(drop=True)
    return arrays, train_rows, ConditionEncoding.fit(train_rows, conditions)


def glide_images(arrays: dict[str, np.ndarray], rows: Any) -> tuple[dict[str, np.ndarray], Any]:
    """The y-mirror glide image of every design (``symmetry.y_glide``): arrays (N, 4, nx, ny, nz)
    permuted site by site and rows with the load patch mirrored ([j0, j1) -> [ny - j1, ny - j0)).

    K_sym is the same for a design and its image (tests/test_symmetry.py), so each image is
    a Nano-TO-quality design of the mirrored load condition: augmentation, counted apart
    from the designs themselves (rows get ``augmented`` = True). Cantilevers of periodic
    thickness only (the glide needs a periodic z).
    """
    from .lattice import FccLattice
    from .symmetry import apply, mirrored_span, y_glide

    if set(rows["load_case"]) != {"cantilever"} or set(rows["thickness"]) != {"periodic"}:
        raise InputError("augment y_glide needs thickness-periodic cantilevers (a periodic z for the glide)")
    grid = arrays["occupancy"].shape[1:]
    cells = (int(grid[1]), int(grid[2]), int(grid[3]))
    image = y_glide(FccLattice(cells, 1.0), (False, False, True))
    mirrored = {name: apply(image, a.reshape(a.shape[0], -1).T).T.reshape(a.shape) for name, a in arrays.items()}
    out_rows = rows.copy()
    out_rows["load_j0"], out_rows["load_j1"] = mirrored_span((rows["load_j0"], rows["load_j1"]), int(grid[2]))
    out_rows["augmented"] = True
    return mirrored, out_rows
