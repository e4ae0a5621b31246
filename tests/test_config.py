"""Config validation: unknown keys are named, overrides apply, bad values are explained."""

import pytest

from nanoto_driver.config import load_config, parse_overrides
from nanoto_driver.errors import ConfigError

from .conftest import EXAMPLES, run_cli


@pytest.mark.parametrize("name", ["cantilever_periodic", "cantilever_finite", "pillar"])
def test_examples_validate(name):
    cfg = load_config(EXAMPLES / f"{name}.yaml")
    assert cfg.name == name


def test_unknown_key_is_named_with_the_valid_ones(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("domain:\n  cellz: [4, 4, 4]\n")
    with pytest.raises(ConfigError, match=r"unknown key 'domain.cellz'.*cells"):
        load_config(path)


def test_unknown_top_level_section(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("minimiser: {}\n")
    with pytest.raises(ConfigError, match="unknown key 'minimiser'.*minimizer"):
        load_config(path)


def test_overrides_parse_yaml_values_and_apply():
    assert parse_overrides(["a.b=1e-3", "c=[1, 2]"]) == {"a": {"b": 1e-3}, "c": [1, 2]}
    cfg = load_config(EXAMPLES / "pillar.yaml", ["load.strain=5e-4", "domain.cells=[4, 4, 12]"])
    assert cfg.load.strain == 5e-4 and cfg.domain.cells == (4, 4, 12)


def test_bad_values_are_explained():
    with pytest.raises(ConfigError, match="load.strain"):
        load_config(None, ["load.strain=-1"])
    with pytest.raises(ConfigError, match="no design region"):
        load_config(None, ["domain.cells=[3, 4, 2]"])
    with pytest.raises(ConfigError, match="polish_ftol_ev_per_a = 1e-08 is not looser than ftol_ev_per_a"):
        load_config(None, ["minimizer.polish_ftol_ev_per_a=1e-8"])
    with pytest.raises(ConfigError, match="secant_pairs = 4 needs the two-level relaxation: set coarse_every"):
        load_config(None, ["minimizer.secant_pairs=4"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["load.strain"])


def test_cli_unknown_key_exits_2_with_one_line():
    proc = run_cli("evaluate", str(EXAMPLES / "pillar.yaml"), "--set", "load.strian=1e-3")
    assert proc.returncode == 2
    assert "unknown key 'load.strian'" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr


def test_cli_unknown_engine_lists_valid_ones():
    proc = run_cli("evaluate", str(EXAMPLES / "pillar.yaml"), "--engine", "gromacs")
    assert proc.returncode == 2
    assert "lammps, lammps-exe, harmonic" in proc.stderr


def test_keys_added_later_keep_the_identity_of_runs_at_their_default():
    """Campaign ids and run-file checks are hashes of the canonical config: a key added after
    runs existed (minimizer.norm) must not change them at its default, and must at any other value."""
    from nanoto_driver.config import canonical_json, config_hash

    default = load_config(None)
    assert '"norm"' not in canonical_json(default)
    assert config_hash(load_config(None, ["minimizer.norm=two"])) == config_hash(default)
    assert config_hash(load_config(None, ["minimizer.norm=max"])) != config_hash(default)
    with pytest.raises(ConfigError, match="minimizer.norm"):
        load_config(None, ["minimizer.norm=euclid"])
    assert '"dmax_a"' not in canonical_json(default)
    assert config_hash(load_config(None, ["minimizer.dmax_a=0.5"])) != config_hash(default)
    with pytest.raises(ConfigError, match="minimizer.dmax_a"):
        load_config(None, ["minimizer.dmax_a=0"])


def test_every_key_added_later_is_left_out_of_the_identity_at_its_default():
    """ADDED_LATER must list each key at its current default, or every default config (and so
    every campaign id) would change with the key's arrival."""
    from nanoto_driver.config import ADDED_LATER, canonical_json

    default = load_config(None)
    tree = default.model_dump(mode="json")
    for section, key, value in ADDED_LATER:
        assert tree[section][key] == value, f"{section}.{key}"
        assert f'"{key}"' not in canonical_json(default)
