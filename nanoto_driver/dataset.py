"""A training dataset from a campaign: every finished design in one HDF5 file.

    nanoto dataset build CAMPAIGN -o dataset.h5
    nanoto dataset summary dataset.h5

Layout (format "nanoto-dataset", version 1; docs/dataset.md has the full table)::

    /                       attrs: format, format_version, campaign, counts, split rule
    /shapes/<4xNXxNYxNZ>/   one group per grid shape (4, nx, ny, nz), rows in campaign order
        occupancy, kind, design_mask, fixed_mask, fixed_value     (n, 4, nx, ny, nz)
        table/<column>      (n,) conditions and results of each design (``COLUMNS``)
    /skipped/<column>       (m,) campaign_index, design_id, category, reason

A design is written if ``summary.json`` and ``run.h5`` agree on a finished run
(status converged or max_iterations) of the design's planned config. Designs
without ``summary.json`` are listed as *incomplete*, unreadable or inconsistent
ones as *corrupt*; the build skips both and never stops on them. Campaigns
sweeping ``domain.cells`` get one group per grid shape.

The split is a pure function of the design id (``assign_split``), so rebuilding
after more designs finished never moves a design to another split.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from . import __version__
from .campaign import Campaign, CampaignDesign, open_campaign
from .config import RunConfig, config_hash
from .errors import InputError
from .hdf5_files import open_readable
from .outputs import occupancy_sha256
from .runfile import FORMAT as RUN_FORMAT
from .structure import DESIGN

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("nanoto")
FORMAT, FORMAT_VERSION = "nanoto-dataset", 1
FINISHED = ("converged", "max_iterations")
SPLITS = ("train", "val", "test")
SPLIT_RULE = ("u = int(sha256(f'{seed}:{design_id}')[:16], 16) / 2**64; "
              "train if u < f_train, val if u < f_train + f_val, else test")
REQUIRED_ATTRS = ("campaign_name", "campaign_path", "created_utc", "nanoto_version", "n_planned", "n_written",
                  "n_incomplete", "n_corrupt", "split_names", "split_fractions", "split_seed")
ARRAYS = ("occupancy", "kind", "design_mask", "fixed_mask", "fixed_value")
COLUMNS = {  # table column -> dtype ("str": variable-length UTF-8); K_sym in eV/Å², a0 in Å
    "campaign_index": "i8", "design_id": "str", "config_sha256": "str", "split": "str",
    "status": "str", "converged": "bool", "iterations": "i8",
    "load_case": "str", "thickness": "str", "nx": "i8", "ny": "i8", "nz": "i8", "load_j0": "i8", "load_j1": "i8",
    "target_volume_fraction": "f8", "volume_fraction": "f8",
    "filter_shells": "i8", "filter_scheme": "str", "filter_radius_a0": "f8",
    "k_sym_ev_per_a2": "f8", "k_sym_full_ev_per_a2": "f8", "k_ratio": "f8",
    "starts_full": "bool", "n_design_atoms": "i8", "a0_a": "f8", "sweep_point": "str",
}
SKIPPED_COLUMNS = {"campaign_index": "i8", "design_id": "str", "category": "str", "reason": "str"}
SUMMARY_KEYS = ("config_sha256", "k_sym_ev_per_a2", "k_sym_initial_ev_per_a2", "volume_fraction",
                "n_design_atoms", "iterations", "converged", "status", "final_occupancy_sha256")


@dataclass(frozen=True)
class SkippedDesign:
    """A design left out: ``category`` is "incomplete" (not finished) or "corrupt"."""

    index: int
    id: str
    category: str
    reason: str


@dataclass
class DatasetReport:
    """What ``build_dataset`` wrote: the file, designs written per shape and split, designs skipped."""

    path: Path
    n_planned: int
    n_written: int
    shapes: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedDesign] = field(default_factory=list)

    @property
    def n_incomplete(self) -> int:
        return sum(s.category == "incomplete" for s in self.skipped)

    @property
    def n_corrupt(self) -> int:
        return sum(s.category == "corrupt" for s in self.skipped)


@dataclass
class _Row:
    grid_shape: tuple[int, ...]
    arrays: dict[str, np.ndarray]  # ARRAYS, each of shape grid_shape
    table: dict[str, Any]  # COLUMNS


class _Skip(Exception):
    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category, self.reason = category, reason


def assign_split(design_id: str, split: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> str:
    """The split of a design, a pure function of its id (``SPLIT_RULE``).

    Parameters
    ----------
    design_id : signac id of the design (32 hex digits)
    split : (train, val, test) fractions, each >= 0, summing to 1
    seed : salt of the hash; another seed gives another assignment

    Returns
    -------
    'train', 'val' or 'test': u = first 64 bits of sha256("<seed>:<design_id>") / 2**64,
    uniform in [0, 1), binned at the cumulative fractions.
    """
    train, val, _ = _check_split(split)
    u = int(hashlib.sha256(f"{seed}:{design_id}".encode()).hexdigest()[:16], 16) / 2.0**64
    return "train" if u < train else "val" if u < train + val else "test"


def _check_split(split: tuple[float, float, float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in split)
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-9:
        raise InputError(f"split must be three fractions (train, val, test) >= 0 summing to 1, got {split}")
    return values[0], values[1], values[2]


def shape_key(grid_shape: tuple[int, ...]) -> str:
    """Group name of a grid shape: (4, 8, 4, 1) -> '4x8x4x1'."""
    return "x".join(str(n) for n in grid_shape)


def _open_run(path: Path) -> h5py.File:
    """A run file opened read-only; _Skip('corrupt') if it is not a readable nanoto run file."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise _Skip("corrupt", f"run.h5 is not readable HDF5 ({err})") from None
    if f.attrs.get("format") != RUN_FORMAT:
        f.close()
        raise _Skip("corrupt", "run.h5 is not a nanoto run file (format attribute missing)")
    return f


