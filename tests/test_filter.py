"""The multi-shell filter: constants stay constant, cubic symmetry, equality with a slow loop."""

import itertools

import numpy as np
import pytest

from nanoto_driver.filter import build_filter, shell_weights
from nanoto_driver.lattice import FccLattice
from nanoto_driver.shells import shell_radius


def reference_filter(cells, periodic, alpha, weights):
    """Obviously-correct O(N²) loop over all site pairs with minimum-image distances."""
    lat = FccLattice(cells, 1.0)
    pos = lat.positions_a
    box = np.array(cells, float)
    radii = [0.0] + [shell_radius(s) for s in range(1, len(weights))]
    out = np.empty_like(alpha)
    for i in range(len(pos)):
        num = den = 0.0
        for j in range(len(pos)):
            d = pos[j] - pos[i]
            images = [[0.0] if not periodic[a] else [-box[a], 0.0, box[a]] for a in range(3)]
            for shift in itertools.product(*images):  # every periodic image within reach
                r = np.linalg.norm(d + np.array(shift))
                for s, rs in enumerate(radii):
                    if abs(r - rs) < 1e-9:
                        num += weights[s] * alpha[j]
                        den += weights[s]
        out[i] = num / den
    return out


@pytest.mark.parametrize("cells,periodic", [((3, 2, 2), (False, False, False)),
                                            ((3, 3, 3), (False, False, True)),
                                            ((3, 3, 3), (True, True, True))])
@pytest.mark.parametrize("scheme", ["hat", "uniform", "gaussian"])
def test_sparse_operator_equals_slow_loop(cells, periodic, scheme):
    rng = np.random.default_rng(3)
    alpha = rng.normal(size=4 * int(np.prod(cells)))
    f = build_filter(cells, periodic, shells=3, scheme=scheme)
    np.testing.assert_allclose(f(alpha), reference_filter(cells, periodic, alpha, f.weights), rtol=1e-12)


@pytest.mark.parametrize("periodic", [(False, False, False), (False, False, True), (True, True, True)])
@pytest.mark.parametrize("shells", [0, 1, 2, 3])
def test_constant_field_stays_constant_at_boundaries(periodic, shells):
    f = build_filter((5, 4, 3), periodic, shells=shells, scheme="uniform" if shells > 3 else "hat")
    np.testing.assert_allclose(f(np.full(240, 2.5)), 2.5, rtol=1e-14)


def test_zero_shells_is_identity():
    alpha = np.random.default_rng(0).normal(size=96)
    np.testing.assert_array_equal(build_filter((3, 2, 4), (False,) * 3, shells=0)(alpha), alpha)


def _site_permutation(lat: FccLattice, op: np.ndarray) -> np.ndarray:
    """Site p(s) that site s maps to under the cubic operation ``op`` (3x3 signed permutation)."""
    n = np.array(lat.cells)
    twice = np.rint(2 * lat.positions_a / lat.a0_a).astype(int)  # doubled coordinates
    mapped = (twice @ op.T) % (2 * n)
    lookup = {tuple(t): s for s, t in enumerate(twice)}
    return np.array([lookup[tuple(m)] for m in mapped])


def _cubic_operations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            op = np.zeros((3, 3), int)
            op[range(3), perm] = signs
            yield op


def test_filter_commutes_with_the_48_cubic_operations():
    lat = FccLattice((4, 4, 4), 1.0)
    f = build_filter(lat.cells, (True, True, True), shells=3)
    alpha = np.random.default_rng(7).normal(size=lat.n_sites)
    ops = list(_cubic_operations())
    assert len(ops) == 48
    for op in ops:
        p = _site_permutation(lat, op)
        moved = np.empty_like(alpha)
        moved[p] = alpha
        filtered_moved = np.empty_like(alpha)
        filtered_moved[p] = f(alpha)
        np.testing.assert_allclose(f(moved), filtered_moved, rtol=1e-12, atol=1e-14)


def test_hat_weights_default():
    w = shell_weights(3, "hat", 1.3)
    np.testing.assert_allclose(w, [1.3, 1.3 - np.sqrt(0.5), 0.3, 1.3 - np.sqrt(1.5)])
    with pytest.raises(ValueError, match="does not reach shell 4"):
        shell_weights(4, "hat", 1.3)
