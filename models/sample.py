"""Sampling designs from a trained UNet3D: guided DDPM / DDIM with in-painted fixed sites, and top-k occupancy.

``sample`` returns continuous x0 estimates in [-1, 1] (+1 = atom); ``to_occupancy`` turns them into designs
with an exact atom count.

Classifier-free guidance with scale w: eps = eps_uncond + w (eps_cond - eps_uncond); w = 1 is the plain
conditional model (one network pass per step), w = 0 the unconditional one, w > 1 pushes harder towards the
condition. Both passes run as one batch of 2n.

In-painting (simple replacement): the fixed sites are known, x0 = 2 fixed_value - 1 (+1 for occupied). Before
every network call at timestep t, the fixed sites of the current sample are overwritten with that known x0
noised to t, sqrt(acp[t]) x0 + sqrt(1 - acp[t]) eps' (fresh eps'), i.e. a draw of the forward process the net
was trained on; the design sites are left to the sampler. The returned x0 has the fixed sites set to the known
value exactly. Replacement is the simplest in-painting (no RePaint-style resampling); the design sites also
learn about the fixed ones through the fixed_value / fixed_mask input channels of the net.

Determinism: every random number (initial noise, in-painting noise, DDPM noise) comes from one CPU
``torch.Generator`` seeded with ``seed``, so a seed gives the same samples on every call (and device, up to
kernel round-off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .device import resolve_device
from .schedule import ScheduleConfig, make_sampler
from .unet import UNet3D


def _grid(value: Any, name: str) -> torch.Tensor:
    out = torch.as_tensor(value)
    if out.dim() != 4:
        raise ValueError(f"{name} must be (4, nx, ny, nz), got {tuple(out.shape)}")
    return out


@torch.no_grad()
def sample(model: UNet3D, scheduler_kind: str, n_steps: int, cond: Any, fixed_value: Any, fixed_mask: Any,
           n: int = 1, guidance_scale: float = 1.0, seed: int = 0, device: str | torch.device = "cpu",
           schedule: ScheduleConfig | Mapping[str, Any] | None = None) -> torch.Tensor:
    """Draw ``n`` designs for one condition.

    Args:
        model: the eps network (its EMA weights, usually: ``checkpoint.load_model``).
        scheduler_kind: "ddpm" (stochastic) or "ddim" (eta = 0, deterministic given the initial noise).
        n_steps: sampling steps (<= num_train_timesteps; DDIM: best a divisor of it).
        cond: (n_cond,) condition vector, in the units the model was trained with.
        fixed_value, fixed_mask: (4, nx, ny, nz), {0, 1} or bool.
        n: number of samples.
        guidance_scale: w of classifier-free guidance.
        seed: seed of the CPU generator behind all randomness.
        device: "cpu", "cuda", "auto", ...; the model is moved there.
        schedule: the training noise schedule (ScheduleConfig or its dict; None: the defaults). It must be
            the one the model was trained with: ``load_model(...).schedule``.

    Returns:
        (n, 4, nx, ny, nz) float32 on the CPU, the final x0 estimates in [-1, 1].
    """
    dev = resolve_device(device)
    fv = _grid(fixed_value, "fixed_value").to(torch.float32)
    fm = _grid(fixed_mask, "fixed_mask").to(torch.bool)
    if fv.shape != fm.shape:
        raise ValueError("fixed_value and fixed_mask must have the same shape")
    cond = torch.as_tensor(cond, dtype=torch.float32).reshape(-1)
    shape = (n, *fv.shape)

    sched = make_sampler(schedule, scheduler_kind, n_steps)
    acp = sched.alphas_cumprod.to(torch.float32)
    gen = torch.Generator().manual_seed(int(seed))

    was_training = model.training
    model.to(dev).eval()
    fv_b = fv.expand(shape).to(dev)
    fm_b = fm.to(torch.float32).expand(shape).to(dev)
    cond_b = cond.expand(n, -1).to(dev)
    known = fv_b * 2 - 1
    mask = fm_b.to(torch.bool)
    guided = guidance_scale != 1.0
    if guided:  # one batch: the first n conditional, the last n unconditional
        fv_2, fm_2, cond_2 = torch.cat([fv_b, fv_b]), torch.cat([fm_b, fm_b]), torch.cat([cond_b, cond_b])
        dropped_2 = torch.arange(2 * n, device=dev) >= n

    x = (torch.randn(shape, generator=gen) * sched.init_noise_sigma).to(dev)
    try:
        for t in sched.timesteps:
            ti = int(t)
            noise = torch.randn(shape, generator=gen).to(dev)
            x = torch.where(mask, acp[ti].sqrt() * known + (1 - acp[ti]).sqrt() * noise, x)
            x_in = sched.scale_model_input(x, t)
            if guided:
                tt = torch.full((2 * n,), ti, device=dev, dtype=torch.long)
                eps_c, eps_u = model(torch.cat([x_in, x_in]), tt, cond_2, fv_2, fm_2, dropped_2).chunk(2)
                eps = eps_u + guidance_scale * (eps_c - eps_u)
            else:
                eps = model(x_in, torch.full((n,), ti, device=dev, dtype=torch.long), cond_b, fv_b, fm_b)
            # the DDPM noise is drawn from gen on the CPU: diffusers moves it to the sample's device
            x = sched.step(eps, t, x, generator=gen).prev_sample
    finally:
        model.train(was_training)
    # the last step lands on t = -1 (alpha = 1): prev_sample is the clipped x0 estimate
    x0 = torch.where(mask, known, x).clamp(-1.0, 1.0)
    return x0.cpu()


def to_occupancy(x0: torch.Tensor, n_atoms: int | Sequence[int], fixed_mask: Any, design_mask: Any) -> torch.Tensor:
    """Designs with exactly ``n_atoms`` design atoms: the highest-x0 design sites, plus every fixed site.

    Args:
        x0: (n, 4, nx, ny, nz) float, e.g. from ``sample``.
        n_atoms: atoms on design sites per sample (int, or one per sample); fixed sites come on top.
        fixed_mask, design_mask: (4, nx, ny, nz) or (n, 4, nx, ny, nz) bool; a site in both counts as fixed.

    Returns:
        (n, 4, nx, ny, nz) bool. Ties in x0 go to the lower flat site index (stable sort).
    """
    x0 = torch.as_tensor(x0)
    if x0.dim() != 5:
        raise ValueError(f"x0 must be (n, 4, nx, ny, nz), got {tuple(x0.shape)}")
    n = x0.shape[0]
    fixed = torch.as_tensor(fixed_mask).to(torch.bool).expand(x0.shape)
    design = torch.as_tensor(design_mask).to(torch.bool).expand(x0.shape) & ~fixed
    counts = [int(n_atoms)] * n if isinstance(n_atoms, int) else [int(k) for k in n_atoms]
    if len(counts) != n:
        raise ValueError(f"n_atoms: need one count per sample ({n}), got {len(counts)}")
    score = torch.where(design, x0.to(torch.float64), torch.tensor(-torch.inf, dtype=torch.float64)).reshape(n, -1)
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    out = fixed.reshape(n, -1).clone()
    n_design = design.reshape(n, -1).sum(dim=1)
    for i, k in enumerate(counts):
        if not 0 <= k <= int(n_design[i]):
            raise ValueError(f"sample {i}: n_atoms={k} but only {int(n_design[i])} design sites")
        out[i, order[i, :k]] = True
    return out.reshape(x0.shape)
