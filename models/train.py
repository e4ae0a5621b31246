"""Training loop of the conditional diffusion model (epsilon prediction on (4, nx, ny, nz) grids).

One step, for a batch of B designs:

1. x0 = 2 occupancy - 1 in {-1, +1}; t ~ U{0..T-1}; eps ~ N(0, 1); x_t = sqrt(acp[t]) x0 + sqrt(1-acp[t]) eps.
   Fixed sites are noised like the others: sampling in-paints them with exactly this forward process.
2. The condition is dropped (``cond_dropped=True``: the net sees its learned null embedding) with probability
   ``cond_dropout``, so one net gives both the conditional and the unconditional eps of guidance.
3. loss = mean over design sites of (eps_pred - eps)^2: fixed sites are known at sampling time, so the net
   is not trained to predict their noise.
4. AdamW, gradient-norm clipping, then the EMA update.

Determinism: ``torch.manual_seed(seed)`` before the weights are initialised; all per-step randomness
(t, eps, dropout) comes from one ``torch.Generator`` seeded with ``seed`` whose state is checkpointed; the
batch order of epoch e is the permutation of a generator seeded with (seed, e), so it needs no state. The
random numbers are drawn on the CPU and moved to the device, hence the same for every device. Resuming from a
checkpoint continues bit for bit what the uninterrupted run would have done (on the same device and thread
count).

Outputs in ``out_dir``: ``checkpoint.pt`` (see ``checkpoint.py``) every ``checkpoint_every`` steps and at the
end, and ``loss.csv`` (columns step, loss) rewritten with each checkpoint. Progress goes to the "nanoto" logger.

Command line (the dataset a torch file of a dict with the GridDataset fields, the config a YAML / JSON mapping
of TrainConfig fields)::

    python -m nanoto_models.train DATA.pt OUT_DIR [--config CONFIG.yaml] [--device auto] [--resume]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CHECKPOINT_NAME, FORMAT, FORMAT_VERSION, load_checkpoint, save_atomic, write_text_atomic
from .data import GridDataset
from .device import resolve_device
from .ema import EMA
from .schedule import NoiseSchedule, ScheduleConfig
from .unet import UNet3D, count_parameters

log = logging.getLogger("nanoto")
LOSS_FILE = "loss.csv"
# may differ between the run that wrote a checkpoint and the run resuming it (nothing else may)
RESUMABLE_CHANGES = ("n_steps", "checkpoint_every", "log_every")


@dataclass
class TrainConfig:
    """Training settings. ``model``: UNet3D keyword arguments except n_cond (taken from the dataset);
    ``schedule``: ScheduleConfig fields."""

    n_steps: int = 20000
    batch_size: int = 16
    lr: float = 2e-4               # AdamW learning rate after warm-up
    weight_decay: float = 0.0
    warmup_steps: int = 0          # linear learning-rate warm-up from lr / warmup_steps
    grad_clip: float = 1.0         # max global gradient norm; 0 disables clipping
    cond_dropout: float = 0.1      # probability of training a sample unconditionally
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 50
    model: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("n_steps, batch_size, checkpoint_every and log_every must be >= 1")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError("cond_dropout must be in [0, 1]")
        if "n_cond" in self.model:
            raise ValueError("model.n_cond comes from the dataset; leave it out")
        self.schedule = ScheduleConfig.coerce(self.schedule).to_dict()  # validates, fills the defaults

    @classmethod
    def coerce(cls, value: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
        """A TrainConfig from itself, a mapping of its fields (unknown keys rejected), or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, TrainConfig):
            return value
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (tuples become lists), so a dict read back from a checkpoint compares equal."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class TrainResult:
    """What ``train`` leaves: the raw and EMA networks (eval mode), the step reached, the checkpoint file."""

    model: UNet3D
    ema_model: UNet3D
    step: int
    checkpoint: Path
    losses: list[float]


def build_model(config: TrainConfig, n_cond: int) -> UNet3D:
    return UNet3D(n_cond=n_cond, **config.model)


def _epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> torch.Tensor:
    """Dataset rows of 0-based ``step``: consecutive slices of a per-epoch permutation (last partial batch dropped)."""
    bs = min(batch_size, n)
    per_epoch = n // bs
    epoch, k = divmod(step, per_epoch)
    return _epoch_order(seed, epoch, n)[k * bs:(k + 1) * bs]


def _config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = set(old) | set(new)
    return sorted(k for k in keys if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))


def _write_losses(out_dir: Path, losses: list[float]) -> None:
    lines = ["step,loss"] + [f"{i + 1},{v:.8g}" for i, v in enumerate(losses)]
    write_text_atomic("\n".join(lines) + "\n", out_dir / LOSS_FILE)


