"""Verify sampled designs: relax every candidate with LAMMPS and compare it to the dataset.

    nanoto verify samples.h5 --dataset dataset.h5 -o DIR

The diffusion sampler writes candidate designs per condition (``samples.h5``, format
"nanoto-samples" v1). ``verify`` evaluates each candidate with the run config of its
condition and measures, against the dataset the model was trained on (docs/dataset.md):

validity
    The occupied sites form one first-shell connected cluster holding the clamp and
    the load atoms, every clamp and load site is occupied, and the relaxation succeeded
    (no tear, no lost atoms, positive K_sym).
K / K_frontier
    K_sym of the candidate over the best K_sym the dataset reached at the candidate's
    achieved volume fraction, for the same load condition (``frontier``). Statistics
    use the valid candidates inside the frontier's volume-fraction range.
diversity
    Mean pairwise Hamming distance of the candidates of one condition, over design
    sites, as a fraction of the design sites (``mean_pairwise_hamming``).
novelty
    Hamming distance (fraction of design sites) to the nearest design of the dataset
    (any split, held-out volume fractions included: every design the model could have
    seen and more) of the same grid shape (``nearest_hamming``); novel if >=
    ``novelty_threshold``.

Outputs in ``out_dir``: ``verify.json`` (``verify`` documents the keys),
``k_vs_volume_fraction.png`` and ``candidates.png``; each is written to
``<name>.partial`` and renamed, verify.json last, so its presence means a complete verification.

Input format ``samples.h5`` (written by the sampler)::

    /                 attrs: format="nanoto-samples", format_version=1, checkpoint,
                      checkpoint_sha256, sampler, n_steps, guidance_scale, seed, ...
    /conditions/<i>   attrs: condition_json, config_json (the run config), n_design_atoms
        occupancy     (n, 4, nx, ny, nz) bool, the candidates (fixed sites occupied)
        x0            (n, 4, nx, ny, nz) float32, raw model output (not used here)

No torch here; LAMMPS is imported by the engine when the first condition is evaluated.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import h5py
import numpy as np

from . import __version__
from .config import RunConfig, build_config
from .design import components
from .design_document import file_sha256
from .errors import ConfigError, DisplacementError, GeometryError, InputError, RelaxationError
from .hdf5_files import open_readable
from .outputs import atomic_write, occupancy_sha256
from .structure import CLAMP, DESIGN, LOAD, Structure

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("nanoto")

SAMPLES_FORMAT, SAMPLES_FORMAT_VERSION = "nanoto-samples", 1
VERIFY_FORMAT, VERIFY_FORMAT_VERSION = "nanoto-verify", 1
RATIO_THRESHOLD = 0.97  # fraction_ge_0_97: K / K_frontier >= this
VF_TOLERANCE = 1e-9  # volume fractions this close to the frontier's ends count as inside
MAX_PANELS = 48  # candidates drawn in candidates.png
#: failures of one candidate's evaluation that make it invalid; any other error (EngineError: LAMMPS
#: missing or crashed) stops the verification. RelaxationError is a design failure here: the candidate
#: is unstable (K_sym not positive) or its relaxation does not converge.
CANDIDATE_ERRORS = (GeometryError, DisplacementError, RelaxationError)


class LoadKey(NamedTuple):
    """The load condition a frontier belongs to (dataset columns of the same names)."""

    load_case: str
    thickness: str
    nx: int
    ny: int
    nz: int
    load_j0: int
    load_j1: int

    def label(self) -> str:
        return (f"{self.load_case} {self.thickness} {self.nx}x{self.ny}x{self.nz}, "
                f"load y cells [{self.load_j0}, {self.load_j1})")


def load_key(config: RunConfig) -> LoadKey:
    """The load condition of a run config; the load span defaults to the whole end (0, ny)."""
    d = config.domain
    j0, j1 = d.load_span or (0, d.cells[1])
    nx, ny, nz = (int(c) for c in d.cells)
    return LoadKey(d.load_case, d.thickness, nx, ny, nz, int(j0), int(j1))


@dataclass(frozen=True)
class SampleGroup:
    """The candidates of one requested condition (``/conditions/<index>``).

    occupancy : (n, 4, nx, ny, nz) bool, one candidate per row, site order after reshape(n, -1)
    spring_k : (n,) spring-network stiffness from ``nanoto sample`` (``ml_screen``), NaN in files without it
    """

    index: int
    condition: dict[str, Any]
    config: RunConfig
    n_design_atoms: int
    occupancy: np.ndarray
    spring_k: np.ndarray | None = None

    @property
    def grid_shape(self) -> tuple[int, int, int, int]:
        return (4, *self.config.domain.cells)


@dataclass(frozen=True)
class Samples:
    """A samples file: root attributes (sampler provenance) and the condition groups in index order."""

    path: Path
    attrs: dict[str, Any]
    groups: list[SampleGroup]


def _plain(value: Any) -> Any:
    """HDF5 attribute values as JSON-friendly Python values."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_samples(path: str | Path) -> Samples:
    """Read and check a samples file (format "nanoto-samples" v1).

    Raises
    ------
    InputError
        The file is missing, not HDF5, not a samples file, or a group lacks an attribute,
        has a bad config or an occupancy whose shape is not (n, 4, *domain.cells).
    """
    path = Path(path)
    hint = "write it again with `nanoto sample`"
    with open_readable(path, "samples file", hint) as f:
        version = _plain(f.attrs.get("format_version"))
        if _plain(f.attrs.get("format")) != SAMPLES_FORMAT or version != SAMPLES_FORMAT_VERSION:
            raise InputError(f"{path} is not a {SAMPLES_FORMAT} v{SAMPLES_FORMAT_VERSION} file "
                             f"(format attribute {_plain(f.attrs.get('format'))!r}); {hint}")
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        conditions = f.get("conditions")
        if not isinstance(conditions, h5py.Group) or len(conditions) == 0:
            raise InputError(f"samples file {path} has no /conditions groups; {hint}")
        try:
            names = sorted(conditions, key=int)
            groups = [_read_group(path, int(name), conditions[name]) for name in names]
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise InputError(f"samples file {path} is damaged ({type(err).__name__}: {err}); {hint}") from None
    return Samples(path, attrs, groups)


