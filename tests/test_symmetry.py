"""The y-mirror glide: a lattice symmetry of thickness-periodic blocks that maps a load patch
onto its mirror image and leaves K_sym unchanged (real LAMMPS)."""

from __future__ import annotations

import numpy as np
import pytest

from nanoto_driver.config import load_config
from nanoto_driver.dataset import read_table
from nanoto_driver.evaluate import open_problem
from nanoto_driver.lattice import FccLattice
from nanoto_driver.load_cases import build_structure
from nanoto_driver.stiffness import symmetric_curvature
from nanoto_driver.symmetry import apply, image_sites, mirrored_span, y_glide

from .conftest import ROOT

SWEEP_BASE = ["domain.load_case=cantilever", "domain.cells=[20, 12, 1]", "domain.thickness=periodic"]


def _structure(span):
    config = load_config(None, [*SWEEP_BASE, f"domain.load_span={list(span) if span else 'null'}"])
    return build_structure(config.domain, 4.05)


@pytest.mark.parametrize("cells", [(20, 12, 1), (5, 4, 2)])
def test_the_glide_maps_sites_onto_mirrored_and_shifted_positions(cells):
    lattice = FccLattice(cells, 4.05)
    periodic = (False, False, True)
    image = y_glide(lattice, periodic)
    assert np.array_equal(np.sort(image), np.arange(lattice.n_sites))  # a permutation
    x, x_img = lattice.positions_a, lattice.positions_a[image]
    ny_len, nz_len = cells[1] * 4.05, cells[2] * 4.05
    assert np.allclose(x_img[:, 0], x[:, 0])
    assert np.allclose(x_img[:, 1], ny_len - 0.5 * 4.05 - x[:, 1])
    dz = np.mod(x_img[:, 2] - x[:, 2] - 0.5 * 4.05, nz_len)  # z shifted by a0/2, modulo the period
    assert np.all(np.minimum(dz, nz_len - dz) < 1e-9)


def test_the_mirror_alone_is_not_a_symmetry_and_the_glide_needs_periodic_z():
    lattice = FccLattice((20, 12, 1), 4.05)
    with pytest.raises(ValueError, match="not a symmetry"):
        image_sites(lattice, 1, (0.0, 0.0, 0.0), (False, False, True))
    with pytest.raises(ValueError, match="periodic z"):
        y_glide(lattice, (False, False, False))


@pytest.mark.parametrize("span", [None, (9, 12), (6, 9), (5, 7), (3, 6), (0, 3)])
def test_the_glide_maps_clamp_and_load_onto_the_mirrored_patch(span):
    s = _structure(span)
    image = y_glide(s.lattice, s.periodic)
    mirrored = _structure(mirrored_span(span, 12) if span else None)
    assert np.array_equal(apply(image, s.kind), mirrored.kind)


@pytest.mark.lammps
def test_a_training_design_and_its_image_have_the_same_k_sym(lammps_ok):
    """The [9, 12) design of the training set closest to V* = 0.5, and its glide image
    relaxed as a [0, 3) design: the same K_sym (the images are isometric)."""
    import h5py

    path = ROOT / "data" / "train_cantilever.h5"
    table = read_table(path)
    rows = table[(table["load_j0"] == 9) & (table["load_j1"] == 12) & table["converged"]]
    row = rows.iloc[int(np.argmin(np.abs(rows["target_volume_fraction"].to_numpy() - 0.5)))]
    with h5py.File(path, "r") as f:
        group = f["shapes/4x20x12x1"]
        ids = group["table/design_id"].asstr()[()]
        occ = group["occupancy"][int(np.flatnonzero(ids == row["design_id"])[0])].reshape(-1).astype(bool)
    ks = []
    for span, design in (((9, 12), occ), ((0, 3), None)):
        problem = open_problem(load_config(None, [*SWEEP_BASE, f"domain.load_span={list(span)}"]))
        try:
            s = problem.structure
            if design is None:
                design = apply(y_glide(s.lattice, s.periodic), occ)
            ks.append(symmetric_curvature(problem.engine, s, design, problem.delta_a()).k_sym_ev_per_a2)
        finally:
            problem.engine.close()
    assert ks[1] == pytest.approx(ks[0], rel=1e-9)  # measured 9e-11
    assert ks[0] == pytest.approx(row["k_sym_ev_per_a2"], rel=1e-3)  # the dataset's own figure (warm-started there)


def test_glide_images_of_the_training_set_are_designs_of_the_mirrored_patch():
    """Every image keeps its atom count and has exactly the fixed sites of the mirrored
    patch's run config; images of whole-end designs stay whole-end designs."""
    from nanoto_driver.ml_data import glide_images, site_grids, training_arrays

    arrays, rows, _ = training_arrays(ROOT / "data" / "train_cantilever.h5", None,
                                      ["target_volume_fraction", "load_j0", "load_j1"], [], ["train"])
    images, image_rows = glide_images(arrays, rows)
    assert image_rows["augmented"].all() and len(image_rows) == len(rows)
    assert np.array_equal(images["occupancy"].sum(axis=(1, 2, 3, 4)), arrays["occupancy"].sum(axis=(1, 2, 3, 4)))
    for span in [(0, 12), (9, 12), (5, 7)]:
        pick = np.flatnonzero((rows["load_j0"] == span[0]).to_numpy() & (rows["load_j1"] == span[1]).to_numpy())[0]
        mirrored = mirrored_span(span, 12)
        assert (image_rows["load_j0"][pick], image_rows["load_j1"][pick]) == mirrored
        config = load_config(None, [*SWEEP_BASE, f"domain.load_span={list(mirrored)}"])
        grids = site_grids(config)
        assert np.array_equal(images["fixed_mask"][pick].astype(bool), grids["fixed_mask"])
        assert np.array_equal(images["design_mask"][pick].astype(bool), grids["design_mask"])
        fixed = images["fixed_mask"][pick].astype(bool)
        assert images["occupancy"][pick][fixed].all()  # clamp and load sites stay occupied
