"""Diffusion-model stage (nanoto_models): schedules, the 3D U-Net, sampling, training and resume.

Tiny nets and grids only, one CPU thread: the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from .conftest import IN_CI

if not IN_CI:  # a laptop without the ml extra skips; CI must have it
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")

import torch  # noqa: E402
from nanoto_models.checkpoint import load_checkpoint, load_model  # noqa: E402
from nanoto_models.data import GridDataset  # noqa: E402
from nanoto_models.device import resolve_device  # noqa: E402
from nanoto_models.sample import sample, to_occupancy  # noqa: E402
from nanoto_models.schedule import NoiseSchedule, ScheduleConfig, add_noise, alphas_cumprod  # noqa: E402
from nanoto_models.train import TrainConfig, batch_indices, main, train, train_step  # noqa: E402
from nanoto_models.unet import UNet3D, count_parameters, pad_axes  # noqa: E402

TINY = {"base_channels": 8, "channel_mult": (1, 2)}


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: modest on a shared machine, and the pinned numbers do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_net(n_cond: int = 2, seed: int = 0, **kwargs) -> UNet3D:
    torch.manual_seed(seed)
    return UNet3D(n_cond, **{**TINY, **kwargs}).eval()


def _cantilever_sites(nx: int = 8, ny: int = 4, nz: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(fixed_value, fixed_mask) (4, nx, ny, nz) float: a clamped x = 0 plane and a load patch at x = nx - 1."""
    mask = torch.zeros(4, nx, ny, nz)
    mask[:, 0] = 1
    mask[:, -1, 1:3] = 1
    return mask.clone(), mask


def _inputs(shape, batch: int = 2, n_cond: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=g)
    fm = (torch.rand(batch, *shape, generator=g) < 0.2).float()
    return x, torch.randint(0, 1000, (batch,), generator=g), torch.randn(batch, n_cond, generator=g), fm.clone(), fm


# ---------------------------------------------------------------- schedules


