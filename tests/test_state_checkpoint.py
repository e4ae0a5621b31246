"""A run resumes inside an iteration: states relaxed before a stop are reused, bit for bit."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from nanoto_driver.config import load_config
from nanoto_driver.design import initial_occupancy
from nanoto_driver.engine import WarmStart
from nanoto_driver.evaluate import open_problem
from nanoto_driver.state_checkpoint import StateCheckpoint
from nanoto_driver.stiffness import symmetric_curvature

from .conftest import EXAMPLES


def _fields(result) -> dict:
    return dataclasses.asdict(result)


def _assert_same(a, b) -> None:
    for (name, x), y in zip(_fields(a).items(), _fields(b).values(), strict=True):
        if name in ("wall_s", "loop_s", "coarse_s", "solve_s", "lammps_calls_s"):  # timings
            continue
        assert np.array_equal(x, y), name


@pytest.fixture(scope="module")
def one_go(lammps_ok):
    """A warm-started iteration relaxed in one go, its states as ``on_state`` saw them, and its inputs."""
    config = load_config(EXAMPLES / "cantilever_periodic.yaml")
    problem = open_problem(config)
    s = problem.structure
    first = initial_occupancy(config.design, s)
    previous = symmetric_curvature(problem.engine, s, first, problem.delta_a())
    occ = first.copy()
    idx = s.lattice.index
    occ[(idx[:, 1] >= 4) & (idx[:, 1] < 8) & (idx[:, 2] >= 2) & (idx[:, 2] < 4)] = False
    warm = WarmStart(previous.relaxed[0].positions_a, previous.response_a)
    seen: list = []
    result = symmetric_curvature(problem.engine, s, occ, problem.delta_a(), warm=warm, on_state=seen.append)
    problem.engine.close()
    return config, occ, warm, result, seen


@pytest.mark.lammps
@pytest.mark.parametrize("n_done", [1, 2])
def test_resuming_after_n_states_in_a_fresh_engine_gives_the_same_iteration(one_go, n_done):
    config, occ, warm, result, seen = one_go
    assert [r.u_a for r in seen] == [r.u_a for r in result.relaxed]
    problem = open_problem(config)  # a new process would start a new LAMMPS instance
    try:
        rest: list = []
        resumed = symmetric_curvature(problem.engine, problem.structure, occ, problem.delta_a(), warm=warm,
                                      done=seen[:n_done], on_state=rest.append)
    finally:
        problem.engine.close()
    assert len(rest) == 3 - n_done  # only the missing states were relaxed
    assert resumed.k_sym_ev_per_a2 == result.k_sym_ev_per_a2
    assert np.array_equal(resumed.alpha, result.alpha)
    for a, b in zip(resumed.relaxed, result.relaxed, strict=True):
        _assert_same(a, b)


@pytest.mark.lammps
def test_saved_states_read_back_exactly_and_only_for_their_iteration(one_go, tmp_path, caplog):
    _, occ, _, _, seen = one_go
    path = tmp_path / "states.partial.npz"
    writer = StateCheckpoint(path)
    assert writer.resume(7, occ) == []
    with caplog.at_level(logging.INFO, logger="nanoto"):
        for r in seen[:2]:
            writer.save(r)
    for n, r in enumerate(seen[:2]):  # a progress line per state, for states that take an hour
        assert f"iteration 7, state {n} (u = {r.u_a:+.4g} Å): {r.force_evaluations} force evaluations" in caplog.text
    back = StateCheckpoint(path).resume(7, occ)
    assert len(back) == 2
    for a, b in zip(back, seen[:2], strict=True):
        _assert_same(a, b)
        assert a.wall_s == b.wall_s
    other = occ.copy()
    other[np.flatnonzero(occ)[0]] = False
    assert StateCheckpoint(path).resume(7, other) == []  # another design: stale, removed
    assert not path.exists()
    writer.save(seen[0])
    assert StateCheckpoint(path).resume(8, occ) == []  # another iteration: stale, removed
    assert not path.exists()
    path.write_bytes(b"not an npz file")
    with caplog.at_level(logging.WARNING, logger="nanoto"):
        assert StateCheckpoint(path).resume(7, occ) == []
    assert "unreadable" in caplog.text and not path.exists()