def _unfinished(design: CampaignDesign) -> str:
    """Why a design without summary.json is not finished, from its run file if any."""
    if not design.run_path.is_file():
        return "not started (no run.h5)"
    try:
        with _open_run(design.run_path) as f:
            status, error = str(f.attrs.get("status", "")), str(f.attrs.get("error", ""))
            n_iter = int(f["iterations/k"].shape[0]) if "iterations/k" in f else 0
    except _Skip as skip:
        return f"no summary.json, and {skip.reason}"
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported, not raised
        return f"no summary.json, and run.h5 is unreadable ({type(err).__name__}: {err})"
    if status == "failed":
        return f"failed after {n_iter} iterations: {error}"
    if status in FINISHED:
        return f"run.h5 is {status} but summary.json is missing; run the task again to write it"
    return f"{status or 'unknown status'} after {n_iter} iterations (no summary.json yet)"


def _read_summary(design: CampaignDesign) -> dict[str, Any]:
    try:
        summary = json.loads(design.summary_path.read_text())
    except (OSError, ValueError) as err:
        raise _Skip("corrupt", f"summary.json unreadable ({err})") from None
    missing = [k for k in SUMMARY_KEYS if not isinstance(summary, dict) or k not in summary]
    if missing:
        raise _Skip("corrupt", f"summary.json lacks {', '.join(missing)}")
    return dict(summary)


def _read_run(path: Path) -> dict[str, Any]:
    """What the dataset takes from a run file.

    Returns status, config_sha256, grid_shape (4, nx, ny, nz), a0_a (Å), kind
    (n_sites,) int and occupancy (n_sites,) bool, the final design in site order.
    """
    with _open_run(path) as f:
        status = str(f.attrs.get("status", ""))
        if status not in FINISHED:
            raise _Skip("corrupt", f"summary.json exists but run.h5 status is '{status}'")
        if "final/occupancy" not in f or "lattice/kind" not in f:
            raise _Skip("corrupt", "run.h5 has no /final/occupancy or /lattice/kind")
        lattice = f["lattice"].attrs
        return {"status": status, "config_sha256": str(f.attrs.get("config_sha256", "")),
                "grid_shape": tuple(int(n) for n in lattice["grid_shape"]), "a0_a": float(lattice["a0_a"]),
                "kind": np.asarray(f["lattice/kind"][()]), "occupancy": np.asarray(f["final/occupancy"][()])}