def test_linear_schedule_matches_closed_form():
    cfg = ScheduleConfig(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    sched = NoiseSchedule(cfg)
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(sched.betas.numpy(), betas, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), np.cumprod(1 - betas), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(alphas_cumprod(cfg).numpy(), sched.alphas_cumprod.numpy())


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_schedule_matches_closed_form(T):
    s = 0.008

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    betas = np.array([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)])
    expected = np.cumprod(1 - betas)
    # away from the clipped last step the product telescopes to f(t + 1) / f(0)
    np.testing.assert_allclose(expected[:-1], [f(i + 1) / f(0) for i in range(T - 1)], rtol=1e-9)
    got = alphas_cumprod({"num_train_timesteps": T, "beta_schedule": "squaredcos_cap_v2"}).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_add_noise_is_the_forward_process():
    cfg = ScheduleConfig(beta_schedule="squaredcos_cap_v2", num_train_timesteps=200)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randint(0, 2, (5, 4, 3, 2, 1), generator=g).float() * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 1, 50, 150, 199])
    acp = alphas_cumprod(cfg)[t].view(-1, 1, 1, 1, 1)
    expected = acp.sqrt() * x0 + (1 - acp).sqrt() * eps
    torch.testing.assert_close(add_noise(cfg, x0, eps, t), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(NoiseSchedule(cfg).add_noise(x0, eps, t), expected, rtol=1e-6, atol=1e-6)


def test_schedule_config_rejects_what_it_does_not_support():
    with pytest.raises(ValueError, match="beta_schedule"):
        ScheduleConfig(beta_schedule="sigmoid")
    with pytest.raises(ValueError, match="epsilon"):
        ScheduleConfig(prediction_type="v_prediction")
    with pytest.raises(ValueError, match="unknown"):
        ScheduleConfig.coerce({"num_train_timestep": 10})


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("shape", [(4, 20, 12, 1), (4, 8, 4, 1), (4, 6, 6, 6)])
@pytest.mark.parametrize("dropped", [None, (True, False)])
def test_unet_output_shape(shape, dropped):
    net = _tiny_net(channel_mult=(1, 2, 2))
    x, t, cond, fv, fm = _inputs(shape)
    cond_dropped = None if dropped is None else torch.tensor(dropped)
    with torch.no_grad():
        out = net(x, t, cond, fv, fm, cond_dropped)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unet_halvings_follow_the_grid():
    net = UNet3D(2, channel_mult=(1, 2, 2))  # up to two halvings; z periodic, so never resampled by default
    assert net.halvings((20, 12, 1)) == (2, 2, 0)
    assert net.halvings((8, 4, 1)) == (2, 2, 0)
    assert net.halvings((6, 3, 6)) == (2, 1, 0)  # x: padded 6 -> 8; y: 3 -> 4 -> 2
    assert net.halvings((1, 1, 1)) == (0, 0, 0)
    every_axis = UNet3D(2, channel_mult=(1, 2, 2), downsample=(True, True, True))
    assert every_axis.halvings((6, 6, 6)) == (2, 2, 1)  # periodic z halves only while even: 6 -> 3
    assert every_axis.halvings((8, 8, 1)) == (2, 2, 0)


def test_default_net_is_cpu_sized():
    assert 1e5 <= count_parameters(UNet3D(4)) <= 1e6


def test_condition_dropout_uses_the_null_embedding():
    net = _tiny_net()
    x, t, cond, fv, fm = _inputs((4, 8, 4, 1))
    everything_dropped = torch.tensor([True, True])
    with torch.no_grad():
        a = net(x, t, cond, fv, fm, everything_dropped)
        b = net(x, t, torch.randn_like(cond), fv, fm, everything_dropped)
        c = net(x, t, cond, fv, fm)
    torch.testing.assert_close(a, b)  # the condition is ignored when dropped
    assert (a - c).abs().max() > 1e-4


def test_pad_axes_wraps_periodic_axes_and_zero_pads_the_others():
    x = torch.arange(1, 1 + 2 * 3 * 4, dtype=torch.float32).reshape(1, 1, 2, 3, 4)
    out = pad_axes(x, (1, 1, 1), (False, False, True))
    assert out.shape == (1, 1, 4, 5, 6)
    inner = out[0, 0, 1:-1, 1:-1]
    torch.testing.assert_close(inner[..., 1:-1], x[0, 0])
    torch.testing.assert_close(inner[..., 0], x[0, 0, ..., -1])  # z wraps
    torch.testing.assert_close(inner[..., -1], x[0, 0, ..., 0])
    assert out[0, 0, 0].abs().sum() == 0 and out[0, 0, -1].abs().sum() == 0  # x: zeros
    assert out[0, 0, :, 0].abs().sum() == 0 and out[0, 0, :, -1].abs().sum() == 0  # y: zeros


def test_unet_is_equivariant_to_rolls_along_a_periodic_axis():
    """z periodic and never resampled: rolling the input along z rolls the output (x, y are resampled)."""
    net = _tiny_net(periodic=(False, False, True))
    x, t, cond, fv, fm = _inputs((4, 8, 6, 5))
    with torch.no_grad():
        out = net(x, t, cond, fv, fm)
        for shift in (1, 2):
            rolled = net(x.roll(shift, 4), t, cond, fv.roll(shift, 4), fm.roll(shift, 4))
            torch.testing.assert_close(rolled, out.roll(shift, dims=4), rtol=0, atol=1e-5)
        # x is not periodic: zero padding at its ends breaks the symmetry
        rolled_x = net(x.roll(1, dims=2), t, cond, fv.roll(1, 2), fm.roll(1, 2))
        assert (rolled_x - out.roll(1, dims=2)).abs().max() > 1e-3


def test_unet_equivariance_needs_circular_padding():
    """The same net with z declared non-periodic (zero padding along z) is not equivariant along z."""
    net = _tiny_net(periodic=(False, False, False), downsample=(True, True, False))
    x, t, cond, fv, fm = _inputs((4, 8, 6, 5))
    with torch.no_grad():
        out = net(x, t, cond, fv, fm)
        rolled = net(x.roll(2, 4), t, cond, fv.roll(2, 4), fm.roll(2, 4))
    assert (rolled - out.roll(2, dims=4)).abs().max() > 1e-3


def test_periodic_axis_that_is_resampled_keeps_equivariance_to_coarse_shifts():
    """z periodic and halved twice (8 -> 2): equivariant to shifts by multiples of 4 cells."""
    net = _tiny_net(channel_mult=(1, 2, 2), periodic=(False, False, True), downsample=(True, True, True))
    assert net.halvings((8, 4, 8)) == (2, 2, 2)
    x, t, cond, fv, fm = _inputs((4, 8, 4, 8))
    with torch.no_grad():
        out = net(x, t, cond, fv, fm)
        rolled = net(x.roll(4, 4), t, cond, fv.roll(4, 4), fm.roll(4, 4))
    torch.testing.assert_close(rolled, out.roll(4, dims=4), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- sampling

# recorded once from this very setup (torch 2.13 CPU, diffusers 0.42); sum, x[0,0,1,1,0], x[1,3,5,2,0].
# float32 kernels differ between CPUs (the sum of the 64 values moved by 4e-6 relative on an AVX512
# machine), so the pin allows 1e-4 relative: far below what any change to the sampler does.
PINNED = {
    "ddim": (39.193401, -0.624936, 0.931715),
    "ddpm": (64.909302, -0.517998, 0.037072),
}


def _pinned_run(kind: str, seed: int = 1) -> torch.Tensor:
    net = _tiny_net()
    fv, fm = _cantilever_sites()
    return sample(net, kind, 10, [0.5, -1.0], fv, fm, n=2, guidance_scale=2.0, seed=seed)


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_sampling_is_pinned_and_reproducible(kind):
    x = _pinned_run(kind)
    summary = (x.sum().item(), x[0, 0, 1, 1, 0].item(), x[1, 3, 5, 2, 0].item())
    assert summary == pytest.approx(PINNED[kind], rel=1e-4, abs=1e-4)
    assert x.shape == (2, 4, 8, 4, 1) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    fv, fm = _cantilever_sites()
    assert (x[:, fm.bool()] == 1).all()  # in-painted fixed sites come out occupied
    assert torch.equal(_pinned_run(kind), x)
    assert not torch.allclose(_pinned_run(kind, seed=2), x)


def test_guidance_scale_one_is_the_conditional_model():
    """w = 1 takes the single-pass path; w = 1 + tiny through the guided batch must agree with it."""
    net = _tiny_net()
    fv, fm = _cantilever_sites()
    a = sample(net, "ddim", 5, [0.5, -1.0], fv, fm, n=2, guidance_scale=1.0, seed=4)
    b = sample(net, "ddim", 5, [0.5, -1.0], fv, fm, n=2, guidance_scale=1.0 + 1e-7, seed=4)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def test_to_occupancy_takes_the_top_design_sites_and_keeps_the_fixed_ones():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 4, 5, 4, 2, generator=g) * 2 - 1
    fixed = torch.zeros(4, 5, 4, 2, dtype=torch.bool)
    fixed[:, 0] = True
    design = ~fixed
    design[0, 2, 2, 0] = False  # a hole: neither fixed nor design, never occupied
    x0[:, 0, 2, 2, 0] = 5.0
    occ = to_occupancy(x0, 17, fixed, design)
    assert occ.shape == x0.shape and occ.dtype == torch.bool
    assert occ[:, fixed].all()
    assert (occ & design).sum(dim=(1, 2, 3, 4)).tolist() == [17, 17, 17]
    assert not occ[:, 0, 2, 2, 0].any()
    for i in range(3):  # every chosen design site beats every unchosen one
        chosen, rest = x0[i][occ[i] & design], x0[i][~occ[i] & design]
        assert chosen.min() > rest.max()
    per_sample = to_occupancy(x0, [0, 1, int(design.sum())], fixed, design)
    assert (per_sample & design).sum(dim=(1, 2, 3, 4)).tolist() == [0, 1, int(design.sum())]
    with pytest.raises(ValueError, match="design sites"):
        to_occupancy(x0, int(design.sum()) + 1, fixed, design)


# ---------------------------------------------------------------- training


def _toy_dataset(n: int = 6, shape=(4, 8, 4, 1)) -> GridDataset:
    g = torch.Generator().manual_seed(0)
    fv, fm = _cantilever_sites(*shape[1:])
    fixed = fm.bool().expand(n, *shape).clone()
    occ = (torch.rand(n, *shape, generator=g) < 0.4) | fixed
    return GridDataset(occ, fixed, fixed.clone(), torch.rand(n, 2, generator=g))


TRAIN = {"n_steps": 20, "batch_size": 4, "checkpoint_every": 5, "log_every": 5, "model": dict(TINY),
         "schedule": {"num_train_timesteps": 100}}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_resumed_training_equals_one_go(tmp_path, caplog):
    data = _toy_dataset()
    with caplog.at_level("INFO", logger="nanoto"):
        one_go = train(data, TRAIN, tmp_path / "one")
    assert "step 20/20" in caplog.text

    first = train(data, TRAIN, tmp_path / "split", stop_after=10)
    assert first.step == 10 and load_checkpoint(tmp_path / "split")["step"] == 10
    assert not list((tmp_path / "split").glob("*.partial"))
    second = train(data, TRAIN, tmp_path / "split", resume=True)
    assert second.step == 20
    assert _max_diff(one_go.model.state_dict(), second.model.state_dict()) <= 1e-6
    assert _max_diff(one_go.ema_model.state_dict(), second.ema_model.state_dict()) <= 1e-6
    assert second.losses == pytest.approx(one_go.losses, abs=1e-6)
    lines = (tmp_path / "split" / "loss.csv").read_text().splitlines()
    assert lines[0] == "step,loss" and len(lines) == 21 and lines[-1].startswith("20,")

    loaded = load_model(tmp_path / "split")
    assert loaded.step == 20 and loaded.schedule == ScheduleConfig(num_train_timesteps=100)
    assert _max_diff(loaded.model.state_dict(), second.ema_model.state_dict()) == 0
    ckpt = load_checkpoint(tmp_path / "split")
    assert set(ckpt) >= {"model", "ema", "optimizer", "step", "config", "rng", "losses"}


def test_training_refuses_to_overwrite_or_resume_another_config(tmp_path):
    data = _toy_dataset(n=2)
    cfg = {**TRAIN, "n_steps": 2}
    train(data, cfg, tmp_path)
    with pytest.raises(FileExistsError):
        train(data, cfg, tmp_path)
    with pytest.raises(ValueError, match="lr"):
        train(data, {**cfg, "lr": 1e-3}, tmp_path, resume=True)
    longer = train(data, {**cfg, "n_steps": 3}, tmp_path, resume=True)  # n_steps may grow
    assert longer.step == 3


def test_loss_ignores_fixed_sites():
    """A net wrong only at the fixed sites has the loss of one that is right there too."""
    data = _toy_dataset(n=3)
    schedule = NoiseSchedule({"num_train_timesteps": 100})
    batch = {"occupancy": data.occupancy, "cond": data.cond, "fixed_value": data.fixed_value,
             "fixed_mask": data.fixed_mask, "loss_mask": data.loss_mask()}

    class Zero(torch.nn.Module):
        def __init__(self, garbage_on_fixed: float):
            super().__init__()
            self.garbage = garbage_on_fixed

        def forward(self, x_t, t, cond, fixed_value, fixed_mask, cond_dropped=None):
            return fixed_mask * self.garbage

    losses = []
    for garbage in (0.0, 1e3):
        gen = torch.Generator().manual_seed(0)
        losses.append(train_step(Zero(garbage), schedule, batch, gen, 0.1, torch.device("cpu")).item())
    gen = torch.Generator().manual_seed(0)
    torch.randint(0, 100, (3,), generator=gen)
    eps = torch.randn(data.occupancy.shape, generator=gen)
    assert losses[0] == losses[1] == pytest.approx((eps[data.loss_mask()] ** 2).mean().item(), rel=1e-6)


def test_batches_cover_each_epoch_once():
    rows = torch.cat([batch_indices(7, s, 10, 3) for s in range(3)])  # 10 // 3 = 3 steps per epoch
    assert len(set(rows.tolist())) == 9
    assert torch.equal(batch_indices(7, 4, 10, 3), batch_indices(7, 4, 10, 3))


def test_train_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.coerce({"n_step": 3})


def test_command_line_trains_and_resumes(tmp_path):
    data = _toy_dataset(n=2)
    torch.save({"occupancy": data.occupancy, "fixed_mask": data.fixed_mask, "fixed_value": data.fixed_value,
                "cond": data.cond}, tmp_path / "data.pt")
    (tmp_path / "config.json").write_text(json.dumps({**TRAIN, "n_steps": 3}))
    args = [str(tmp_path / "data.pt"), str(tmp_path / "run"), "--config", str(tmp_path / "config.json"),
            "--device", "auto"]
    assert main([*args, "--stop-after", "2"]) == 0
    assert load_checkpoint(tmp_path / "run")["step"] == 2
    assert main([*args, "--resume"]) == 0
    assert load_checkpoint(tmp_path / "run")["step"] == 3


def test_device_strings():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            resolve_device("cuda")


# ---------------------------------------------------------------- packaging


def test_import_nanoto_models_does_not_import_torch():
    code = "import sys, nanoto_models; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