def _read_group(path: Path, index: int, group: h5py.Group) -> SampleGroup:
    where = f"samples file {path} /conditions/{index}"
    missing = [k for k in ("condition_json", "config_json", "n_design_atoms") if k not in group.attrs]
    if missing or "occupancy" not in group:
        raise InputError(f"{where} lacks {', '.join(missing + ([] if 'occupancy' in group else ['occupancy']))}")
    condition = json.loads(_plain(group.attrs["condition_json"]))
    tree = json.loads(_plain(group.attrs["config_json"]))
    if not isinstance(condition, dict) or not isinstance(tree, dict):
        raise InputError(f"{where}: condition_json and config_json must be JSON objects")
    try:
        config = build_config(tree, f"{where} config_json")
    except ConfigError as err:
        raise InputError(str(err)) from None
    occ = np.asarray(group["occupancy"][()])
    shape = (4, *config.domain.cells)
    if occ.ndim != 5 or occ.shape[1:] != shape:
        raise InputError(f"{where}: occupancy has shape {occ.shape}, expected (n, {', '.join(map(str, shape))}) "
                         f"from domain.cells of config_json")
    if occ.dtype != bool:
        if occ.dtype.kind not in "iu" or not np.isin(occ, (0, 1)).all():
            raise InputError(f"{where}: occupancy must be bool (0/1), got {occ.dtype}")
        occ = occ.astype(bool)
    spring_k = np.asarray(group["spring_k"][()], float) if "spring_k" in group else np.full(len(occ), np.nan)
    if spring_k.shape != (len(occ),):
        raise InputError(f"{where}: spring_k has shape {spring_k.shape}, expected ({len(occ)},)")
    return SampleGroup(index, condition, config, int(group.attrs["n_design_atoms"]), occ, spring_k)