def _check(run: dict[str, Any], summary: dict[str, Any], config: RunConfig) -> None:
    """Raise _Skip('corrupt') unless run file, summary and planned config describe one finished design."""
    grid_shape, occ, kind = run["grid_shape"], run["occupancy"], run["kind"]
    n_sites = int(np.prod(grid_shape))
    if grid_shape != (4, *config.domain.cells):
        raise _Skip("corrupt", f"run.h5 grid shape {grid_shape} does not match cells {config.domain.cells}")
    if occ.shape != (n_sites,) or occ.dtype != bool or kind.shape != (n_sites,):
        raise _Skip("corrupt", f"run.h5 final/occupancy {occ.shape} {occ.dtype} or lattice/kind {kind.shape} "
                               f"does not match {n_sites} sites")
    digest = config_hash(config)
    if run["config_sha256"] != digest or summary["config_sha256"] != digest:
        raise _Skip("corrupt", "run.h5 or summary.json holds another config than the campaign plan")
    if summary["final_occupancy_sha256"] != occupancy_sha256(occ):
        raise _Skip("corrupt", "summary.json and run.h5 disagree on the final design")
    if not occ[kind != DESIGN].all():
        raise _Skip("corrupt", "a clamp or load site is empty in the final design")
    if not float(summary["k_sym_initial_ev_per_a2"]) > 0:
        raise _Skip("corrupt", "summary.json k_sym_initial_ev_per_a2 is not positive")


def _read_design(campaign: Campaign, design: CampaignDesign, split: tuple[float, float, float],
                 seed: int) -> _Row:
    """One dataset row, or _Skip with the reason the design is left out."""
    if not design.summary_path.is_file():
        raise _Skip("incomplete", _unfinished(design))
    summary = _read_summary(design)
    config = campaign.config(design.index)
    run = _read_run(design.run_path)
    _check(run, summary, config)
    grid_shape, occ = run["grid_shape"], run["occupancy"].reshape(run["grid_shape"])
    kind = run["kind"].reshape(grid_shape).astype(np.int8)
    fixed = kind != DESIGN
    k_sym, k_full = float(summary["k_sym_ev_per_a2"]), float(summary["k_sym_initial_ev_per_a2"])
    cfg_design, cells = config.design, config.domain.cells
    load_j0, load_j1 = config.domain.load_span or (0, cells[1])
    table = {
        "campaign_index": design.index, "design_id": design.id, "config_sha256": summary["config_sha256"],
        "split": assign_split(design.id, split, seed), "status": run["status"],
        "converged": bool(summary["converged"]), "iterations": int(summary["iterations"]),
        "load_case": config.domain.load_case, "thickness": config.domain.thickness,
        "nx": cells[0], "ny": cells[1], "nz": cells[2],
        "load_j0": load_j0, "load_j1": load_j1,
        "target_volume_fraction": config.optimizer.volume_fraction,
        "volume_fraction": float(summary["volume_fraction"]),
        "filter_shells": config.filter.shells, "filter_scheme": config.filter.scheme,
        "filter_radius_a0": config.filter.radius_a0,
        "k_sym_ev_per_a2": k_sym, "k_sym_full_ev_per_a2": k_full, "k_ratio": k_sym / k_full,
        "starts_full": not cfg_design.remove_cells and cfg_design.occupancy_file is None,
        "n_design_atoms": int(summary["n_design_atoms"]), "a0_a": run["a0_a"],
        "sweep_point": json.dumps(design.point, sort_keys=True),
    }
    arrays = {"occupancy": occ, "kind": kind, "design_mask": ~fixed, "fixed_mask": fixed,
              "fixed_value": occ & fixed}
    return _Row(grid_shape, arrays, table)


def _read_or_skip(campaign: Campaign, design: CampaignDesign, split: tuple[float, float, float],
                  seed: int) -> _Row | SkippedDesign:
    """The row of a design, or why it is left out; never raises for a damaged design folder."""
    try:
        return _read_design(campaign, design, split, seed)
    except _Skip as skip:
        category, reason = skip.category, skip.reason
    except Exception as err:  # noqa: BLE001 - a damaged design must not stop the build
        category, reason = "corrupt", f"{type(err).__name__}: {err}"
    if category == "corrupt":
        log.warning("dataset: design %d (%s) is corrupt: %s", design.index, design.id, reason)
    return SkippedDesign(design.index, design.id, category, reason)


def _write_table(group: h5py.Group, columns: dict[str, str], rows: list[dict[str, Any]]) -> None:
    for name, dtype in columns.items():
        values = [row[name] for row in rows]
        if dtype == "str":
            group.create_dataset(name, data=np.array([str(v) for v in values], dtype=object).reshape(len(values)),
                                 dtype=h5py.string_dtype())
        else:
            group.create_dataset(name, data=np.array(values, dtype=dtype).reshape(len(values)))


