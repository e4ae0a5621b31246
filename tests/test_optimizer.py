"""The optimization loop and its run file, on the analytic test double (fast)."""

import numpy as np
import pytest

from nanoto_driver import runfile
from nanoto_driver.config import build_config
from nanoto_driver.evaluate import open_problem
from nanoto_driver.optimizer import Kernels, converged, iterate, run


def _config(**optimizer):
    opts = {"evolution_rate": 0.05, "max_iterations": 60, **optimizer}
    return build_config({"engine": {"name": "harmonic"}, "domain": {"cells": [10, 5, 1]},
                         "optimizer": opts})


@pytest.fixture(scope="module")
def records():
    return list(iterate(open_problem(_config())))


def test_counts_are_exact_and_reach_the_target(records):
    problem = open_problem(_config())
    kern = Kernels(problem)
    n_design = int(kern.design.sum())
    assert records[0].n_design_atoms == n_design
    for a, b in zip(records, records[1:], strict=False):
        expected = max(kern.n_target, int(round(a.n_design_atoms * 0.95)))
        assert b.n_design_atoms == expected
        assert b.n_added - b.n_removed == b.n_design_atoms - a.n_design_atoms
        assert b.n_added <= int(0.02 * b.n_design_atoms)
    assert records[-1].n_design_atoms == kern.n_target
    assert records[-1].status == "converged"
    assert all(np.all(r.occupancy[~kern.design]) for r in records)  # clamp and load stay


def test_stiffness_drops_as_material_goes(records):
    assert records[-1].k_sym_ev_per_a2 < records[0].k_sym_ev_per_a2
    assert all(r.result.k_sym_ev_per_a2 > 0 for r in records)


def test_convergence_rule():
    assert not converged([1.0] * 9, 10, 10, 5, 1e-3)  # too few iterations
    assert converged([1.0] * 10, 10, 10, 5, 1e-3)
    assert not converged([1.0] * 10, 11, 10, 5, 1e-3)  # not at the target count yet
    assert not converged([1.0] * 5 + [1.01] * 5, 10, 10, 5, 1e-3)


def test_max_iterations_stops_the_loop():
    recs = list(iterate(open_problem(_config(max_iterations=4))))
    assert len(recs) == 4 and recs[-1].status == "max_iterations" and recs[-1].next_state is None


class _Collect:
    def __init__(self):
        self.records = []

    def iteration(self, record):
        self.records.append(record)


def test_run_file_round_trip_and_resume_gives_the_same_result(tmp_path, records):
    cfg = _config()
    problem = open_problem(cfg)
    path = tmp_path / "run.h5"
    runfile.create(path, cfg, problem.structure, {"host": "test"})
    # interrupt after 7 iterations: only what the observer stored survives
    from nanoto_driver.observers import RunFileObserver

    writer = RunFileObserver(path)
    for record in iterate(problem):
        writer.iteration(record)
        if record.k == 6:
            break
    state = runfile.load_state(path, cfg)
    assert state.k == 7 and len(state.k_history) == 7
    rest = _Collect()
    run(open_problem(cfg), [RunFileObserver(path), rest], state)
    assert rest.records[-1].k == records[-1].k
    assert np.array_equal(rest.records[-1].occupancy, records[-1].occupancy)
    assert rest.records[-1].k_sym_ev_per_a2 == records[-1].k_sym_ev_per_a2
    cols = runfile.read_iterations(path)
    assert cols["k"].tolist() == list(range(len(records)))
    # the resumed iteration counts its added and removed atoms against the stored design
    for name in ("n_added", "n_removed", "n_design_atoms"):
        assert cols[name].tolist() == [getattr(r, name) for r in records], name
    assert np.array_equal(cols["occupancy"][-1], records[-1].occupancy)
    assert runfile.status(path) == "converged"


def test_run_file_refuses_another_config(tmp_path):
    cfg = _config()
    path = tmp_path / "run.h5"
    runfile.create(path, cfg, open_problem(cfg).structure, {})
    with pytest.raises(runfile.RunFileError, match="another config"):
        runfile.load_state(path, _config(volume_fraction=0.4))


def test_corrupt_run_file_is_named(tmp_path):
    path = tmp_path / "run.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(runfile.RunFileError, match="not a readable HDF5 run file"):
        runfile.status(path)


def test_failed_relaxation_is_recorded_by_name_and_resumable(tmp_path, monkeypatch, caplog):
    """A relaxation error stops the run; run file and log name it; resume retries that iteration."""
    import logging

    from nanoto_driver import optimizer as opt_module
    from nanoto_driver.errors import RelaxationError
    from nanoto_driver.rundir import run_in_dir

    real = opt_module.evaluate
    calls = {"n": 0}

    def flaky(problem, occupancy, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RelaxationError("relaxation at u = 0.05 Å stopped on 'max iterations' (injected)")
        return real(problem, occupancy, **kw)

    monkeypatch.setattr(opt_module, "evaluate", flaky)
    cfg = _config()
    with caplog.at_level(logging.ERROR, logger="nanoto"), pytest.raises(RelaxationError):
        run_in_dir(cfg, tmp_path / "run", progress=False)
    assert "max iterations' (injected)" in caplog.text
    path = tmp_path / "run" / "run.h5"
    assert runfile.status(path) == "failed"
    import h5py

    with h5py.File(path) as f:
        assert "injected" in f.attrs["error"] and f["iterations/k"].shape[0] == 3
    summary = run_in_dir(cfg, tmp_path / "run", resume=True, progress=False)
    assert summary["converged"] and summary["iterations"] == len(list(iterate(open_problem(cfg))))


def test_the_local_relaxation_before_u0_is_in_the_run_file(tmp_path):
    from nanoto_driver.observers import RunFileObserver

    def config(hops, share):
        return build_config({"engine": {"name": "harmonic"}, "domain": {"cells": [10, 5, 1]},
                             "optimizer": {"evolution_rate": 0.05, "max_iterations": 4},
                             "minimizer": {"local_hops": hops, "local_max_share": share}})

    columns = {}
    for hops, share in ((0, 1.0), (2, 1.0), (2, 0.05)):
        path = tmp_path / f"hops{hops}_{share}.h5"
        problem = open_problem(config(hops, share))
        runfile.create(path, problem.config, problem.structure, {"host": "test"})
        run(problem, [RunFileObserver(path)])
        columns[hops, share] = runfile.read_iterations(path)
    off, on = columns[0, 1.0], columns[2, 1.0]
    assert off["local_atoms"].tolist() == [0] * 4 and off["local_force_evaluations"].tolist() == [0] * 4
    # a part of more than 5 % of this small design's atoms is left to the whole design's relaxation
    assert columns[2, 0.05]["local_atoms"].tolist() == [0] * 4
    # iteration 0 has no warm start; every later one relaxes the part around its changes first
    assert on["local_atoms"][0] == 0 and (on["local_atoms"][1:] > 0).all()
    assert (on["local_atoms"][1:] <= on["occupancy"][1:].sum(axis=1)).all()
    assert (on["local_force_evaluations"][1:] == 1).all()  # one direct solve
    # the double solves each state directly, whatever the start: the same designs either way
    assert np.array_equal(on["occupancy"], off["occupancy"])
    assert np.allclose(on["k_sym_ev_per_a2"], off["k_sym_ev_per_a2"], rtol=1e-12)
