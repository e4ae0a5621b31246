"""Conditional 3D U-Net that predicts the diffusion noise on a (4, nx, ny, nz) sublattice grid.

Tensor layout (B = batch):

* ``x_t``          (B, 4, nx, ny, nz) float, the noised occupancy in {-1, +1} space (dimensionless).
* ``t``            (B,) integer diffusion timesteps in [0, num_train_timesteps).
* ``cond``         (B, n_cond) float condition vector (whatever units the dataset uses; normalise it upstream).
* ``fixed_value``  (B, 4, nx, ny, nz) float in {0, 1}: occupancy of the fixed (clamp / load) sites.
* ``fixed_mask``   (B, 4, nx, ny, nz) float in {0, 1}: 1 where a site is fixed.
* ``cond_dropped`` (B,) bool or None: classifier-free guidance; True replaces the condition embedding by
  a learned null embedding.
* output           (B, 4, nx, ny, nz) float, the predicted noise eps.

The 4 FCC sublattices are the channel axis; the spatial axes count conventional cells. ``fixed_value`` and
``fixed_mask`` are concatenated to ``x_t`` as input channels (12 input channels), so the network sees where
the clamp and load sites are.

Conditioning: a sinusoidal timestep embedding goes through an MLP, the condition vector through another MLP;
the two embeddings are summed and every residual block applies them as FiLM (a per-channel scale and shift
of its second group-normalised activation, ``h * (1 + scale) + shift``).

Periodic axes: every 3x3x3 convolution pads explicitly, circularly along periodic axes and with zeros along
the others (``Conv3d(padding_mode=...)`` would apply one mode to all three axes).

Resampling: the net has ``len(channel_mult)`` resolution levels, i.e. ``len(channel_mult) - 1`` possible
halvings. How many an axis gets is decided in ``forward`` from the actual grid, so one net serves every grid
shape:

* an axis listed False in ``downsample`` (default: the periodic ones) is never resampled; the net is then
  exactly equivariant to translations along it when it is periodic;
* a non-periodic axis of size n is halved ``k = min(levels - 1, floor(log2 n))`` times (size 1: never); it is
  zero-padded at its high end to a multiple of 2**k before the first convolution and the output is cropped
  back. Padding (rather than odd-size strided convolutions) keeps every skip connection the exact size of
  the upsampled tensor; the padded cells are empty space to the net, like the zero padding at the boundary;
* a periodic axis that may be resampled is halved only while its size stays even (padding would change the
  period); the net is then equivariant to shifts by multiples of 2**k along it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

N_SUBLATTICES = 4  # FCC conventional cell: 4 sites, one per channel


def pad_axes(x: torch.Tensor, pad: Sequence[int], periodic: Sequence[bool]) -> torch.Tensor:
    """Pad the 3 spatial axes of ``x`` (B, C, X, Y, Z) by ``pad[a]`` on both sides of axis a.

    Circular along periodic axes, zeros along the others. Returns (B, C, X + 2 pad_x, Y + 2 pad_y, Z + 2 pad_z).
    """
    # F.pad lists the last axis first: (z_lo, z_hi, y_lo, y_hi, x_lo, x_hi)
    circular, zeros = [], []
    for p, is_periodic in zip(reversed(pad), reversed(periodic), strict=True):
        circular += [p, p] if is_periodic else [0, 0]
        zeros += [0, 0] if is_periodic else [p, p]
    if any(circular):
        x = F.pad(x, circular, mode="circular")
    if any(zeros):
        x = F.pad(x, zeros)  # after the circular pass, so the corners of both are zeros
    return x


class PeriodicConv3d(nn.Module):
    """3D convolution, 'same' padding: circular along periodic axes, zeros along the others.

    ``forward(x, stride)`` takes the stride per axis at call time, so one kernel serves grids whose axes
    are or are not downsampled. (B, c_in, X, Y, Z) -> (B, c_out, ceil(X/sx), ceil(Y/sy), ceil(Z/sz)).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, periodic: Sequence[bool] = (False, False, True)):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd ('same' padding)")
        self.periodic = tuple(bool(p) for p in periodic)
        self.pad = kernel_size // 2  # not "half": that name is nn.Module.half()
        # padding=0: the padding is done in forward, per axis
        self.conv = nn.Conv3d(c_in, c_out, kernel_size, padding=0)

    def forward(self, x: torch.Tensor, stride: Sequence[int] = (1, 1, 1)) -> torch.Tensor:
        x = pad_axes(x, (self.pad,) * 3, self.periodic)
        return F.conv3d(x, self.conv.weight, self.conv.bias, stride=tuple(stride))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim) of integer timesteps (the Transformer position code)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _groups(channels: int, max_groups: int = 8) -> int:
    """Largest group count <= max_groups dividing ``channels`` (GroupNorm needs an exact division)."""
    return max(g for g in range(1, max_groups + 1) if channels % g == 0)


