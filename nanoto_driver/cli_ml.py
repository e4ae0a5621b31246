"""``nanoto train``, ``nanoto sample``, ``nanoto verify``: the diffusion stage (ml extra).

    nanoto train CONFIG [--resume] [--device cpu|cuda|auto] [--steps N]
    nanoto sample CHECKPOINT_DIR --condition vf=0.3375,0.4375 --condition load_j0=0 ... -n 16 -o samples.h5
    nanoto verify samples.h5 --dataset dataset.h5 -o DIR

torch is imported only by these commands (inside the functions), never by ``import nanoto_driver``.
"""

from __future__ import annotations

import argparse
import json

from .errors import InputError


def _need_torch() -> None:
    import importlib.util

    missing = [m for m in ("torch", "diffusers") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"{', '.join(missing)} not installed: pip install 'nanoto[ml]'")


def cmd_train(args: argparse.Namespace) -> int:
    from .ml_train import load_spec, train_from_spec

    _need_torch()
    spec = load_spec(args.config)
    if args.device:
        spec.device = args.device
    if args.steps:
        spec.train["n_steps"] = args.steps
    sidecar = train_from_spec(spec, resume=args.resume)
    images = f" + {sidecar['n_images']} symmetry images" if sidecar.get("n_images") else ""
    print(f"trained {sidecar['step']} steps on {sidecar['n_designs']} designs{images}: {spec.path(spec.out)}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .ml_data import condition_grid
    from .ml_sample import sample_to_file

    _need_torch()
    conditions = condition_grid(args.condition or [])
    if not conditions:
        raise InputError("give at least one --condition key=value")
    out = sample_to_file(args.checkpoint, conditions, args.n, args.output, sampler=args.sampler, steps=args.steps,
                         guidance=args.guidance, seed=args.seed, device=args.device, screen=args.screen)
    print(f"wrote {out}: {len(conditions)} conditions x {args.n} candidates; next: nanoto verify {out} "
          f"--dataset DATASET.h5 -o DIR")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .ml_verify import verify

    report = verify(args.samples, args.dataset, args.output)
    keys = ("valid_fraction", "median_k_over_frontier", "fraction_ge_0_97", "mean_pairwise_hamming", "novel_fraction")
    print(json.dumps({k: report.get(k) for k in keys}, indent=1))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``train``, ``sample`` and ``verify`` on the main parser's subcommands."""
    p = sub.add_parser("train", help="train the diffusion model on a dataset (ml extra)")
    p.add_argument("config", help="training YAML (see workflows/ml/)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")
    p.add_argument("--device", help="cpu | cuda | auto (default: the config's)")
    p.add_argument("--steps", type=int, help="total training steps (overrides train.n_steps)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw candidate designs from a trained model")
    p.add_argument("checkpoint", help="training output folder (holds checkpoint.pt and nanoto_train.json)")
    p.add_argument("--condition", action="append", metavar="KEY=V[,V...]",
                   help="condition value(s); repeat per key; the product of the values is sampled")
    p.add_argument("-n", type=int, default=8, help="candidates per condition (default 8)")
    p.add_argument("-o", "--output", required=True, help="samples file (.h5)")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--screen", type=int, default=1, metavar="M",
                   help="draw M x N per condition and keep the N stiffest valid ones by the spring network "
                        "(default 1: no screening)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("verify", help="relax every candidate with LAMMPS and score it against the dataset")
    p.add_argument("samples", help="samples file from `nanoto sample`")
    p.add_argument("--dataset", required=True, help="the Nano-TO dataset (frontier, novelty)")
    p.add_argument("-o", "--output", required=True, help="output folder (verify.json, plots)")
    p.set_defaults(func=cmd_verify)
