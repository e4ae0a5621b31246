"""In-memory training data: designs of one grid shape (4, nx, ny, nz) as tensors.

``train`` accepts any object with these attributes (N designs):

* ``occupancy``    (N, 4, nx, ny, nz) bool, the final designs (True = atom);
* ``fixed_mask``   (N, 4, nx, ny, nz) bool, True at fixed (clamp / load) sites;
* ``fixed_value``  (N, 4, nx, ny, nz) bool, occupancy of the fixed sites (True there in practice);
* ``cond``         (N, n_cond) float32 condition vector (normalised upstream);
* ``design_mask``  optional (N, 4, nx, ny, nz) bool, True at design sites; without it every non-fixed site
  is a design site.

``GridDataset`` holds them and checks shapes and dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class GridDataset:
    """N designs on one (4, nx, ny, nz) grid; see the module docstring for the fields."""

    occupancy: torch.Tensor
    fixed_mask: torch.Tensor
    fixed_value: torch.Tensor
    cond: torch.Tensor
    design_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.occupancy = torch.as_tensor(self.occupancy).to(torch.bool)
        self.fixed_mask = torch.as_tensor(self.fixed_mask).to(torch.bool)
        self.fixed_value = torch.as_tensor(self.fixed_value).to(torch.bool)
        self.cond = torch.as_tensor(self.cond).to(torch.float32)
        if self.design_mask is not None:
            self.design_mask = torch.as_tensor(self.design_mask).to(torch.bool)
        shape = self.occupancy.shape
        if len(shape) != 5 or shape[0] < 1:
            raise ValueError(f"occupancy must be (N, 4, nx, ny, nz) with N >= 1, got {tuple(shape)}")
        for name in ("fixed_mask", "fixed_value", "design_mask"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} must have the shape of occupancy {tuple(shape)}, got {tuple(value.shape)}")
        if self.cond.dim() != 2 or self.cond.shape[0] != shape[0]:
            raise ValueError(f"cond must be ({shape[0]}, n_cond), got {tuple(self.cond.shape)}")

    @classmethod
    def coerce(cls, data: Any) -> GridDataset:
        """A GridDataset from any object with the attributes above."""
        if isinstance(data, cls):
            return data
        return cls(data.occupancy, data.fixed_mask, data.fixed_value, data.cond, getattr(data, "design_mask", None))

    def __len__(self) -> int:
        return self.occupancy.shape[0]

    @property
    def n_cond(self) -> int:
        return self.cond.shape[1]

    @property
    def grid_shape(self) -> tuple[int, int, int, int]:
        """(4, nx, ny, nz)."""
        c, nx, ny, nz = self.occupancy.shape[1:]
        return c, nx, ny, nz

    def loss_mask(self) -> torch.Tensor:
        """(N, 4, nx, ny, nz) bool: the sites the loss sees (design sites, never fixed ones)."""
        mask = ~self.fixed_mask
        return mask if self.design_mask is None else mask & self.design_mask