@dataclass(frozen=True)
class Frontier:
    """Best K_sym of a dataset versus achieved volume fraction, for one load condition.

    Attributes
    ----------
    target_volume_fraction : (m,) target of each point
    volume_fraction : (m,) achieved volume fraction of the best design of that target, increasing
    k_sym_ev_per_a2 : (m,) its K_sym, eV/Å²
    design_id : (m,) its dataset design id
    """

    target_volume_fraction: np.ndarray
    volume_fraction: np.ndarray
    k_sym_ev_per_a2: np.ndarray
    design_id: tuple[str, ...]

    def __call__(self, volume_fraction: float | np.ndarray) -> np.ndarray:
        """K_frontier (eV/Å²) at achieved volume fractions: linear between the points, NaN outside
        [first, last] (``VF_TOLERANCE`` at the ends) and NaN for an empty frontier. Shape of the input."""
        v = np.asarray(volume_fraction, dtype=float)
        if self.volume_fraction.size == 0:
            return np.full(v.shape, np.nan)
        lo, hi = float(self.volume_fraction[0]), float(self.volume_fraction[-1])
        inside = (v >= lo - VF_TOLERANCE) & (v <= hi + VF_TOLERANCE)
        k = np.interp(np.clip(v, lo, hi), self.volume_fraction, self.k_sym_ev_per_a2)
        return np.where(inside, k, np.nan)

    def points(self) -> list[dict[str, Any]]:
        """The frontier as JSON records."""
        return [{"target_volume_fraction": float(t), "volume_fraction": float(v), "k_sym_ev_per_a2": float(k),
                 "design_id": d}
                for t, v, k, d in zip(self.target_volume_fraction, self.volume_fraction, self.k_sym_ev_per_a2,
                                      self.design_id, strict=True)]


def frontier(table: pd.DataFrame, key: LoadKey | None = None) -> Frontier:
    """The K_sym frontier of dataset rows: per target volume fraction the design of largest K_sym.

    Parameters
    ----------
    table : pandas.DataFrame
        Dataset rows (``read_table``); needs target_volume_fraction, volume_fraction,
        k_sym_ev_per_a2, and the ``LoadKey`` columns when ``key`` is given. design_id is optional.
    key : LoadKey, optional
        Keep only rows of this load condition and grid (any filter setting, any split).

    Returns
    -------
    Frontier
        One point per target volume fraction (targets equal to 1e-9 are one target), at
        the achieved volume fraction of its best design, sorted by that fraction. Two
        targets whose best designs reach the same fraction keep the larger K_sym.
        Non-finite K_sym rows are ignored.
    """
    rows = table
    if key is not None:
        mask = np.ones(len(rows), bool)
        for name, value in key._asdict().items():
            mask &= (rows[name] == value).to_numpy()
        rows = rows[mask]
    k = rows["k_sym_ev_per_a2"].to_numpy(float)
    rows = rows[np.isfinite(k)]
    if len(rows) == 0:
        empty = np.zeros(0)
        return Frontier(empty, empty, empty, ())
    target = np.round(rows["target_volume_fraction"].to_numpy(float), 9)
    vf = rows["volume_fraction"].to_numpy(float)
    k = rows["k_sym_ev_per_a2"].to_numpy(float)
    ids = rows["design_id"].astype(str).to_numpy() if "design_id" in rows else np.array([""] * len(rows))
    best: dict[float, int] = {}
    for i, t in enumerate(target.tolist()):
        if t not in best or k[i] > k[best[t]]:
            best[t] = i
    by_vf: dict[float, int] = {}
    for i in best.values():
        v = round(float(vf[i]), 12)
        if v not in by_vf or k[i] > k[by_vf[v]]:
            by_vf[v] = i
    order = sorted(by_vf.values(), key=lambda i: vf[i])
    return Frontier(target[order], vf[order], k[order], tuple(str(ids[i]) for i in order))


