"""A run resumes inside a state: a two-level relaxation keeps its progress between CG cycles."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nanoto_driver import engine_lammps, local_relax, state_checkpoint
from nanoto_driver.config import load_config
from nanoto_driver.design import initial_occupancy
from nanoto_driver.engine import InFlightState, RelaxResult
from nanoto_driver.engine_lammps import LammpsEngine
from nanoto_driver.evaluate import open_problem, tail_polish
from nanoto_driver.state_checkpoint import IN_FLIGHT, StateCheckpoint
from nanoto_driver.stiffness import symmetric_curvature

from .conftest import EXAMPLES
from .mpi_in_flight import count_cg_iterations

SCRIPT = Path(__file__).with_name("mpi_in_flight.py")
SETS = ["domain.cells=[24, 12, 3]", "minimizer.norm=max", "minimizer.ftol_ev_per_a=1e-5",
        "minimizer.coarse_every=8"]


def _progress(iterations: int = 40, n_atoms: int = 5) -> InFlightState:
    rng = np.random.default_rng(iterations)
    return InFlightState(rng.normal(size=(n_atoms, 3)), "Step PotEng\n0 -1.5\n", iterations, 1, 12, 30.5, 29.0,
                         3.0, 1.0, -123.25, 0.02, rng.normal(size=(2, 2, n_atoms, 3)))


def test_kept_progress_reads_back_only_for_its_state(tmp_path, caplog):
    occ = np.ones(20, bool)
    path = tmp_path / state_checkpoint.PARTIAL
    writer = StateCheckpoint(path)
    writer.resume(3, occ)
    assert writer.in_flight(0.0) is None  # nothing kept yet
    with caplog.at_level(logging.INFO, logger="nanoto"):
        writer.keep_in_flight(0.0, _progress(40))
        writer.keep_in_flight(0.0, _progress(48))  # replaces the last one
    assert "iteration 3, state 0 (u = +0 Å): 48 CG iterations" in caplog.text  # a progress line in run.log
    reader = StateCheckpoint(path)
    reader.resume(3, occ)
    back = reader.in_flight(0.0)
    assert back is not None
    expected = _progress(48)
    assert np.array_equal(back.positions_a, expected.positions_a)
    assert np.array_equal(back.secant_history, expected.secant_history)  # (x, f) of the last corrections
    assert dataclasses.replace(back, positions_a=None) == dataclasses.replace(expected, positions_a=None)

    # kept for another state: the next one (u = +δ) or another iteration: removed, not used
    assert reader.in_flight(0.25) is None and not (tmp_path / IN_FLIGHT).exists()
    writer.keep_in_flight(0.0, _progress(48))
    other = StateCheckpoint(path)
    other.resume(4, occ)
    assert other.in_flight(0.0) is None and not (tmp_path / IN_FLIGHT).exists()

    (tmp_path / IN_FLIGHT).write_bytes(b"half a file")
    with caplog.at_level(logging.WARNING, logger="nanoto"):
        assert reader.in_flight(0.0) is None
    assert "unreadable" in caplog.text and not (tmp_path / IN_FLIGHT).exists()


def test_progress_kept_before_secant_pairs_existed_reads_back_without_history(tmp_path):
    occ = np.ones(20, bool)
    path = tmp_path / state_checkpoint.PARTIAL
    writer = StateCheckpoint(path)
    writer.resume(3, occ)
    writer.keep_in_flight(0.0, _progress(48))
    with np.load(tmp_path / IN_FLIGHT) as kept:  # the file as an earlier version wrote it
        older = {name: kept[name] for name in kept.files if name != "secant_history"}
    np.savez(tmp_path / IN_FLIGHT, **older)
    reader = StateCheckpoint(path)
    reader.resume(3, occ)
    back = reader.in_flight(0.0)
    assert back is not None and back.secant_history.shape[0] == 0
    assert np.array_equal(back.positions_a, _progress(48).positions_a) and back.iterations == 48


def test_a_finished_state_or_iteration_drops_its_kept_progress(tmp_path):
    occ = np.ones(20, bool)
    relaxed = RelaxResult(u_a=0.0, site_energies_ev=np.full(20, -3.4), positions_a=np.zeros((20, 3)),
                          engine_energy_ev=-68.0, reaction_ev_per_a=0.1, converged=True, stop_reason="force tolerance",
                          iterations=60, force_evaluations=130, fnorm_ev_per_a=1e-6, fmax_ev_per_a=1e-7, n_atoms=20,
                          wall_s=400.0)
    checkpoint = StateCheckpoint(tmp_path / state_checkpoint.PARTIAL)
    checkpoint.resume(0, occ)
    checkpoint.keep_in_flight(0.0, _progress())
    checkpoint.save(relaxed)  # state 0 is relaxed: its progress is of no use any more
    assert not (tmp_path / IN_FLIGHT).exists()
    checkpoint.keep_in_flight(0.5, _progress())

    # a stop here: the next process finds state 0 relaxed and state 1 in flight, and the
    # iteration's time includes both parts spent before the stop
    resumed = StateCheckpoint(tmp_path / state_checkpoint.PARTIAL)
    assert resumed.resume(0, occ) and resumed.before_stop_s == 400.0
    assert resumed.in_flight(0.5) is not None and resumed.before_stop_s == 400.0 + _progress().wall_s
    assert resumed.resume(0, occ) and resumed.before_stop_s == 400.0  # counted once per resume
    checkpoint.clear()  # the iteration is in the run file
    assert not (tmp_path / IN_FLIGHT).exists() and not (tmp_path / state_checkpoint.PARTIAL).exists()


def _evaluate(config, checkpoint):
    """K_sym of the test design through ``checkpoint``, in a LAMMPS instance of its own (as a new
    process would), with the config's tail polish."""
    problem = open_problem(config)
    try:
        occ = initial_occupancy(config.design, problem.structure)
        done = checkpoint.resume(0, occ)
        return symmetric_curvature(problem.engine, problem.structure, occ, problem.delta_a(), done=done,
                                   on_state=checkpoint.save, in_flight=checkpoint, polish=tail_polish(problem))
    finally:
        problem.engine.close()


