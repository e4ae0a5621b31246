"""Noise schedules and samplers, from ``diffusers``: DDPMScheduler (training noise, DDPM sampling) and
DDIMScheduler (DDIM sampling), built from one small config.

Quantities (T = num_train_timesteps, all dimensionless, float32 tensors of shape (T,)):

* ``betas[t]``           variance added at step t;
* ``alphas_cumprod[t]``  = prod_{s <= t} (1 - betas[s]), the signal fraction left at step t;
* forward process        x_t = sqrt(alphas_cumprod[t]) x0 + sqrt(1 - alphas_cumprod[t]) eps, eps ~ N(0, 1).

Beta schedules: "linear" (betas = linspace(beta_start, beta_end, T)) and "squaredcos_cap_v2" (the cosine
schedule, alphas_cumprod ~ cos^2(((t/T) + s)/(1 + s) pi/2), s = 0.008, betas clipped at 0.999; beta_start and
beta_end unused). Only epsilon prediction is supported: the network predicts the noise.

Sampling settings fixed here, for every sampler:

* ``timestep_spacing="trailing"``: the first sampling step is t = T - 1, where the initial pure noise is the
  right distribution (diffusers' default "leading" starts lower, at a noise level the noise does not match);
* ``clip_sample=True`` (range 1): the predicted x0 is clipped to the data range [-1, 1] at every step;
* DDIM: ``set_alpha_to_one=True``, so its last step returns the predicted x0 itself, eta = 0 (deterministic);
* DDPM: ``variance_type="fixed_small"`` (the posterior variance).

DDIM with a step count that does not divide T takes diffusers' rounded strides; prefer divisors of T.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler

BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")
SAMPLERS = ("ddpm", "ddim")


@dataclass(frozen=True)
class ScheduleConfig:
    """The noise schedule. Must be the same for training and sampling."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 2:
            raise ValueError("num_train_timesteps must be >= 2")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError("need 0 < beta_start <= beta_end < 1")
        if self.prediction_type != "epsilon":
            raise ValueError("only prediction_type 'epsilon' is supported (the network predicts the noise)")

    @classmethod
    def coerce(cls, value: ScheduleConfig | Mapping[str, Any] | None) -> ScheduleConfig:
        """A ScheduleConfig from itself, a mapping of its fields (unknown keys rejected), or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, ScheduleConfig):
            return value
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown schedule keys: {sorted(unknown)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scheduler_kwargs(config: ScheduleConfig) -> dict[str, Any]:
    return {"num_train_timesteps": config.num_train_timesteps, "beta_schedule": config.beta_schedule,
            "beta_start": config.beta_start, "beta_end": config.beta_end,
            "prediction_type": config.prediction_type, "clip_sample": True, "clip_sample_range": 1.0,
            "timestep_spacing": "trailing"}


def make_scheduler(config: ScheduleConfig | Mapping[str, Any] | None, kind: str = "ddpm"):
    """A fresh diffusers scheduler ("ddpm" -> DDPMScheduler, "ddim" -> DDIMScheduler) for ``config``.

    Schedulers carry sampling state (their timesteps), so make one per sampling run.
    """
    cfg = ScheduleConfig.coerce(config)
    if kind == "ddpm":
        return DDPMScheduler(**_scheduler_kwargs(cfg), variance_type="fixed_small")
    if kind == "ddim":
        return DDIMScheduler(**_scheduler_kwargs(cfg), set_alpha_to_one=True)
    raise ValueError(f"scheduler kind must be one of {SAMPLERS}, got {kind!r}")


def make_sampler(config: ScheduleConfig | Mapping[str, Any] | None, kind: str, n_steps: int,
                 device: str | torch.device | None = None):
    """A scheduler of ``kind`` with ``n_steps`` sampling timesteps set (descending, ``.timesteps``)."""
    cfg = ScheduleConfig.coerce(config)
    if not 1 <= n_steps <= cfg.num_train_timesteps:
        raise ValueError(f"n_steps must be in [1, {cfg.num_train_timesteps}], got {n_steps}")
    sched = make_scheduler(cfg, kind)
    sched.set_timesteps(n_steps, device=device)
    return sched


class NoiseSchedule:
    """The forward (noising) process of training: betas, alphas_cumprod and add_noise of one config."""

    def __init__(self, config: ScheduleConfig | Mapping[str, Any] | None = None):
        self.config = ScheduleConfig.coerce(config)
        self.scheduler = make_scheduler(self.config, "ddpm")

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    @property
    def betas(self) -> torch.Tensor:
        """(T,) float32."""
        return self.scheduler.betas.clone()

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """(T,) float32, on the CPU."""
        return self.scheduler.alphas_cumprod.detach().cpu().clone()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(acp[t]) x0 + sqrt(1 - acp[t]) noise; x0, noise (B, ...), t (B,) int -> (B, ...)."""
        return self.scheduler.add_noise(x0, noise, t)


def alphas_cumprod(config: ScheduleConfig | Mapping[str, Any] | None = None) -> torch.Tensor:
    """alphas_cumprod (T,) float32 of ``config``."""
    return NoiseSchedule(config).alphas_cumprod


def add_noise(config: ScheduleConfig | Mapping[str, Any] | None, x0: torch.Tensor, noise: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    """Forward process of ``config`` (see NoiseSchedule.add_noise); builds the schedule on each call."""
    return NoiseSchedule(config).add_noise(x0, noise, t)
