"""Load cases: clamp / load / design site sets, periodicity, geometry errors."""

import numpy as np
import pytest

from nanoto_driver.config import DesignConfig, DomainConfig
from nanoto_driver.design import check_load_path, initial_occupancy
from nanoto_driver.errors import GeometryError
from nanoto_driver.load_cases import build_structure
from nanoto_driver.structure import CLAMP, DESIGN, LOAD


def test_cantilever_sets():
    s = build_structure(DomainConfig(load_case="cantilever", cells=(10, 4, 2), thickness="periodic",
                                     clamp_cells=2, load_cells=1), 4.05)
    i = s.lattice.index[:, 1]
    assert np.all(s.kind[i < 2] == CLAMP) and np.all(s.kind[i == 9] == LOAD)
    assert np.all(s.kind[(i >= 2) & (i < 9)] == DESIGN)
    assert s.periodic == (False, False, True)
    assert s.boundary() == "s s p"
    np.testing.assert_allclose(s.load_direction, [0, -1, 0])
    lo, hi = s.lattice.box_a()
    assert hi[2] - lo[2] == pytest.approx(2 * 4.05)  # exactly nz * a0 along the periodic axis


def test_finite_cantilever_and_pillar():
    s = build_structure(DomainConfig(load_case="cantilever", cells=(10, 4, 2), thickness="finite"), 4.05)
    assert s.periodic == (False, False, False)
    p = build_structure(DomainConfig(load_case="pillar", cells=(3, 3, 8)), 4.05)
    k = p.lattice.index[:, 3]
    assert np.all(p.kind[k < 2] == CLAMP) and np.all(p.kind[k == 7] == LOAD)
    np.testing.assert_allclose(p.load_direction, [0, 0, -1])


def test_bulk_is_fully_periodic_box_loading():
    b = build_structure(DomainConfig(load_case="bulk", cells=(3, 3, 3)), 4.05)
    assert b.periodic == (True, True, True) and b.load_mode == "box" and np.all(b.kind == DESIGN)


def test_clamp_thinner_than_cutoff_is_refused():
    with pytest.raises(GeometryError, match="clamp_cells >= 2"):
        build_structure(DomainConfig(cells=(10, 4, 2), clamp_cells=1), 4.05, cutoff_a=6.5)


def test_remove_cells_and_load_path():
    s = build_structure(DomainConfig(cells=(10, 4, 2)), 4.05)
    occ = initial_occupancy(DesignConfig(remove_cells=[(4, 6, 1, 3, 0, 2)]), s)
    assert (~occ).sum() == 4 * 2 * 2 * 2
    check_load_path(s, occ)  # a hole, still connected
    cut = initial_occupancy(DesignConfig(remove_cells=[(5, 6, 0, 4, 0, 2)]), s)
    with pytest.raises(GeometryError, match="no load path"):
        check_load_path(s, cut)


def test_fixed_sites_are_never_removed():
    s = build_structure(DomainConfig(cells=(10, 4, 2)), 4.05)
    occ = initial_occupancy(DesignConfig(remove_cells=[(0, 10, 0, 4, 0, 2)]), s)
    assert np.array_equal(occ, s.fixed)


def test_occupancy_file_shapes(tmp_path):
    s = build_structure(DomainConfig(cells=(10, 4, 2)), 4.05)
    grid = np.ones(s.lattice.grid_shape, bool)
    grid[0, 5] = False
    np.save(tmp_path / "d.npy", grid)
    occ = initial_occupancy(DesignConfig(occupancy_file="d.npy"), s, str(tmp_path))
    assert (~occ).sum() == 4 * 2
    np.save(tmp_path / "bad.npy", np.ones(7, bool))
    with pytest.raises(GeometryError, match="shape"):
        initial_occupancy(DesignConfig(occupancy_file="bad.npy"), s, str(tmp_path))


def test_load_span_puts_the_load_on_a_patch_of_the_free_end():
    s = build_structure(DomainConfig(load_case="cantilever", cells=(10, 6, 1), load_span=(4, 6)), 4.05)
    i, j = s.lattice.index[:, 1], s.lattice.index[:, 2]
    end = i == 9
    assert np.all(s.kind[end & (j >= 4)] == LOAD) and np.all(s.kind[end & (j < 4)] == DESIGN)
    assert np.all(s.kind[i < 2] == CLAMP)
    whole = build_structure(DomainConfig(load_case="cantilever", cells=(10, 6, 1), load_span=(0, 6)), 4.05)
    default = build_structure(DomainConfig(load_case="cantilever", cells=(10, 6, 1)), 4.05)
    assert np.array_equal(whole.kind, default.kind)


@pytest.mark.parametrize("domain, message", [
    ({"load_case": "cantilever", "cells": (10, 6, 1), "load_span": (4, 7)}, "0 <= j0 < j1 <= cells[1] = 6"),
    ({"load_case": "cantilever", "cells": (10, 6, 1), "load_span": (3, 3)}, "0 <= j0 < j1"),
    ({"load_case": "pillar", "cells": (3, 3, 8), "load_span": (0, 1)}, "cantilever only"),
])
def test_impossible_load_span_is_refused(domain, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        DomainConfig(**domain)
