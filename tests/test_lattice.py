"""FCC sites, the sublattice grid map and exact neighbour shells."""

import numpy as np
import pytest

from nanoto_driver.lattice import FCC_BASIS, FccLattice
from nanoto_driver.shells import neighbor_pairs, shell_offsets, shell_radius


def test_site_order_maps_to_sublattice_grid():
    lat = FccLattice((3, 2, 5), 4.0)
    assert lat.n_sites == 4 * 3 * 2 * 5
    grid = lat.to_grid(np.arange(lat.n_sites))
    assert grid.shape == (4, 3, 2, 5)
    b, i, j, k = 2, 1, 1, 3
    s = grid[b, i, j, k]
    assert tuple(lat.index[s]) == (b, i, j, k)
    np.testing.assert_allclose(lat.positions_a[s], 4.0 * (np.array([i, j, k]) + FCC_BASIS[b]))


def test_positions_are_distinct_and_nearest_distance_is_a0_over_sqrt2():
    from scipy.spatial import cKDTree

    lat = FccLattice((3, 3, 3), 4.05)
    d, _ = cKDTree(lat.positions_a).query(lat.positions_a, k=2)
    np.testing.assert_allclose(d[:, 1].min(), 4.05 / np.sqrt(2))


@pytest.mark.parametrize("shell,count", [(1, 12), (2, 6), (3, 24), (4, 12), (5, 24), (6, 8)])
def test_shell_counts_and_radii(shell, count):
    off = shell_offsets(shell)
    for b in range(4):
        rows = off[off[:, 0] == b]
        assert len(rows) == count
        vec = rows[:, 2:] + FCC_BASIS[rows[:, 1]] - FCC_BASIS[b]
        np.testing.assert_allclose(np.linalg.norm(vec, axis=1), shell_radius(shell))


def test_periodic_block_gives_every_site_twelve_first_neighbours():
    src, dst, vec = neighbor_pairs((3, 3, 3), (True, True, True), 1, with_vectors=True)
    assert np.bincount(src, minlength=108).tolist() == [12] * 108
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), np.sqrt(0.5))


def test_free_faces_truncate_neighbours():
    src, _, _ = neighbor_pairs((3, 3, 3), (False, False, False), 1)
    counts = np.bincount(src, minlength=108)
    assert counts.max() == 12 and counts.min() == 3  # a corner atom has 3 first neighbours
