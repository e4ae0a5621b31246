"""Exponential moving average (EMA) of a model's weights, for sampling with smoother weights.

A thin wrapper of ``diffusers.training_utils.EMAModel``, which tracks any iterable of parameters (a plain
``nn.Module`` works). After optimisation step n the average is updated as

    shadow <- shadow - (1 - d_n) (shadow - param),   d_1 = 0,  d_n = min(decay, n / (9 + n)) for n >= 2

(diffusers' default warm-up: early steps follow the weights closely, so the average is not dominated by the
random initialisation). Only parameters are averaged; buffers (UNet3D has none) come from the model.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import torch
from diffusers.training_utils import EMAModel
from torch import nn

M = TypeVar("M", bound=nn.Module)


class EMA:
    """EMA of the parameters of ``model``; ``update`` after each optimiser step."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError("decay must be in [0, 1]")
        # min_decay as a float: EMAModel.load_state_dict insists on it
        self._ema = EMAModel(model.parameters(), decay=float(decay), min_decay=0.0)

    @property
    def step(self) -> int:
        """Number of updates so far."""
        return self._ema.optimization_step

    def update(self, model: nn.Module) -> None:
        self._ema.step(model.parameters())

    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the parameters of ``model`` (same architecture) with the averages."""
        self._ema.copy_to(model.parameters())

    def averaged(self, model: M) -> M:
        """A deep copy of ``model`` carrying the averaged weights, in eval mode."""
        out = copy.deepcopy(model)
        self.copy_to(out)
        return out.eval()

    def to(self, device: str | torch.device) -> EMA:
        self._ema.to(device=device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Decay settings, update count and the averaged tensors (references, as torch's state dicts)."""
        return self._ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self._ema.shadow_params[0].device if self._ema.shadow_params else None
        self._ema.load_state_dict(state)
        if device is not None:  # a checkpoint loaded on the CPU, the model elsewhere
            self._ema.to(device=device)