class _Killed(BaseException):
    """Stands for a kill between two CG cycles (not an Exception: nothing may turn it into an error message)."""


class _KilledAfter(StateCheckpoint):
    """A checkpoint whose process dies right after keeping the progress of state ``state`` for the ``nth`` time."""

    def __init__(self, path, state: int, nth: int) -> None:
        super().__init__(path)
        self.state, self.nth, self.kept = state, nth, 0

    def keep_in_flight(self, u_a, progress) -> None:
        super().keep_in_flight(u_a, progress)
        if len(self._done) == self.state:
            self.kept += 1
            if self.kept == self.nth:
                raise _Killed


@pytest.mark.lammps
@pytest.mark.parametrize("state", [0, 1])
def test_a_state_killed_between_cycles_goes_on_from_its_kept_progress(lammps_ok, tmp_path, monkeypatch, caplog,
                                                                       state):
    monkeypatch.setattr(engine_lammps, "IN_FLIGHT_EVERY_S", 0.0)  # keep after every cycle
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", SETS)

    def evaluate(checkpoint):
        return _evaluate(config, checkpoint)

    whole = evaluate(StateCheckpoint(tmp_path / "in_one_go.npz"))
    path = tmp_path / state_checkpoint.PARTIAL
    with pytest.raises(_Killed):
        evaluate(_KilledAfter(path, state, nth=1))
    with np.load(path.with_name(IN_FLIGHT)) as kept:
        before = json.loads(str(kept["scalars"]))["iterations"]
    ran: list[int] = []  # CG iterations each state ran in this process
    monkeypatch.setattr(LammpsEngine, "_minimize_in_cycles", count_cg_iterations(ran))
    with caplog.at_level(logging.INFO, logger="nanoto"):
        resumed = evaluate(StateCheckpoint(path))
    assert f"state {state} (u = " in caplog.text and f"going on after {before} CG iterations" in caplog.text
    assert not path.with_name(IN_FLIGHT).exists()
    assert before == 8  # one cycle of 8 CG iterations before the kill
    r, g = resumed.relaxed[state], whole.relaxed[state]
    # it went on: this process ran only the rest, and the state's count includes the part before
    assert ran[0] == r.iterations - before and r.iterations > before and r.converged
    # the same relaxation up to round-off (the atoms may sit in another order in LAMMPS' memory;
    # at this size they do not, and the results come out equal to the bit)
    assert r.iterations == pytest.approx(g.iterations, abs=2)
    assert r.energy_ev == pytest.approx(g.energy_ev, rel=1e-12)
    assert resumed.k_sym_ev_per_a2 == pytest.approx(whole.k_sym_ev_per_a2, rel=1e-9)


