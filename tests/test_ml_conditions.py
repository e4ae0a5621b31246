"""Sampling conditions from the command line (no torch needed)."""

from __future__ import annotations

import pytest

from nanoto_driver.errors import InputError
from nanoto_driver.ml_data import condition_grid


def test_condition_grid_is_the_product_of_the_axes_with_aliases():
    grid = condition_grid(["vf=0.3,0.5", "shells=1,2"])
    assert grid == [{"target_volume_fraction": v, "filter_shells": s} for v in (0.3, 0.5) for s in (1, 2)]


def test_load_span_is_one_axis_of_patches():
    grid = condition_grid(["vf=0.4", "load_span=0:12,9:12,5:7"])
    assert [(c["load_j0"], c["load_j1"]) for c in grid] == [(0, 12), (9, 12), (5, 7)]
    assert all(c["target_volume_fraction"] == 0.4 for c in grid)


@pytest.mark.parametrize("bad", ["load_span=9", "load_span=12:9", "load_span=a:b", "vf"])
def test_bad_conditions_are_input_errors(bad):
    with pytest.raises(InputError):
        condition_grid([bad])