def hamming_fraction(a: np.ndarray, b: np.ndarray, design_mask: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances over design sites, as a fraction of the design sites.

    Parameters
    ----------
    a : (n, ...) bool, n designs (any site layout; flattened per row)
    b : (m, ...) bool, same layout
    design_mask : (...) bool, the sites compared (one design's site layout)

    Returns
    -------
    (n, m) float in [0, 1]; NaN if there are no design sites.
    """
    mask = np.asarray(design_mask, bool).reshape(-1)
    n_design = int(mask.sum())
    x = np.asarray(a, bool).reshape(len(a), -1)[:, mask].astype(np.float64)
    y = np.asarray(b, bool).reshape(len(b), -1)[:, mask].astype(np.float64)
    if n_design == 0:
        return np.full((len(x), len(y)), np.nan)
    # |x - y| summed = x.(1 - y) + (1 - x).y, as two matrix products; counts are exact in float64
    counts = x @ (1.0 - y).T + (1.0 - x) @ y.T
    return np.rint(counts) / n_design


def mean_pairwise_hamming(occupancy: np.ndarray, design_mask: np.ndarray) -> float:
    """Diversity of one condition's candidates.

    Parameters
    ----------
    occupancy : (n, ...) bool candidates
    design_mask : (...) bool design sites

    Returns
    -------
    Mean over the n (n - 1) / 2 pairs of their Hamming distance over design sites, as a
    fraction of the design sites; NaN for fewer than two candidates.
    """
    n = len(occupancy)
    if n < 2:
        return math.nan
    d = hamming_fraction(occupancy, occupancy, design_mask)
    return float(d[np.triu_indices(n, k=1)].mean())


def nearest_hamming(candidates: np.ndarray, references: np.ndarray, design_mask: np.ndarray) -> np.ndarray:
    """Novelty: per candidate the Hamming distance (fraction of design sites) to the nearest reference.

    Parameters
    ----------
    candidates : (n, ...) bool
    references : (m, ...) bool, e.g. the training designs of the same grid shape
    design_mask : (...) bool design sites (the candidates' load case)

    Returns
    -------
    (n,) float in [0, 1]; NaN everywhere when there is no reference.
    """
    n = len(candidates)
    if len(references) == 0:
        return np.full(n, np.nan)
    out = np.empty(n)
    chunk = max(1, 2**22 // max(1, len(references)))  # bound the (chunk, m) distance block
    for start in range(0, n, chunk):
        out[start:start + chunk] = hamming_fraction(candidates[start:start + chunk], references,
                                                    design_mask).min(axis=1)
    return out


def is_novel(distance: np.ndarray, threshold: float) -> np.ndarray:
    """distance >= threshold (with 1e-12 slack for fractions like 4/80 = 0.05); False for NaN."""
    d = np.asarray(distance, float)
    return np.isfinite(d) & (d >= threshold - 1e-12)


def structural_check(structure: Structure, occupancy: np.ndarray) -> str | None:
    """Why a design is structurally invalid, or None.

    occupancy : (n_sites,) bool in site order. Invalid: a clamp or load site is empty; the
    clamp and the load atoms are not in one first-shell cluster; or atoms outside that
    cluster (more than one first-shell connected component). A load case without clamp
    and load sites (bulk) needs one component.
    """
    return _structural(structure, occupancy)[0]


def _structural(structure: Structure, occupancy: np.ndarray) -> tuple[str | None, bool]:
    """(reason or None, whether the design can still be relaxed: fixed sites occupied and a load path)."""
    kind = structure.kind
    empty_fixed = int((~occupancy[kind != DESIGN]).sum())
    if empty_fixed:
        return f"{empty_fixed} clamp/load sites are empty (fixed sites must be occupied)", False
    labels = components(structure, occupancy)
    present = np.unique(labels[occupancy])
    if present.size == 0:
        return "no atoms", False
    clamp, load = kind == CLAMP, kind == LOAD
    if clamp.any() and load.any() and np.intersect1d(labels[clamp], labels[load]).size == 0:
        return "no load path: no chain of first-neighbour bonds joins the clamp to the load", False
    if present.size > 1:
        sizes = np.bincount(labels[occupancy] - labels[occupancy].min())
        detached = int(occupancy.sum() - sizes.max())
        return f"{present.size} first-shell components: {detached} atoms are detached from the main cluster", True
    return None, True


def _json_value(value: Any) -> Any:
    """NaN and infinities as null; numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _stats(records: list[dict[str, Any]], novelty_threshold: float) -> dict[str, Any]:
    """valid_fraction, ratio statistics (valid candidates with a frontier), novel_fraction of records."""
    n = len(records)
    valid = np.array([r["valid"] for r in records], bool)
    ratios = np.array([r["ratio"] for r in records if r["valid"] and r["ratio"] is not None
                       and math.isfinite(r["ratio"])], float)
    dist = np.array([np.nan if r["nearest_train_hamming"] is None else r["nearest_train_hamming"]
                     for r in records], float)
    novel = is_novel(dist, novelty_threshold)
    known = np.isfinite(dist)
    walls = [r["wall_s"] for r in records if r["k_sym"] is not None]
    return {
        "n_candidates": n,
        "n_valid": int(valid.sum()),
        "valid_fraction": float(valid.mean()) if n else math.nan,
        "n_ratio": int(ratios.size),
        "median_k_over_frontier": float(np.median(ratios)) if ratios.size else math.nan,
        "fraction_ge_0_97": float((ratios >= RATIO_THRESHOLD).mean()) if ratios.size else math.nan,
        "novel_fraction": float(novel[known].mean()) if known.any() else math.nan,
        "novel_valid_fraction": float((novel & valid)[known].mean()) if known.any() else math.nan,
        "median_wall_s": float(np.median(walls)) if walls else math.nan,
    }


@dataclass
class _Dataset:
    table: Any  # pandas.DataFrame, read_table
    train: dict[str, np.ndarray]  # shape key -> (m, 4, nx, ny, nz) bool: every dataset design


def _read_dataset(path: Path, shapes: set[str]) -> _Dataset:
    """The dataset table and the training designs of the given grid shapes; InputError naming the file."""
    from .dataset import read_table, shape_key

    table = read_table(path)  # InputError for a missing, non-HDF5 or non-dataset file
    have = sorted(set(table["shape"]))
    for key in sorted(shapes):
        if key not in have:
            raise InputError(f"the samples have grid shape {key} but dataset {path} has none (it has "
                             f"{', '.join(have) or 'no designs'}); verify against the dataset the model was "
                             "trained on")
    train: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            for key in shapes:
                group = f[f"shapes/{key}"]
                # every design of the file, whatever its split: a training config may train on
                # val and test too, and held-out designs count as known (novelty is judged strictly)
                rows = np.arange(group["occupancy"].shape[0])
                shape = tuple(int(v) for v in group.attrs["grid_shape"])
                if shape_key(shape) != key:
                    raise ValueError(f"group {key} has grid_shape {shape}")
                # one gzip chunk per design: reading the whole array beats a fancy-indexed read
                train[key] = np.asarray(group["occupancy"][()], bool)[rows].reshape(rows.size, *shape)
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"dataset {path} is damaged ({type(err).__name__}: {err}); rebuild it with "
                         f"`nanoto dataset build CAMPAIGN -o {path}`") from None
    return _Dataset(table, train)


def _evaluate_group(group: SampleGroup, bar: Any) -> tuple[list[dict[str, Any]], np.ndarray, float]:
    """K_sym, validity and wall time of every candidate of a group; also the design mask (n_sites,).

    Returns (records, design_mask, seconds to open the problem). EngineError propagates.
    """
    from .evaluate import evaluate, open_problem

    t0 = time.perf_counter()
    problem = open_problem(group.config)
    open_s = time.perf_counter() - t0
    structure = problem.structure
    design = structure.kind == DESIGN
    n_design = int(design.sum())
    records: list[dict[str, Any]] = []
    try:
        for i, cand in enumerate(group.occupancy):
            occ = np.ascontiguousarray(cand.reshape(-1))
            reason, relaxable = _structural(structure, occ)
            k_sym, wall = None, 0.0
            if relaxable:  # detached atoms still give a K_sym (reported; the candidate stays invalid)
                t1 = time.perf_counter()
                try:
                    k_sym = float(evaluate(problem, occ).k_sym_ev_per_a2)
                except CANDIDATE_ERRORS as err:
                    failure = f"{type(err).__name__}: {err}"
                    reason = failure if reason is None else f"{reason}; {failure}"
                wall = time.perf_counter() - t1
            n_occ = int(occ[design].sum())
            records.append({
                "group": group.index, "index": i, "k_sym": k_sym,
                "volume_fraction": n_occ / n_design if n_design else math.nan,
                "n_design_atoms": n_occ, "n_design_atoms_matches": n_occ == group.n_design_atoms,
                "valid": reason is None, "reason": reason, "wall_s": wall,
                "occupancy_sha256": occupancy_sha256(occ),
                "spring_k": float(group.spring_k[i]) if group.spring_k is not None else math.nan,
            })
            bar.update(1)
    finally:
        problem.engine.close()
    return records, design, open_s


def verify(samples_path: str | Path, dataset_path: str | Path, out_dir: str | Path, *,
           novelty_threshold: float = 0.05, progress: bool | None = None) -> dict[str, Any]:
    """Evaluate sampled candidates with LAMMPS and score them against a dataset.

    Parameters
    ----------
    samples_path : samples file (format "nanoto-samples" v1, module docstring)
    dataset_path : the dataset (docs/dataset.md) the model was trained on: its frontier and
        training designs are the references
    out_dir : folder for verify.json, k_vs_volume_fraction.png, candidates.png (created)
    novelty_threshold : a candidate is novel if its nearest training design differs on at
        least this fraction of the design sites
    progress : tqdm bar over candidates on stderr; default: when stderr is a terminal

    Returns
    -------
    dict
        What verify.json holds. Summary keys (over all candidates):

        - ``n_candidates``, ``n_valid``, ``valid_fraction``
        - ``n_ratio``: valid candidates inside their frontier's volume-fraction range;
          ``median_k_over_frontier`` and ``fraction_ge_0_97`` (K / K_frontier >= 0.97)
          are over these
        - ``mean_pairwise_hamming``: mean over conditions with >= 2 candidates of the
          condition's mean pairwise Hamming fraction
        - ``novel_fraction``: candidates with nearest_train_hamming >= novelty_threshold,
          over all candidates; ``novel_valid_fraction``: valid and novel
        - ``median_wall_s``: median wall time of one candidate's LAMMPS evaluation (s),
          over candidates evaluated successfully; ``total_wall_s``
        - ``samples_path``, ``samples_sha256``, ``samples_attrs`` (sampler provenance),
          ``dataset_path``, ``dataset_sha256``, ``novelty_threshold``, ``ratio_threshold``
        - ``conditions``: per group the same statistics plus ``group``, ``condition``,
          ``load`` (LoadKey fields), ``target_volume_fraction``, ``n_design_atoms``
          (requested), ``n_design_sites``, ``frontier`` (points), ``open_s``
        - ``candidates``: per candidate ``group``, ``index``, ``k_sym`` (eV/Å², null if the
          evaluation failed), ``volume_fraction`` (occupied design sites / design sites),
          ``n_design_atoms``, ``n_design_atoms_matches`` (equals the group's attribute),
          ``k_frontier`` (eV/Å², null outside the frontier), ``ratio``, ``valid``,
          ``reason`` (null if valid), ``nearest_train_hamming``, ``novel``, ``wall_s``,
          ``occupancy_sha256``, ``spring_k`` (the screening score of ``nanoto sample``, null
          if the file has none)

        NaN is written as null.

    Raises
    ------
    InputError
        Missing or damaged samples or dataset file (the message names it), or a grid
        shape of the samples that the dataset does not have. Raised before any LAMMPS run.
    EngineError
        LAMMPS is missing or crashed. A candidate that has no load path, tears, or
        relaxes to a non-positive K_sym is only invalid.
    """
    from tqdm import tqdm

    from .dataset import shape_key

    samples_path, dataset_path, out = Path(samples_path), Path(dataset_path), Path(out_dir)
    t_start = time.perf_counter()
    samples = read_samples(samples_path)
    dataset = _read_dataset(dataset_path, {shape_key(g.grid_shape) for g in samples.groups})
    out.mkdir(parents=True, exist_ok=True)
    n_total = sum(len(g.occupancy) for g in samples.groups)
    log.info("verify: %d candidates in %d conditions from %s, against %s", n_total, len(samples.groups),
             samples_path, dataset_path)
    on = sys.stderr.isatty() if progress is None else progress
    records: list[dict[str, Any]] = []
    conditions: list[dict[str, Any]] = []
    frontiers: dict[LoadKey, Frontier] = {}
    with tqdm(total=n_total, desc="nanoto verify", unit="candidate", disable=not on) as bar:
        for g in samples.groups:
            key = load_key(g.config)
            if key not in frontiers:
                frontiers[key] = frontier(dataset.table, key)
                if frontiers[key].volume_fraction.size == 0:
                    log.warning("verify: dataset %s has no design of load condition %s: K / K_frontier is "
                                "undefined for its candidates", dataset_path, key.label())
            front = frontiers[key]
            log.info("verify: condition %d (%d of %d) %s: %d candidates", g.index, len(conditions) + 1,
                     len(samples.groups), json.dumps(g.condition, sort_keys=True), len(g.occupancy))
            if len(g.occupancy):
                group_records, design, open_s = _evaluate_group(g, bar)
            else:
                group_records, design, open_s = [], np.zeros(int(np.prod(g.grid_shape)), bool), 0.0
            vf = np.array([r["volume_fraction"] for r in group_records], float)
            k_front = front(vf)
            dist = nearest_hamming(g.occupancy, dataset.train[shape_key(g.grid_shape)], design)
            novel = is_novel(dist, novelty_threshold)
            for r, kf, d, nv in zip(group_records, k_front, dist, novel, strict=True):
                r["k_frontier"] = float(kf)
                r["ratio"] = r["k_sym"] / float(kf) if r["k_sym"] is not None and math.isfinite(kf) else math.nan
                r["nearest_train_hamming"] = float(d)
                r["novel"] = bool(nv)
            stats = _stats(group_records, novelty_threshold)
            mismatched = sum(not r["n_design_atoms_matches"] for r in group_records)
            if mismatched:
                log.warning("verify: condition %d: %d candidates do not have the requested %d design atoms",
                            g.index, mismatched, g.n_design_atoms)
            conditions.append({
                "group": g.index, "condition": g.condition, "load": key._asdict(),
                "target_volume_fraction": g.config.optimizer.volume_fraction,
                "n_design_atoms": g.n_design_atoms, "n_design_sites": int(design.sum()), **stats,
                "mean_pairwise_hamming": mean_pairwise_hamming(g.occupancy, design.reshape(g.grid_shape)),
                "frontier": front.points(), "open_s": open_s,
            })
            log.info("verify: condition %d: %d/%d valid, median K/K_frontier %.4g, novel %.3g",
                     g.index, stats["n_valid"], stats["n_candidates"], stats["median_k_over_frontier"],
                     stats["novel_fraction"])
            records.extend(group_records)
    diversity = [c["mean_pairwise_hamming"] for c in conditions if math.isfinite(c["mean_pairwise_hamming"])]
    report = {
        "format": VERIFY_FORMAT, "format_version": VERIFY_FORMAT_VERSION, "nanoto_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "samples_path": str(samples_path.resolve()), "samples_sha256": file_sha256(samples_path),
        "samples_attrs": samples.attrs,
        "dataset_path": str(dataset_path.resolve()), "dataset_sha256": file_sha256(dataset_path),
        "novelty_threshold": novelty_threshold, "ratio_threshold": RATIO_THRESHOLD,
        **_stats(records, novelty_threshold),
        "mean_pairwise_hamming": float(np.mean(diversity)) if diversity else math.nan,
        "total_wall_s": time.perf_counter() - t_start,
        "plots": ["k_vs_volume_fraction.png", "candidates.png"],
        "conditions": conditions, "candidates": records,
    }
    report = _json_value(report)
    plot_k_vs_volume_fraction(out / "k_vs_volume_fraction.png", dataset.table, samples, records, frontiers)
    plot_candidates(out / "candidates.png", samples, records)
    atomic_write(out / "verify.json", lambda p: p.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n"))
    log.info("verify: %d/%d valid, median K/K_frontier %s, wrote %s", report["n_valid"], report["n_candidates"],
             report["median_k_over_frontier"], out / "verify.json")
    return report


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_k_vs_volume_fraction(path: Path, table: pd.DataFrame, samples: Samples, records: list[dict[str, Any]],
                              frontiers: dict[LoadKey, Frontier]) -> Path:
    """K_sym (eV/Å²) versus volume fraction, one panel per load condition of the samples.

    Dataset designs of that condition are small grey points, its frontier a black line,
    valid candidates green circles, invalid ones red crosses (those whose evaluation failed
    have no K and are only counted in the legend). ``records`` are verify's candidates.
    """
    plt = _figure()
    keys = list(frontiers)
    group_key = {g.index: load_key(g.config) for g in samples.groups}
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), constrained_layout=True, squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        mask = np.ones(len(table), bool)
        for name, value in key._asdict().items():
            mask &= (table[name] == value).to_numpy()
        rows = table[mask]
        ax.scatter(rows["volume_fraction"], rows["k_sym_ev_per_a2"], s=8, c="0.6", label=f"dataset ({len(rows)})")
        front = frontiers[key]
        if front.volume_fraction.size:
            ax.plot(front.volume_fraction, front.k_sym_ev_per_a2, "k.-", lw=1.2, label="frontier")
        mine = [r for r in records if group_key[r["group"]] == key]
        for valid, style, color, name in ((True, "o", "tab:green", "valid"), (False, "x", "tab:red", "invalid")):
            sel = [r for r in mine if r["valid"] == valid]
            with_k = [r for r in sel if r["k_sym"] is not None]
            label = f"{name} candidates ({len(sel)}" + (f", {len(sel) - len(with_k)} without K)" if
                                                           len(with_k) < len(sel) else ")")
            ax.scatter([r["volume_fraction"] for r in with_k], [r["k_sym"] for r in with_k], marker=style,
                       s=28, color=color, label=label, alpha=0.8)
        ax.set_xlabel("volume fraction of design sites")
        ax.set_ylabel("K_sym (eV/Å²)")
        ax.set_title(key.label(), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return path


def projection_image(structure_kind: np.ndarray, occupancy: np.ndarray,
                     grid_shape: tuple[int, int, int, int]) -> tuple[np.ndarray, int]:
    """An RGB picture of a design seen along its thinnest axis (z on ties).

    Parameters
    ----------
    structure_kind : (n_sites,) DESIGN / CLAMP / LOAD per site, site order
    occupancy : (n_sites,) bool
    grid_shape : (4, nx, ny, nz)

    Returns
    -------
    image (rows, cols, 3) float in [0, 1] with one pixel per half cell (each FCC site
    projects onto one of four positions per cell), rows along the second in-plane
    axis; and the projection axis (0, 1, 2). Clamp columns blue, load columns red,
    design columns grey by their occupied fraction (white empty, dark full); for nz == 1
    along z every pixel is exactly one site.
    """
    from .lattice import FCC_BASIS

    cells = grid_shape[1:]
    axis = min((2, 1, 0), key=lambda a: cells[a])
    a, b = [i for i in range(3) if i != axis]
    idx = np.indices(grid_shape).reshape(4, -1)
    basis = FCC_BASIS[idx[0]]
    px = 2 * idx[1 + a] + (basis[:, a] > 0)
    py = 2 * idx[1 + b] + (basis[:, b] > 0)
    shape = (2 * cells[b], 2 * cells[a])
    kind = np.asarray(structure_kind).reshape(-1)
    occ = np.asarray(occupancy, bool).reshape(-1)

    def count(weights: np.ndarray) -> np.ndarray:
        out = np.zeros(shape)
        np.add.at(out, (py, px), weights.astype(float))
        return out

    n_all = count(np.ones_like(occ))
    n_design = count(kind == DESIGN)
    occupied = count(occ & (kind == DESIGN)) / np.maximum(n_design, 1)
    grey = 1.0 - 0.8 * occupied
    image = np.repeat(grey[:, :, None], 3, axis=2)
    clamp, load = count(kind == CLAMP) == n_all, count(kind == LOAD) == n_all
    image[clamp] = (0.12, 0.47, 0.71)
    image[load] = (0.84, 0.15, 0.16)
    return image, axis


def plot_candidates(path: Path, samples: Samples, records: list[dict[str, Any]],
                    max_panels: int = MAX_PANELS) -> Path:
    """An image grid of candidates (``projection_image``), titled with K / K_frontier or invalid.

    At most ``max_panels`` candidates, taken in turn from each condition group.
    """
    from .load_cases import build_structure

    plt = _figure()
    by_group: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_group.setdefault(r["group"], []).append(r)
    chosen: list[dict[str, Any]] = []
    queues = [list(v) for v in by_group.values()]
    while len(chosen) < max_panels and any(queues):
        for q in queues:
            if q and len(chosen) < max_panels:
                chosen.append(q.pop(0))
    chosen.sort(key=lambda r: (r["group"], r["index"]))
    groups = {g.index: g for g in samples.groups}
    kinds = {i: build_structure(g.config.domain, 1.0).kind for i, g in groups.items() if i in by_group}
    pictures = [projection_image(kinds[r["group"]], groups[r["group"]].occupancy[r["index"]],
                                 groups[r["group"]].grid_shape) for r in chosen]
    n = max(1, len(chosen))
    cols = min(n, 6)
    rows = math.ceil(n / cols)
    aspect = pictures[0][0].shape[0] / pictures[0][0].shape[1] if pictures else 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, (2.4 * aspect + 0.3) * rows + 0.4),
                             squeeze=False, constrained_layout=True)
    for ax in axes.ravel():
        ax.set_axis_off()
    axis = pictures[0][1] if pictures else 2
    for ax, r, (image, _) in zip(axes.ravel(), chosen, pictures, strict=False):
        ax.imshow(image, origin="lower", interpolation="nearest")
        if r["valid"]:
            ratio = r["ratio"]
            text = f"K/Kf {ratio:.3f}" if ratio is not None and math.isfinite(ratio) else "K/Kf n/a"
        else:
            text = "invalid: " + str(r["reason"]).split(":")[0][:24]
        ax.set_title(f"c{r['group']}#{r['index']}: {text}", fontsize=8, color="k" if r["valid"] else "tab:red")
    flat = all(g.grid_shape[3] == 1 for g in samples.groups)
    view = "x-y picture" if flat else f"projection along {'xyz'[axis]}"
    fig.suptitle(f"{len(chosen)} of {len(records)} candidates ({view}; blue clamp, red load, grey atoms)",
                 fontsize=9)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return path
