"""Spring-network screening of drawn candidates (nanoto_driver/ml_screen.py); no torch needed."""

import numpy as np

from nanoto_driver.config import build_config
from nanoto_driver.load_cases import build_structure
from nanoto_driver.ml_screen import keep_stiffest, spring_stiffness
from nanoto_driver.structure import DESIGN


def _structure():
    return build_structure(build_config({"domain": {"cells": [10, 6, 1]}}).domain, 4.05)


def test_removing_atoms_never_stiffens_the_network():
    # Rayleigh monotonicity: K of a linear spring network at a prescribed displacement can only
    # drop when springs go; a screen that ranked otherwise would be ranking noise
    s = _structure()
    occ = np.ones(s.n_sites, bool)
    rng = np.random.default_rng(0)
    design = np.flatnonzero(s.kind == DESIGN)
    ks = [spring_stiffness(s, occ)]
    for _ in range(4):
        occ[rng.choice(design[occ[design]], 20, replace=False)] = False
        ks.append(spring_stiffness(s, occ))
    assert all(b < a for a, b in zip(ks, ks[1:], strict=False))
    assert ks[-1] > 0


def test_a_design_cut_through_scores_almost_nothing():
    # only the engine's whisper of on-site stiffness (1e-9 k) holds the load patch
    s = _structure()
    occ = np.ones(s.n_sites, bool)
    x = s.positions_a[:, 0]
    cut = (s.kind == DESIGN) & (np.abs(x - np.median(x[s.kind == DESIGN])) < 2.5)
    occ[cut] = False
    assert spring_stiffness(s, occ) < 1e-6 * spring_stiffness(s, np.ones(s.n_sites, bool))


def test_keep_stiffest_prefers_valid_and_stiff_and_keeps_drawing_order():
    scores = np.array([0.5, 0.9, 0.0, 0.7, 0.95, 0.1])
    valid = np.array([True, True, False, True, False, True])
    assert keep_stiffest(scores, valid, 2).tolist() == [1, 3]  # 0.95 is invalid
    assert keep_stiffest(scores, valid, 5).tolist() == [0, 1, 2, 3, 5]  # all 4 valid, then the first invalid