@pytest.mark.lammps
def test_a_state_killed_with_secant_pairs_goes_on_with_their_history(lammps_ok, tmp_path, monkeypatch):
    # minimizer.secant_pairs: each correction steps along the moves between the state's last
    # corrections too; a state resumed after three cycles gets that history back with its positions
    monkeypatch.setattr(engine_lammps, "IN_FLIGHT_EVERY_S", 0.0)  # keep after every cycle
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", [*SETS, "minimizer.secant_pairs=4"])
    whole = _evaluate(config, StateCheckpoint(tmp_path / "in_one_go.npz"))
    path = tmp_path / state_checkpoint.PARTIAL
    with pytest.raises(_Killed):
        _evaluate(config, _KilledAfter(path, 0, nth=3))
    with np.load(path.with_name(IN_FLIGHT)) as kept:
        assert kept["secant_history"].shape[:2] == (2, 2)  # (x, f) at the two corrections before the kill
    resumed = _evaluate(config, StateCheckpoint(path))
    r, g = resumed.relaxed[0], whole.relaxed[0]
    assert r.iterations == g.iterations and r.force_evaluations == g.force_evaluations
    assert r.energy_ev == pytest.approx(g.energy_ev, rel=1e-12)
    assert resumed.k_sym_ev_per_a2 == pytest.approx(whole.k_sym_ev_per_a2, rel=1e-9)