def _write(path: Path, attrs: dict[str, Any], groups: dict[str, list[_Row]], skipped: list[SkippedDesign]) -> None:
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        for key, rows in groups.items():
            group = f.create_group(f"shapes/{key}")
            group.attrs.update(grid_shape=rows[0].grid_shape, n=len(rows))
            for name in ARRAYS:
                data = np.stack([row.arrays[name] for row in rows])
                group.create_dataset(name, data=data, chunks=(1, *data.shape[1:]), compression="gzip",
                                     compression_opts=4)
            _write_table(group.create_group("table"), COLUMNS, [row.table for row in rows])
        skip_rows = [{"campaign_index": s.index, "design_id": s.id, "category": s.category, "reason": s.reason}
                     for s in skipped]
        _write_table(f.create_group("skipped"), SKIPPED_COLUMNS, skip_rows)


def read_rows(path: str | Path) -> dict[str, _Row]:
    """Every design of a dataset file as rows (arrays and table), keyed by design id."""
    rows: dict[str, _Row] = {}
    with _open_dataset(path) as f:
        for group in f.get("shapes", {}).values():
            table = {c: _column(ds) for c, ds in group["table"].items()}
            shape = tuple(int(v) for v in group.attrs["grid_shape"])
            arrays = {name: group[name][()] for name in ARRAYS}
            for i, design_id in enumerate(table["design_id"]):
                rows[str(design_id)] = _Row(shape, {name: a[i] for name, a in arrays.items()},
                                            {c: (v[i].item() if hasattr(v[i], "item") else v[i])
                                             for c, v in table.items()})
    return rows


def _from_previous(previous: dict[str, _Row], campaign: Campaign, design: CampaignDesign,
                   split: tuple[float, float, float], seed: int) -> _Row | None:
    """The row of an unfinished design from an earlier dataset, if it holds the same config."""
    from .config import config_hash

    row = previous.get(design.id)
    if row is None or row.table["config_sha256"] != config_hash(campaign.config(design.index)):
        return None
    table = {**row.table, "campaign_index": design.index, "split": assign_split(design.id, split, seed)}
    return _Row(row.grid_shape, row.arrays, table)


def build_dataset(campaign_root: str | Path, out_path: str | Path, *,
                  split: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                  previous: str | Path | None = None) -> DatasetReport:
    """Write every finished design of a campaign to one HDF5 file (docs/dataset.md).

    Parameters
    ----------
    campaign_root : str or Path
        Campaign folder (``nanoto campaign plan -o``).
    out_path : str or Path
        Dataset file to write. Written as ``<out_path>.partial`` and renamed, so an
        existing file is replaced only by a complete one.
    split : (float, float, float)
        (train, val, test) fractions, each >= 0, summing to 1.
    seed : int
        Salt of the split hash (``assign_split``).
    previous : str or Path, optional
        An earlier dataset of the same campaign: designs not finished in the campaign
        folder but present there with the same config are taken from it. This is how a
        campaign run in pieces on machines that keep only the dataset carries on.

    Returns
    -------
    DatasetReport
        ``path``, ``n_written``, designs per shape and split, and the ``skipped``
        designs (incomplete or corrupt, with reasons).

    Raises
    ------
    InputError
        Not a campaign folder, or a bad ``split``. Damaged designs never raise.
    """
    fractions = _check_split(split)
    campaign = open_campaign(campaign_root)
    out = Path(out_path)
    groups: dict[str, list[_Row]] = {}
    skipped: list[SkippedDesign] = []
    n = len(campaign.designs)
    earlier = read_rows(previous) if previous is not None else {}
    log.info("dataset: reading %d designs of campaign %s", n, campaign.name)
    for i, design in enumerate(campaign.designs, 1):
        row = _read_or_skip(campaign, design, fractions, seed)
        if isinstance(row, SkippedDesign) and row.category == "incomplete":
            row = _from_previous(earlier, campaign, design, fractions, seed) or row
        if isinstance(row, SkippedDesign):
            skipped.append(row)
        else:
            groups.setdefault(shape_key(row.grid_shape), []).append(row)
        if i % max(1, n // 10) == 0 or i == n:
            log.info("dataset: %d/%d designs read", i, n)
    report = DatasetReport(out, n, sum(len(rows) for rows in groups.values()),
                           {k: len(rows) for k, rows in groups.items()},
                           {s: sum(r.table["split"] == s for rows in groups.values() for r in rows) for s in SPLITS},
                           skipped)
    attrs = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "campaign_name": campaign.name,
        "campaign_path": str(Path(campaign_root).resolve()), "nanoto_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "n_planned": n, "n_written": report.n_written, "n_incomplete": report.n_incomplete,
        "n_corrupt": report.n_corrupt, "split_names": list(SPLITS), "split_fractions": fractions,
        "split_seed": seed, "split_rule": SPLIT_RULE,
    }
    if report.n_written == 0:
        log.warning("dataset: no finished design in campaign %s; writing an empty dataset", campaign.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        _write(partial, attrs, groups, skipped)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    log.info("dataset: wrote %s: %d designs, %d incomplete and %d corrupt skipped", out, report.n_written,
             report.n_incomplete, report.n_corrupt)
    return report


@contextmanager
def _open_dataset(path: str | Path) -> Iterator[h5py.File]:
    """The dataset file opened read-only; InputError naming the file if it is missing or not a dataset."""
    path = Path(path)
    hint = f"rebuild it with `nanoto dataset build CAMPAIGN -o {path}`"
    with open_readable(path, "dataset file", hint) as f:
        if f.attrs.get("format") != FORMAT or f.attrs.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} file; {hint}")
        missing = [k for k in REQUIRED_ATTRS if k not in f.attrs] + [k for k in ("skipped",) if k not in f]
        if missing:
            raise InputError(f"{path} is damaged (no {', '.join(missing)}); {hint}")
        try:
            yield f
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"{path} is damaged ({err}); {hint}") from None


