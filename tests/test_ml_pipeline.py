"""train -> sample -> verify on the real smoke dataset (4 designs of 8x4x1 cells), small enough for CI."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from .conftest import ROOT, need, run_cli

pytestmark = pytest.mark.lammps


@pytest.fixture(scope="module")
def dataset(smoke, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ml") / "dataset.h5"
    assert run_cli("dataset", "build", str(smoke), "-o", str(out)).returncode == 0
    return out


def test_train_sample_verify_smoke_pipeline(dataset, tmp_path):
    need("torch")
    need("diffusers")
    spec = {"dataset": str(dataset), "sweep": str(ROOT / "workflows" / "sweeps" / "smoke.yaml"),
            "conditions": ["target_volume_fraction", "filter_shells"], "splits": ["train", "val", "test"],
            "out": str(tmp_path / "model"), "device": "cpu",
            "train": {"n_steps": 40, "batch_size": 4, "checkpoint_every": 20, "log_every": 10,
                      "model": {"base_channels": 8, "channel_mult": [1, 2]},
                      "schedule": {"num_train_timesteps": 100}}}
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(spec))
    proc = run_cli("train", str(config), "--steps", "20")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("train", str(config), "--resume")  # continues to n_steps = 40
    assert proc.returncode == 0 and "trained 40 steps on 4 designs" in proc.stdout, proc.stderr
    side = json.loads((tmp_path / "model" / "nanoto_train.json").read_text())
    assert side["shape"] == "4x8x4x1" and side["encoding"]["names"] == ["target_volume_fraction", "filter_shells"]

    samples = tmp_path / "samples.h5"
    proc = run_cli("sample", str(tmp_path / "model"), "--condition", "vf=0.5,0.7", "--condition", "shells=3",
                   "-n", "2", "-o", str(samples), "--steps", "10", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(samples) as f:
        assert f.attrs["format"] == "nanoto-samples" and sorted(f["conditions"]) == ["0", "1"]
        for key, vf in (("0", 0.5), ("1", 0.7)):
            group = f[f"conditions/{key}"]
            occ, n_design = group["occupancy"][()], int(group.attrs["n_design_atoms"])
            config = json.loads(group.attrs["config_json"])
            assert occ.shape == (2, 4, 8, 4, 1) and config["optimizer"]["volume_fraction"] == vf
            design = np.zeros((4, 8, 4, 1), bool)
            design[:, 2:7] = True  # cantilever: clamp cells 0-1, load cell 7
            assert n_design == round(vf * design.sum())
            assert (occ[:, ~design]).all()  # fixed sites in-painted
            assert (occ[:, design].sum(axis=1)[group["cleanup_ok"][()]] == n_design).all()  # exact count

    # screening: 3 draws per kept candidate keep the 2 stiffest valid ones of the same 6 draws
    drawn, screened = tmp_path / "drawn.h5", tmp_path / "screened.h5"
    for path, n, screen in ((drawn, "6", "1"), (screened, "2", "3")):
        proc = run_cli("sample", str(tmp_path / "model"), "--condition", "vf=0.5", "--condition", "shells=3",
                       "-n", n, "--screen", screen, "-o", str(path), "--steps", "10", "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
    with h5py.File(drawn) as a, h5py.File(screened) as b:
        k_all, ok_all = a["conditions/0/spring_k"][()], a["conditions/0/cleanup_ok"][()]
        kept = b["conditions/0/spring_k"][()]
        assert b.attrs["screen"] == 3 and b["conditions/0"].attrs["n_drawn"] == 6
        best = np.sort(k_all[ok_all & (k_all > 0)])[::-1][:2]
        assert sorted(kept[kept > 0], reverse=True)[:2] == best.tolist()
        assert best.size < 2 or best[-1] >= np.median(k_all)

    out = tmp_path / "verify"
    proc = run_cli("verify", str(samples), "--dataset", str(dataset), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "verify.json").read_text())
    for key in ("valid_fraction", "median_k_over_frontier", "fraction_ge_0_97", "mean_pairwise_hamming",
                "novel_fraction"):
        assert key in report
    assert report["n_candidates"] == 4 and 0.0 <= report["valid_fraction"] <= 1.0
    assert (out / "k_vs_volume_fraction.png").stat().st_size > 0 and (out / "candidates.png").stat().st_size > 0


def test_bad_condition_and_missing_checkpoint_are_input_errors(tmp_path):
    proc = run_cli("sample", str(tmp_path), "--condition", "colour=red", "-n", "1", "-o", str(tmp_path / "s.h5"))
    assert proc.returncode == 2 and "unknown condition 'colour'" in proc.stderr
    proc = run_cli("sample", str(tmp_path), "--condition", "vf=0.5", "-n", "1", "-o", str(tmp_path / "s.h5"))
    assert proc.returncode == 2 and "not a nanoto training folder" in proc.stderr
    assert not (tmp_path / "s.h5").exists()


def test_training_with_glide_images_adds_one_image_per_design(dataset, tmp_path):
    need("torch")
    need("diffusers")
    spec = {"dataset": str(dataset), "sweep": str(ROOT / "workflows" / "sweeps" / "smoke.yaml"),
            "conditions": ["target_volume_fraction", "filter_shells"], "splits": ["train", "val", "test"],
            "augment": ["y_glide"], "out": str(tmp_path / "model"), "device": "cpu",
            "train": {"n_steps": 4, "batch_size": 4, "checkpoint_every": 4, "log_every": 2,
                      "model": {"base_channels": 8, "channel_mult": [1, 2]},
                      "schedule": {"num_train_timesteps": 100}}}
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(spec))
    proc = run_cli("train", str(config))
    assert proc.returncode == 0 and "trained 4 steps on 4 designs + 4 symmetry images" in proc.stdout, proc.stderr
    side = json.loads((tmp_path / "model" / "nanoto_train.json").read_text())
    assert side["n_designs"] == 4 and side["n_images"] == 4 and side["augment"] == ["y_glide"]
    assert len(side["design_ids"]) == 4
