"""Validated run configuration (YAML in, frozen pydantic models out).

Every section forbids unknown keys, so a typo in a YAML file or a ``--set``
override is an error that names the key and lists the valid ones.
Units are LAMMPS ``metal``: Å, eV, eV/Å.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PotentialConfig(_Section):
    file: str = Field("Al_mm.eam.fs", description="path, or the name of a potential shipped with LAMMPS")
    element: str = "Al"
    pair_style: Literal["auto", "eam", "eam/alloy", "eam/fs"] = "auto"


class DomainConfig(_Section):
    load_case: Literal["cantilever", "pillar", "bulk"] = "cantilever"
    cells: tuple[int, int, int] = Field((12, 6, 2), description="nx, ny, nz conventional cells")
    thickness: Literal["periodic", "finite"] = "periodic"
    clamp_cells: int = Field(2, ge=1, description="clamp layers (cells) at x = 0 or z = 0")
    load_cells: int = Field(1, ge=1, description="load layers (cells) at the free end")
    load_span: tuple[int, int] | None = Field(
        None, description="cantilever: y cells [j0, j1) of the load patch on the free end; null: the whole end")
    orientation: Literal["100"] = Field("100", description="crystal frame x=[100] y=[010] z=[001]")

    @model_validator(mode="after")
    def _check_cells(self) -> DomainConfig:
        if min(self.cells) < 1:
            raise ValueError(f"cells must be positive integers, got {list(self.cells)}")
        axis = {"cantilever": 0, "pillar": 2}.get(self.load_case)
        if axis is not None and self.cells[axis] < self.clamp_cells + self.load_cells + 1:
            raise ValueError(
                f"{self.load_case}: cells[{axis}] = {self.cells[axis]} leaves no design region "
                f"between {self.clamp_cells} clamp and {self.load_cells} load cells; make the "
                "domain longer or the clamp thinner"
            )
        if self.load_span is not None:
            j0, j1 = self.load_span
            if self.load_case != "cantilever":
                raise ValueError(f"load_span is for the cantilever only (load_case is {self.load_case})")
            if not 0 <= j0 < j1 <= self.cells[1]:
                raise ValueError(f"load_span [{j0}, {j1}) must satisfy 0 <= j0 < j1 <= cells[1] = {self.cells[1]}")
        return self


class LoadConfig(_Section):
    strain: float = Field(1.0e-3, gt=0, description="δ as a nominal strain of the reference length")
    delta_a: float | None = Field(None, gt=0, description="δ in Å; overrides strain")


class DesignConfig(_Section):
    remove_cells: list[tuple[int, int, int, int, int, int]] = Field(
        default_factory=list,
        description="half-open cell boxes [i0, i1, j0, j1, k0, k1] whose design sites are emptied",
    )
    occupancy_file: str | None = Field(None, description=".npy of bools, shape (n_sites,) or (4, nx, ny, nz)")


class MinimizerConfig(_Section):
    style: Literal["cg", "sd", "hftn", "fire"] = "cg"
    ftol_ev_per_a: float = Field(1.0e-8, gt=0)
    norm: Literal["two", "max", "inf"] = Field(
        "two", description="the force norm ftol_ev_per_a bounds (LAMMPS min_modify norm): two, the 2-norm "
        "of the whole force vector (grows as √atoms); max, the largest force on an atom; inf, the largest "
        "component. max keeps one tolerance meaningful from 10^3 to 10^6 atoms (docs/performance.md)")
    maxiter: int = Field(100000, ge=1)
    maxeval: int = Field(1000000, ge=1)
    dmax_a: float = Field(
        0.1, gt=0, le=2.0, description="largest move of any atom in the first trial step of a line search "
        "(LAMMPS min_modify dmax, Å; its default 0.1). Larger lets atoms that reconstruct a thin part "
        "travel in fewer iterations (docs/performance.md)")
    accept_fmax_ev_per_a: float = Field(
        1.0e-4, gt=0, description="a minimization that ends on a line-search stop (its numerical floor, "
        "typical for large systems) is accepted if no force component exceeds this (eV/Å)"
    )
    max_nonaffine_a: float = Field(
        1.0, gt=0, description="largest allowed change of a first-neighbour bond vector in a relaxation (Å)"
    )
    coarse_every: int = Field(
        0, ge=0, description="0: plain CG. N > 0: every N CG iterations, move the atoms along the "
        "spring-network response to the residual forces (a two-level relaxation whose force evaluations "
        "do not grow with the length of the structure; lammps engine, group loading; docs/optimizer.md)")
    energy_gauge: bool = Field(
        False, description="lammps engine, one-element eam/alloy or eam/fs: run LAMMPS on a gauge-shifted "
        "copy of the potential (F + kρ + c, φ - 2kf: the same forces and energy differences, each atom's "
        "energy near zero), so that the round-off of LAMMPS' energy sum, which grows as atoms^1.5, no "
        "longer stops CG's line search above the force tolerance (nanoto_driver/eam_gauge.py)")
    local_hops: int = Field(
        0, ge=0, le=40, description="0: off. N > 0: before u = 0 of a warm-started design, relax the atoms "
        "within N first-neighbour hops of the sites the BESO step changed, in a system of their own with a "
        "fixed shell two potential cutoffs thick; the whole design then relaxes from there "
        "(nanoto_driver/local_relax.py, docs/optimizer.md)")
    local_max_share: float = Field(
        0.25, gt=0, le=1, description="skip the local relaxation of an iteration when its region and shell "
        "hold more than this share of the design's atoms: there it costs about what it saves (35-50 % at "
        "10^4 sites). At 10^5 sites and more set 0.5: early parts hold 12-20 % and halve the iteration, "
        "later ones 33-45 % and took iteration 4 from 8,537 force evaluations to 1,370 (docs/performance.md)")
    polish_ftol_ev_per_a: float = Field(
        0.0, ge=0, description="0: off. > 0: relax u = 0 of the whole design to this looser force "
        "tolerance first (in the norm of `norm`), then the atoms with a first-neighbour bond changed by "
        "more than 1 Å from the lattice and polish_hops hops around them in a system of their own with a "
        "fixed shell (local_max_share applies), then the whole design to ftol_ev_per_a: the tail of a "
        "relaxation in which thin parts reconstruct sits on those few atoms (nanoto_driver/local_relax.py, "
        "docs/optimizer.md)")
    secant_pairs: int = Field(
        0, ge=0, le=16, description="two-level relaxation (coarse_every > 0): 0: off. N > 0: each correction "
        "also steps along the last N moves between the state's corrections, with their Hessian products from "
        "the force differences (no extra force evaluation): the slow modes of a tail where thin parts "
        "reconstruct (1.83x fewer force evaluations on a late 10^5-site design; docs/optimizer.md)")
    polish_hops: int = Field(
        3, ge=0, le=40, description="first-neighbour hops around the moved atoms that the tail polish "
        "relaxes with them (polish_ftol_ev_per_a)")
    basin_restarts: int = Field(
        2, ge=0, description="when a displaced state leaves the basin of the u = 0 relaxation (a bond "
        "changes by more than max_nonaffine_a, or E(+δ) + E(-δ) - 2 E(0) is not positive), relax the batch "
        "again from the basin it fell into, at most "
        "this often (docs/optimizer.md)")

    @model_validator(mode="after")
    def _check_polish(self) -> MinimizerConfig:
        if 0 < self.polish_ftol_ev_per_a <= self.ftol_ev_per_a:
            raise ValueError(
                f"polish_ftol_ev_per_a = {self.polish_ftol_ev_per_a:g} is not looser than ftol_ev_per_a = "
                f"{self.ftol_ev_per_a:g}: the tail polish relaxes to it first, then to ftol_ev_per_a; set it "
                "larger (e.g. 100 x ftol_ev_per_a) or 0 (off)")
        if self.secant_pairs and not self.coarse_every:
            raise ValueError(f"secant_pairs = {self.secant_pairs} needs the two-level relaxation: set "
                             "coarse_every (e.g. 8) or secant_pairs 0")
        return self


class FilterConfig(_Section):
    shells: int = Field(3, ge=0, le=6, description="FCC neighbour shells in the kernel (0 = no filter)")
    scheme: Literal["hat", "uniform", "gaussian"] = "hat"
    radius_a0: float = Field(1.3, gt=0, description="hat: zero-weight radius; gaussian: 2 sigma (units of a0)")
    history: bool = Field(True, description="average with the previous iteration's sensitivities")


class OptimizerConfig(_Section):
    volume_fraction: float = Field(0.5, gt=0, lt=1, description="target fraction of design sites occupied")
    evolution_rate: float = Field(0.02, gt=0, lt=1, description="ER: fraction of atoms removed per iteration")
    addition_ratio: float = Field(0.02, ge=0, lt=1, description="AR_max: cap on additions per iteration")
    min_neighbors: int = Field(3, ge=0, le=12, description="c_min: prune design atoms with fewer neighbours")
    window: int = Field(5, ge=1, description="Nw: iterations per convergence window")
    tolerance: float = Field(1.0e-3, gt=0, description="τ: relative change of ΣK between windows")
    max_iterations: int = Field(200, ge=1)
    warm_start: bool = Field(True, description="start E(0) from the previous relaxed positions")


class EngineConfig(_Section):
    name: str = "lammps"
    ranks: int = Field(1, ge=1, description="lammps-exe: MPI ranks for mpiexec")
    lmp_command: str | None = Field(None, description="lammps-exe: LAMMPS executable (default: lmp)")
    mpiexec: str = "mpiexec"
    accelerator: Literal["none", "opt"] = "none"
    empty_sites: Literal["delete", "type"] = Field(
        "delete", description="empty sites deleted from LAMMPS (default, measured faster) or kept "
        "as type-4 atoms excluded from every pair (docs/performance.md)")
    work_dir: str | None = Field(
        None, description="lammps-exe: keep the data file, input script, dumps and log here"
    )


class RunConfig(_Section):
    name: str = "run"
    potential: PotentialConfig = PotentialConfig()
    domain: DomainConfig = DomainConfig()
    load: LoadConfig = LoadConfig()
    design: DesignConfig = DesignConfig()
    minimizer: MinimizerConfig = MinimizerConfig()
    filter: FilterConfig = FilterConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    engine: EngineConfig = EngineConfig()
    base_dir: str = Field(".", description="set by the loader: folder of the YAML file")


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; values are parsed as YAML."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got '{pair}'")
        set_dotted(tree, key.strip(), _parse_value(text))
    return tree


def _parse_value(text: str) -> Any:
    """YAML scalar or list; '1e-3' is a number too (YAML 1.1 would keep it a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def merge_trees(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_trees(out[key], value)
        else:
            out[key] = value
    return out


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        parent = _model_at(RunConfig, first["loc"][:-1])
        valid = ", ".join(sorted(k for k in parent.model_fields if k != "base_dir")) if parent else ""
        return f"{source}: unknown key '{where}' (valid keys here: {valid})"
    return f"{source}: {where}: {first['msg']}"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return None
        model = field.annotation
    return model


def canonical_json(config: RunConfig) -> str:
    """Sorted, compact JSON of what defines the result: a run's identity.

    Leaves out the loader's base_dir and the engine section: engines and rank counts
    agree to round-off, so a run may resume on another engine or rank count.
    """
    import json

    data = config.model_dump(mode="json", exclude={"base_dir", "engine"})
    for section, key, default in ADDED_LATER:  # at their default, runs made before they existed keep their id
        if data[section][key] == default:
            del data[section][key]
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


#: keys added after run files and campaigns existed: left out of ``canonical_json`` at their default
ADDED_LATER = (("minimizer", "norm", "two"), ("minimizer", "basin_restarts", 2), ("minimizer", "coarse_every", 0),
               ("minimizer", "dmax_a", 0.1), ("minimizer", "energy_gauge", False), ("minimizer", "local_hops", 0),
               ("minimizer", "local_max_share", 0.25), ("minimizer", "polish_ftol_ev_per_a", 0.0),
               ("minimizer", "polish_hops", 3), ("minimizer", "secant_pairs", 0))


def config_hash(config: RunConfig) -> str:
    """sha256 of ``canonical_json``: equal configs, equal hash."""
    import hashlib

    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def build_config(tree: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a nested dict; raise ConfigError naming the first bad key."""
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict[str, Any]:
    """The YAML mapping in ``path`` (empty file: {}) with ``base_dir`` set to its folder.

    Errors name the file: missing, not YAML, or not a mapping (``expected`` says what should be there).
    """
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected {expected}")
    tree = dict(loaded or {})
    tree["base_dir"] = str(path.resolve().parent)
    return tree


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults when ``path`` is None) and apply ``--set`` pairs."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        tree = read_yaml_mapping(path, "config", "a mapping of sections at the top level")
    tree = merge_trees(tree, parse_overrides(overrides or []))
    return build_config(tree, source)