def train_step(model: UNet3D, schedule: NoiseSchedule, batch: dict[str, torch.Tensor], gen: torch.Generator,
               cond_dropout: float, device: torch.device) -> torch.Tensor:
    """The loss (scalar, with graph) of one batch: tensors of ``batch`` on the CPU, randomness from ``gen``."""
    occ = batch["occupancy"]
    b = occ.shape[0]
    # every random number from gen on the CPU, in a fixed order: reproducible on any device
    t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=gen)
    eps = torch.randn(occ.shape, generator=gen)
    dropped = torch.rand(b, generator=gen) < cond_dropout

    x0 = (occ.to(torch.float32) * 2 - 1).to(device)
    eps, t = eps.to(device), t.to(device)
    x_t = schedule.add_noise(x0, eps, t)
    pred = model(x_t, t, batch["cond"].to(device), batch["fixed_value"].to(device, torch.float32),
                 batch["fixed_mask"].to(device, torch.float32), dropped.to(device))
    mask = batch["loss_mask"].to(device, torch.float32)
    return ((pred - eps) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


def train(dataset: Any, config: TrainConfig | Mapping[str, Any] | None, out_dir: str | Path, *,
          resume: bool = False, device: str | torch.device = "cpu", stop_after: int | None = None) -> TrainResult:
    """Train (or continue training) the diffusion model on ``dataset``; checkpoints and loss.csv in ``out_dir``.

    Args:
        dataset: a GridDataset or any object with its attributes (occupancy, fixed_mask, fixed_value, cond).
        config: TrainConfig or a mapping of its fields.
        out_dir: training folder (created).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists (start afresh if it does not, so a
            requeued job can always pass resume=True). The config may differ from the checkpoint's only in
            n_steps, checkpoint_every and log_every. Without resume an existing checkpoint is an error.
        device: "cpu", "cuda", "cuda:N" or "auto".
        stop_after: stop (with a checkpoint) once this many steps in total are done, before n_steps; the
            way to split a run into pieces that resume=True joins into the uninterrupted result.
    """
    cfg = TrainConfig.coerce(config)
    data = GridDataset.coerce(dataset)
    dev = resolve_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_file = out / CHECKPOINT_NAME
    if ckpt_file.exists() and not resume:
        raise FileExistsError(f"{ckpt_file} exists: pass resume=True to continue it, or use another out_dir")

    torch.manual_seed(cfg.seed)  # weight initialisation
    model = build_model(cfg, data.n_cond).to(dev)
    schedule = NoiseSchedule(cfg.schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, losses = 0, []

    if resume and ckpt_file.exists():
        ckpt = load_checkpoint(ckpt_file)
        changed = _config_changes(ckpt["config"], cfg.to_dict())
        if changed:
            raise ValueError(f"config differs from the checkpoint's in {changed}; only {RESUMABLE_CHANGES} may")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        ema.load_state_dict(ckpt["ema"])
        gen.set_state(ckpt["rng"]["generator"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        step, losses = int(ckpt["step"]), ckpt["losses"].tolist()
        log.info("resuming %s at step %d", ckpt_file, step)
    else:
        log.info("training %d-parameter UNet3D on %d designs of grid %s, device %s",
                 count_parameters(model), len(data), data.grid_shape, dev)

    end = cfg.n_steps if stop_after is None else min(cfg.n_steps, stop_after)
    loss_mask = data.loss_mask()

    def save() -> None:
        save_atomic({
            "format": FORMAT, "format_version": FORMAT_VERSION, "step": step, "config": cfg.to_dict(),
            "model_config": model.config(), "model": model.state_dict(), "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": {"generator": gen.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "losses": torch.tensor(losses, dtype=torch.float64),
        }, ckpt_file)
        _write_losses(out, losses)

    model.train()
    t_last, step_last = time.perf_counter(), step
    while step < end:
        idx = batch_indices(cfg.seed, step, len(data), cfg.batch_size)
        batch = {"occupancy": data.occupancy[idx], "cond": data.cond[idx], "fixed_value": data.fixed_value[idx],
                 "fixed_mask": data.fixed_mask[idx], "loss_mask": loss_mask[idx]}
        # warm-up depends on the step only, so it needs no scheduler state in the checkpoint
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else cfg.lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(model, schedule, batch, gen, cfg.cond_dropout, dev)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        ema.update(model)
        step += 1
        losses.append(float(loss.detach()))
        if step % cfg.log_every == 0 or step == end:
            now = time.perf_counter()
            window = losses[-min(cfg.log_every, len(losses)):]
            log.info("step %d/%d  loss %.5f (mean of last %d %.5f)  lr %.3g  %.2f steps/s", step, cfg.n_steps,
                     losses[-1], len(window), sum(window) / len(window), lr, (step - step_last) / (now - t_last))
            t_last, step_last = now, step
        if step % cfg.checkpoint_every == 0 or step == end:
            save()
    if not ckpt_file.exists():  # resumed a run that had already reached its end
        save()
    model.eval()
    return TrainResult(model, ema.averaged(model), step, ckpt_file, losses)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nanoto_models.train``: train from a dataset file; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m nanoto_models.train", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="torch file of a dict: occupancy, fixed_mask, fixed_value, cond")
    parser.add_argument("out_dir", type=Path, help="training folder (checkpoint.pt, loss.csv)")
    parser.add_argument("--config", type=Path, help="YAML or JSON mapping of TrainConfig fields")
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda", "cuda:N" or "auto" (default: cpu)')
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint.pt if present")
    parser.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps in total")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers and not log.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        log.setLevel(logging.INFO)
    config: dict[str, Any] = {}
    if args.config is not None:
        import yaml  # a core dependency; JSON is valid YAML

        config = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
    tensors = torch.load(args.dataset, map_location="cpu", weights_only=True)
    data = GridDataset(**{k: tensors[k] for k in ("occupancy", "fixed_mask", "fixed_value", "cond")},
                       design_mask=tensors.get("design_mask"))
    result = train(data, config, args.out_dir, resume=args.resume, device=args.device, stop_after=args.stop_after)
    log.info("step %d, checkpoint %s", result.step, result.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