class ResBlock(nn.Module):
    """GN-SiLU-conv, FiLM from the embedding, GN-SiLU-conv, plus a (1x1 if needed) skip.

    (B, c_in, X, Y, Z), emb (B, emb_dim) -> (B, c_out, X, Y, Z).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, periodic: Sequence[bool]):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = PeriodicConv3d(c_in, c_out, 3, periodic)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = PeriodicConv3d(c_out, c_out, 3, periodic)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
        # FiLM after the norm: the norm would otherwise undo a shift applied before it
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class ResStack(nn.ModuleList):
    """Residual blocks applied in turn, each with the same embedding."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in self:
            h = block(h, emb)
        return h


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to a given spatial size, then a 3x3x3 convolution (same channels)."""

    def __init__(self, channels: int, periodic: Sequence[bool]):
        super().__init__()
        self.conv = PeriodicConv3d(channels, channels, 3, periodic)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


class UNet3D(nn.Module):
    """Conditional 3D U-Net eps-predictor for (B, 4, nx, ny, nz) occupancy grids (see the module docstring).

    Args:
        n_cond: length of the condition vector (>= 1).
        base_channels: channels of the first level; also the width of the sinusoidal timestep code.
        channel_mult: channels of level i = base_channels * channel_mult[i]; ``len(channel_mult)`` levels,
            so at most ``len(channel_mult) - 1`` halvings per axis.
        n_res_blocks: residual blocks per level on the way down (the way up has the same count).
        periodic: per spatial axis (x, y, z), whether the design domain is periodic along it.
        downsample: per axis, whether it may be resampled; default: the non-periodic axes.
        in_channels: sublattice channels of x_t (4 for FCC).

    The defaults (about 5e5 parameters) train on a 2-core CPU.
    """

    def __init__(
        self,
        n_cond: int,
        base_channels: int = 16,
        channel_mult: Sequence[int] = (1, 2, 2),
        n_res_blocks: int = 1,
        periodic: Sequence[bool] = (False, False, True),
        downsample: Sequence[bool] | None = None,
        in_channels: int = N_SUBLATTICES,
    ):
        super().__init__()
        if n_cond < 1:
            raise ValueError("n_cond must be >= 1")
        if len(periodic) != 3:
            raise ValueError("periodic needs one flag per spatial axis (x, y, z)")
        if not channel_mult or n_res_blocks < 1:
            raise ValueError("need at least one level and one residual block per level")
        self.n_cond = n_cond
        self.in_channels = in_channels
        self.periodic = tuple(bool(p) for p in periodic)
        self.downsample = tuple(not p for p in self.periodic) if downsample is None else tuple(map(bool, downsample))
        if len(self.downsample) != 3:
            raise ValueError("downsample needs one flag per spatial axis (x, y, z)")
        self.base_channels = base_channels
        self.channel_mult = tuple(int(m) for m in channel_mult)
        self.n_down = len(self.channel_mult) - 1
        self.n_res_blocks = n_res_blocks
        emb_dim = 4 * base_channels

        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.cond_mlp = nn.Sequential(nn.Linear(n_cond, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # learned stand-in for "no condition" (classifier-free guidance); small init like the other weights
        self.null_cond = nn.Parameter(0.02 * torch.randn(emb_dim))

        p = self.periodic
        # x_t, fixed_value, fixed_mask
        self.in_conv = PeriodicConv3d(3 * in_channels, base_channels, 3, p)
        chans = [base_channels * m for m in self.channel_mult]
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        c = base_channels
        for i, ci in enumerate(chans):
            blocks = []
            for _ in range(n_res_blocks):
                blocks.append(ResBlock(c, ci, emb_dim, p))
                c = ci
            self.down_blocks.append(ResStack(blocks))
            if i < self.n_down:
                self.downsamplers.append(PeriodicConv3d(ci, ci, 3, p))
        self.mid = ResBlock(c, c, emb_dim, p)
        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for i in reversed(range(len(chans))):
            if i < self.n_down:
                self.upsamplers.insert(0, Upsample(c, p))
            blocks = [ResBlock(c + chans[i], chans[i], emb_dim, p)]  # concatenated skip
            blocks += [ResBlock(chans[i], chans[i], emb_dim, p) for _ in range(n_res_blocks - 1)]
            c = chans[i]
            self.up_blocks.insert(0, ResStack(blocks))
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out_conv = PeriodicConv3d(c, in_channels, 3, p)

    def config(self) -> dict:
        """Constructor arguments (JSON-friendly) to rebuild the same architecture."""
        return {"n_cond": self.n_cond, "base_channels": self.base_channels, "channel_mult": list(self.channel_mult),
                "n_res_blocks": self.n_res_blocks, "periodic": list(self.periodic),
                "downsample": list(self.downsample), "in_channels": self.in_channels}

    def halvings(self, spatial: Sequence[int]) -> tuple[int, int, int]:
        """How many times each spatial axis of a grid (nx, ny, nz) is halved (see the module docstring)."""
        out = []
        for n, may, is_periodic in zip(spatial, self.downsample, self.periodic, strict=True):
            k = 0
            if may:
                while k < self.n_down and (n % 2 ** (k + 1) == 0 if is_periodic else 2 ** (k + 1) <= n):
                    k += 1
            out.append(k)
        return out[0], out[1], out[2]

    def embed(self, t: torch.Tensor, cond: torch.Tensor, cond_dropped: torch.Tensor | None) -> torch.Tensor:
        """Timestep + condition embedding (B, 4 * base_channels)."""
        emb_t = self.time_mlp(timestep_embedding(t, self.base_channels))
        emb_c = self.cond_mlp(cond.to(emb_t.dtype))
        if cond_dropped is not None:
            emb_c = torch.where(cond_dropped.to(torch.bool)[:, None], self.null_cond[None].to(emb_c.dtype), emb_c)
        return emb_t + emb_c

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        fixed_value: torch.Tensor,
        fixed_mask: torch.Tensor,
        cond_dropped: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if x_t.dim() != 5 or x_t.shape[1] != self.in_channels:
            raise ValueError(f"x_t must be (B, {self.in_channels}, nx, ny, nz), got {tuple(x_t.shape)}")
        batch, spatial = x_t.shape[0], tuple(x_t.shape[2:])
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(batch)
        if cond.shape != (batch, self.n_cond):
            raise ValueError(f"cond must be ({batch}, {self.n_cond}), got {tuple(cond.shape)}")
        k = self.halvings(spatial)
        padded = [n if per else -(-n // 2**ka) * 2**ka for n, ka, per in zip(spatial, k, self.periodic, strict=True)]
        h = torch.cat([x_t, fixed_value.to(x_t.dtype), fixed_mask.to(x_t.dtype)], dim=1)
        # pad the high end of each non-periodic axis up to a multiple of 2**k; cropped off again below
        h = F.pad(h, [v for n, m in zip(reversed(spatial), reversed(padded), strict=True) for v in (0, m - n)])
        emb = self.embed(t, cond, cond_dropped)

        h = self.in_conv(h)
        skips = []
        for i, blocks in enumerate(self.down_blocks):
            h = blocks(h, emb)
            skips.append(h)
            if i < self.n_down:
                h = self.downsamplers[i](h, stride=[2 if i < ka else 1 for ka in k])
        h = self.mid(h, emb)
        for i in reversed(range(len(self.up_blocks))):
            if i < self.n_down:
                h = self.upsamplers[i](h, size=skips[i].shape[2:])
            h = self.up_blocks[i](torch.cat([h, skips[i]], dim=1), emb)
        out = self.out_conv(F.silu(self.out_norm(h)))
        return out[:, :, : spatial[0], : spatial[1], : spatial[2]]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