@pytest.mark.lammps
@pytest.mark.mpi
def test_two_ranks_go_on_from_kept_progress_as_well(lammps_ok, tmp_path):
    # on two ranks the progress is gathered and decided collectively, and written by rank 0 only
    mpiexec = Path(sys.executable).parent / "mpiexec"

    def run(mode: str, folder: Path) -> subprocess.CompletedProcess:
        folder.mkdir(exist_ok=True)
        return subprocess.run([str(mpiexec), "-n", "2", sys.executable, str(SCRIPT), mode, str(folder), "1"],
                              capture_output=True, text=True, timeout=600)

    whole = run("whole", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    killed = run("kill", tmp_path / "stopped")
    assert killed.returncode == 9, killed.stderr
    assert (tmp_path / "stopped" / IN_FLIGHT).exists()
    resumed = run("resume", tmp_path / "stopped")
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads(whole.stdout.splitlines()[-1]), json.loads(resumed.stdout.splitlines()[-1])
    assert a["ranks"] == b["ranks"] == 2
    assert b["resumed_after"] == 8  # state 1 went on after its first cycle
    assert b["ran"][0] == b["iterations"][1] - 8  # and ran only the rest
    assert b["iterations"] == pytest.approx(a["iterations"], abs=2)
    assert b["energies"] == pytest.approx(a["energies"], rel=1e-12)
    assert b["k_sym"] == pytest.approx(a["k_sym"], rel=1e-9)
    assert not (tmp_path / "stopped" / IN_FLIGHT).exists()


@pytest.mark.lammps
def test_plain_cg_after_corrections_gave_up_keeps_progress_in_segments(lammps_ok, tmp_path, monkeypatch, caplog):
    # every correction undone (a stand-in that moves no atom and costs 2 evaluations): after three
    # in a row the state goes on with plain CG, here in segments of 16 iterations
    monkeypatch.setattr(LammpsEngine, "_coarse_correction", lambda self, *args: (False, 2))
    monkeypatch.setattr(engine_lammps, "PLAIN_SEGMENT", 16)
    monkeypatch.setattr(engine_lammps, "IN_FLIGHT_EVERY_S", 0.0)  # keep after every cycle and segment
    config = load_config(EXAMPLES / "optimize_cantilever.yaml", SETS)
    with caplog.at_level(logging.INFO, logger="nanoto"):
        whole = _evaluate(config, StateCheckpoint(tmp_path / "in_one_go.npz"))
    assert ("3 coarse corrections in a row would have raised the energy (after 24 CG iterations): "
            "the state goes on with plain CG") in caplog.text
    u0 = whole.relaxed[0]
    assert u0.converged and u0.iterations > 56
    # kept after the cycles at 8, 16, 24 and the segments at 40 and 56: killed at the fifth
    path = tmp_path / state_checkpoint.PARTIAL
    with pytest.raises(_Killed):
        _evaluate(config, _KilledAfter(path, 0, nth=5))
    with np.load(path.with_name(IN_FLIGHT)) as kept:
        scalars = json.loads(str(kept["scalars"]))
    assert (scalars["iterations"], scalars["failed"]) == (56, 3)
    ran: list[int] = []
    monkeypatch.setattr(LammpsEngine, "_minimize_in_cycles", count_cg_iterations(ran))
    resumed = _evaluate(config, StateCheckpoint(path))
    r = resumed.relaxed[0]
    # it went on with plain CG segments (no correction), not from the start
    assert ran[0] == r.iterations - 56
    assert r.iterations == pytest.approx(u0.iterations, abs=2)
    assert r.energy_ev == pytest.approx(u0.energy_ev, rel=1e-12)
    assert resumed.k_sym_ev_per_a2 == pytest.approx(whole.k_sym_ev_per_a2, rel=1e-9)
    # segments restart CG (here every 16 iterations: 435 instead of 110 for +δ), and still end where
    # one plain minimize per state does, to what ftol 1e-5 eV/Å defines K_sym on this design
    # (7.1e-5 apart when this was written)
    plain = _evaluate(load_config(EXAMPLES / "optimize_cantilever.yaml", [*SETS, "minimizer.coarse_every=0"]),
                      StateCheckpoint(tmp_path / "plain.npz"))
    assert whole.k_sym_ev_per_a2 == pytest.approx(plain.k_sym_ev_per_a2, rel=2e-4)


@pytest.mark.lammps
def test_a_state_killed_after_its_tail_polish_polishes_again_and_goes_on_to_the_same_result(
        lammps_ok, tmp_path, monkeypatch):
    # The polish's loose stage keeps no progress: a resumed u = 0 does the loose stage and the part
    # again (the same way), then goes on from the progress its full relaxation kept. A bond changed
    # by 0.05 Å counts as rearranged here, so that the relaxed corners of this small design make a part
    # (with its 7-hop shell it holds every atom here; what matters is that there is one).
    monkeypatch.setattr(engine_lammps, "IN_FLIGHT_EVERY_S", 0.0)
    monkeypatch.setattr(local_relax, "MOVED_A", 0.05)
    config = load_config(EXAMPLES / "optimize_cantilever.yaml",
                         [*SETS, "minimizer.polish_ftol_ev_per_a=1e-3", "minimizer.local_max_share=1"])
    whole = _evaluate(config, StateCheckpoint(tmp_path / "in_one_go.npz"))
    assert len(whole.polish) == 2
    path = tmp_path / state_checkpoint.PARTIAL
    with pytest.raises(_Killed):
        _evaluate(config, _KilledAfter(path, 0, nth=1))  # the first keep is u = 0's full relaxation's
    resumed = _evaluate(config, StateCheckpoint(path))
    assert [r.force_evaluations for r in resumed.polish] == [r.force_evaluations for r in whole.polish]
    assert resumed.force_evaluations == whole.force_evaluations
    assert resumed.relaxed[0].energy_ev == pytest.approx(whole.relaxed[0].energy_ev, rel=1e-12)
    assert resumed.k_sym_ev_per_a2 == pytest.approx(whole.k_sym_ev_per_a2, rel=1e-9)