def _column(ds: h5py.Dataset) -> np.ndarray:
    return ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) is not None else ds[()]


def read_table(path: str | Path) -> pd.DataFrame:
    """The per-design table of a dataset (no arrays).

    Returns
    -------
    pandas.DataFrame
        One row per written design in campaign order; columns ``shape`` (the group,
        e.g. '4x8x4x1') and ``COLUMNS`` (K_sym in eV/Å², a0 in Å, strings as str).

    Raises
    ------
    InputError
        The file is missing, not HDF5 or not a nanoto dataset.
    """
    import pandas as pd

    with _open_dataset(path) as f:
        frames = [pd.DataFrame({"shape": key, **{c: _column(ds) for c, ds in group["table"].items()}})
                  for key, group in f.get("shapes", {}).items()]
    if not frames:
        return pd.DataFrame({c: [] for c in ["shape", *COLUMNS]})
    table = pd.concat(frames, ignore_index=True)
    return table[["shape", *COLUMNS]].sort_values("campaign_index", ignore_index=True)


def read_skipped(path: str | Path) -> pd.DataFrame:
    """The designs left out: campaign_index, design_id, category, reason."""
    import pandas as pd

    with _open_dataset(path) as f:
        return pd.DataFrame({c: _column(f["skipped"][c]) for c in SKIPPED_COLUMNS})


def summary_text(path: str | Path) -> str:
    """A readable account of a dataset: counts, conditions, K ratios, skipped designs."""
    with _open_dataset(path) as f:
        attrs = dict(f.attrs)
    table, skipped = read_table(path), read_skipped(path)
    fractions = "/".join(f"{v:g}" for v in attrs["split_fractions"])
    lines = [
        f"{path}: {FORMAT} v{attrs['format_version']}, campaign {attrs['campaign_name']} "
        f"({attrs['campaign_path']}), built {attrs['created_utc']} by nanoto {attrs['nanoto_version']}",
        f"designs: {attrs['n_planned']} planned, {attrs['n_written']} written, "
        f"{attrs['n_incomplete']} incomplete, {attrs['n_corrupt']} corrupt",
    ]
    if len(table):
        splits = table["split"].value_counts().reindex(list(SPLITS), fill_value=0)
        lines += [
            "split (seed {}, fractions {}): {}".format(attrs["split_seed"], fractions,
                                                       ", ".join(f"{k} {v}" for k, v in splits.items())),
            "shapes: " + ", ".join(f"{k} {v}" for k, v in table["shape"].value_counts(sort=False).items()),
            f"volume fraction achieved: {table['volume_fraction'].min():.3f} - {table['volume_fraction'].max():.3f}"
            f" (targets {', '.join(f'{v:g}' for v in sorted(table['target_volume_fraction'].unique()))})",
            "", "K ratio (k_sym / k_sym_full) by load case, thickness, target volume fraction:",
            table.groupby(["load_case", "thickness", "target_volume_fraction"])["k_ratio"]
            .agg(["count", "mean", "min", "max"]).to_string(float_format=lambda v: f"{v:.4f}"),
        ]
    if len(skipped):
        lines += ["", "skipped designs:"]
        lines += [f"  {r.campaign_index:>5} {r.design_id} {r.category}: {r.reason}" for r in skipped.itertuples()]
    return "\n".join(lines)
