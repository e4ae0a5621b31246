"""Training checkpoints: one torch file per training folder, written atomically.

``<out_dir>/checkpoint.pt`` holds (format "nanoto-diffusion-checkpoint", version 1):

* ``step``          optimisation steps done;
* ``config``        the TrainConfig as a dict (``model`` and ``schedule`` sub-dicts included);
* ``model_config``  UNet3D constructor arguments (``UNet3D.config()``), enough to rebuild the net;
* ``model``, ``ema``, ``optimizer``  state dicts (the raw weights, their EMA, AdamW moments);
* ``rng``           {"generator": batch / noise generator state, "torch": global CPU state, "cuda": list};
* ``losses``        (step,) float64, the training loss of every step so far.

Writes go to ``checkpoint.pt.partial`` and are moved over the old file with ``os.replace`` (atomic on POSIX),
so a job killed mid-write leaves the previous checkpoint intact. Loading uses ``weights_only=True``: a
checkpoint holds tensors and plain Python values only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .device import resolve_device
from .schedule import ScheduleConfig
from .unet import UNet3D

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT, FORMAT_VERSION = "nanoto-diffusion-checkpoint", 1


def _replace_atomically(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    try:  # make the rename itself durable; not every filesystem lets a directory be opened
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save ``obj`` to ``path`` via ``path.partial`` + os.replace."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    _replace_atomically(tmp, path)
    return path


def write_text_atomic(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` via ``path.partial`` + os.replace."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    _replace_atomically(tmp, path)
    return path


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file of a training folder (or the file itself)."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (tensors on the CPU) of a training folder or checkpoint file."""
    path = checkpoint_path(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {ckpt.get('format_version')}, this nanoto reads {FORMAT_VERSION}")
    return ckpt


@dataclass
class TrainedModel:
    """A network ready to sample from, with the schedule it was trained with."""

    model: UNet3D
    schedule: ScheduleConfig
    step: int
    config: dict[str, Any]


def load_model(path: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> TrainedModel:
    """Rebuild the trained UNet3D (EMA weights unless ``ema=False``) in eval mode on ``device``."""
    ckpt = load_checkpoint(path)
    model = UNet3D(**ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    if ema:
        shadow = ckpt["ema"]["shadow_params"]
        with torch.no_grad():
            for param, avg in zip(model.parameters(), shadow, strict=True):
                param.copy_(avg)
    model = model.to(resolve_device(device)).eval()
    return TrainedModel(model, ScheduleConfig.coerce(ckpt["config"]["schedule"]), int(ckpt["step"]), ckpt["config"])
