"""Potential files: resolution, header parsing, clear errors."""

import pytest

from nanoto_driver.errors import PotentialError
from nanoto_driver.potential import load_potential, resolve_path


def _setfl(path, elements=("Al",), cutoff=6.287):
    path.write_text("c1\nc2\nc3\n" + f"{len(elements)} {' '.join(elements)}\n"
                    + f"10 0.1 10 0.1 {cutoff}\n")
    return path


def test_setfl_header(tmp_path):
    pot = load_potential(str(_setfl(tmp_path / "Al99.eam.alloy")), "Al")
    assert pot.pair_style == "eam/alloy" and pot.cutoff_a == 6.287 and pot.elements == ("Al",)
    assert pot.pair_coeff(2).endswith("Al99.eam.alloy Al Al")
    assert len(pot.sha256) == 64


def test_element_not_in_file(tmp_path):
    path = _setfl(tmp_path / "AlCu.eam.alloy", ("Al", "Cu"))
    assert load_potential(str(path), "Cu").element == "Cu"
    with pytest.raises(PotentialError, match="element 'Ni' is not in AlCu.eam.alloy.*Al, Cu"):
        load_potential(str(path), "Ni")


def test_missing_file_names_where_it_looked(tmp_path):
    with pytest.raises(PotentialError, match="'nope.eam.fs' not found.*looked in"):
        resolve_path("nope.eam.fs", tmp_path)


def test_unreadable_header(tmp_path):
    path = tmp_path / "broken.eam.fs"
    path.write_text("only one line\n")
    with pytest.raises(PotentialError, match="not a readable eam/fs file"):
        load_potential(str(path), "Al")


def test_unknown_suffix_asks_for_pair_style(tmp_path):
    path = tmp_path / "al.table"
    path.write_text("x\n")
    with pytest.raises(PotentialError, match="potential.pair_style"):
        load_potential(str(path), "Al")


def test_shipped_default_is_found(lammps_ok):
    pot = load_potential("Al_mm.eam.fs", "Al")
    assert pot.pair_style == "eam/fs" and pot.cutoff_a == pytest.approx(6.5)
